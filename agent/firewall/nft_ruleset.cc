#include "agent/firewall/nft_ruleset.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>
#include <utility>

namespace meshprobe::agent {

using nlohmann::json;

const NftChain* NftTable::chain(std::string_view chain_name) const {
  for (const auto& c : chains) {
    if (c.name == chain_name) return &c;
  }
  return nullptr;
}

const NftSet* NftTable::set(std::string_view set_name) const {
  for (const auto& s : sets) {
    if (s.name == set_name) return &s;
  }
  return nullptr;
}

const NftTable* NftRuleset::table(std::string_view family, std::string_view name) const {
  for (const auto& t : tables) {
    if (t.family == family && t.name == name) return &t;
  }
  return nullptr;
}

size_t NftRuleset::ruleCount() const {
  size_t n = 0;
  for (const auto& t : tables) {
    for (const auto& c : t.chains) n += c.rules.size();
  }
  return n;
}

namespace {

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// --- rendering (close to `nft list ruleset` syntax) ---------------------------------

std::string renderValue(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<int64_t>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_array()) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : ",") + renderValue(e);
    return s;
  }
  if (v.is_object()) {
    if (v.contains("set") && v["set"].is_array()) {
      std::string s;
      for (const auto& e : v["set"]) s += (s.empty() ? "" : ", ") + renderValue(e);
      return "{ " + s + " }";
    }
    if (v.contains("range") && v["range"].is_array() && v["range"].size() == 2) {
      return renderValue(v["range"][0]) + "-" + renderValue(v["range"][1]);
    }
    if (v.contains("prefix") && v["prefix"].is_object()) {
      return renderValue(v["prefix"].value("addr", json())) + "/" + renderValue(v["prefix"].value("len", json()));
    }
    if (v.contains("concat") && v["concat"].is_array()) {
      std::string s;
      for (const auto& e : v["concat"]) s += (s.empty() ? "" : " . ") + renderValue(e);
      return s;
    }
    if (v.contains("elem") && v["elem"].is_object()) return renderValue(v["elem"].value("val", json()));
  }
  return v.dump();
}

std::string renderLeft(const json& l) {
  if (!l.is_object()) return renderValue(l);
  if (auto it = l.find("payload"); it != l.end() && it->is_object()) {
    const json& p = *it;
    if (p.contains("protocol")) return str(p, "protocol") + " " + str(p, "field");
    return "@" + str(p, "base") + "," + renderValue(p.value("offset", json())) + "," +
           renderValue(p.value("len", json()));
  }
  if (auto it = l.find("meta"); it != l.end() && it->is_object()) {
    std::string key = str(*it, "key");
    if (key == "iifname" || key == "oifname" || key == "iif" || key == "oif") return key;
    return "meta " + key;
  }
  if (auto it = l.find("ct"); it != l.end() && it->is_object()) return "ct " + str(*it, "key");
  if (auto it = l.find("&"); it != l.end() && it->is_array() && it->size() == 2) {
    return renderLeft((*it)[0]) + " & " + renderValue((*it)[1]);
  }
  if (l.size() == 1) return l.begin().key() + " " + l.begin().value().dump();
  return l.dump();
}

std::string renderStatement(const json& e) {
  if (!e.is_object() || e.empty()) return e.dump();
  const std::string key = e.begin().key();
  const json& v = e.begin().value();
  if (key == "match" && v.is_object()) {
    std::string op = str(v, "op");
    std::string s = renderLeft(v.value("left", json()));
    if (!op.empty() && op != "==" && op != "in") s += " " + op;
    return s + " " + renderValue(v.value("right", json()));
  }
  if (key == "jump" || key == "goto") return key + " " + (v.is_object() ? str(v, "target") : renderValue(v));
  if (key == "reject") {
    std::string type = v.is_object() ? str(v, "type") : "";
    return type.empty() ? "reject" : "reject with " + type;
  }
  if (key == "xt" && v.is_object()) return "xt " + str(v, "type") + " \"" + str(v, "name") + "\"";
  if (key == "mangle" && v.is_object()) {
    return renderLeft(v.value("key", json())) + " set " + renderValue(v.value("value", json()));
  }
  if (key == "counter" || key == "accept" || key == "drop" || key == "return" || key == "continue" ||
      key == "masquerade" || key == "notrack") {
    return key;
  }
  if (v.is_null()) return key;
  return key + " " + v.dump();
}

// --- semantics ----------------------------------------------------------------------

std::optional<uint16_t> portNumber(const json& v) {
  if (v.is_number_unsigned() || v.is_number_integer()) {
    auto n = v.get<int64_t>();
    if (n >= 0 && n <= 65535) return static_cast<uint16_t>(n);
  }
  return std::nullopt;
}

// Ports from a right-hand value: number, range, anonymous set, {"elem": {...}}.
bool portRanges(const json& v, std::vector<PortRange>& out) {
  if (auto n = portNumber(v)) {
    out.push_back({*n, *n});
    return true;
  }
  if (v.is_object()) {
    if (v.contains("range") && v["range"].is_array() && v["range"].size() == 2) {
      auto a = portNumber(v["range"][0]), b = portNumber(v["range"][1]);
      if (!a || !b || *a > *b) return false;
      out.push_back({*a, *b});
      return true;
    }
    if (v.contains("set") && v["set"].is_array()) {
      for (const auto& e : v["set"]) {
        if (!portRanges(e, out)) return false;
      }
      return true;
    }
    if (v.contains("elem") && v["elem"].is_object()) return portRanges(v["elem"].value("val", json()), out);
  }
  return false;
}

NftPortMatch portMatch(const std::string& op, const json& right) {
  NftPortMatch m;
  m.negated = (op == "!=");
  if (right.is_string() && !right.get<std::string>().empty() && right.get<std::string>()[0] == '@') {
    m.set_name = right.get<std::string>().substr(1);
    return m;  // resolved after all sets are known
  }
  if (op == "<" || op == "<=" || op == ">" || op == ">=") {
    auto n = portNumber(right);
    if (!n) {
      m.unresolved = true;
      return m;
    }
    int v = *n;
    int lo = 0, hi = 65535;
    if (op == "<") hi = v - 1;
    if (op == "<=") hi = v;
    if (op == ">") lo = v + 1;
    if (op == ">=") lo = v;
    if (lo <= hi) m.ranges.push_back({static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)});
    return m;
  }
  if (!portRanges(right, m.ranges)) m.unresolved = true;
  return m;
}

std::string protocolName(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (auto n = portNumber(v)) {
    switch (*n) {
      case 6:
        return "tcp";
      case 17:
        return "udp";
      case 1:
        return "icmp";
      case 58:
        return "ipv6-icmp";
      case 132:
        return "sctp";
      default:
        return std::to_string(*n);
    }
  }
  return v.dump();
}

NftProtoMatch protoMatch(const std::string& op, const json& right) {
  NftProtoMatch m;
  m.negated = (op == "!=");
  if (right.is_object() && right.contains("set") && right["set"].is_array()) {
    for (const auto& e : right["set"]) m.protocols.push_back(protocolName(e));
  } else {
    m.protocols.push_back(protocolName(right));
  }
  return m;
}

bool isL4(const std::string& p) { return p == "udp" || p == "tcp" || p == "sctp" || p == "udplite" || p == "dccp"; }

bool isLoopback(const json& right) {
  std::string s = renderValue(right);
  return s.rfind("127.", 0) == 0 || s == "::1" || s == "::1/128";
}

void interpretMatch(const json& m, NftRule& r) {
  const std::string op = str(m, "op");
  const json left = m.value("left", json());
  const json right = m.value("right", json());
  const std::string text = renderStatement(json{{"match", m}});
  if (left.is_object() && left.contains("payload") && left["payload"].is_object()) {
    const json& p = left["payload"];
    const std::string proto = str(p, "protocol"), field = str(p, "field");
    if ((isL4(proto) || proto == "th") && (field == "dport" || field == "sport")) {
      if (isL4(proto)) r.protocols.push_back(NftProtoMatch{{proto}, false});
      auto pm = portMatch(op, right);
      if (field == "dport") {
        r.dports.push_back(std::move(pm));
      } else {
        r.sports.push_back(std::move(pm));
        r.restrictions.push_back(text);
      }
      return;
    }
    if ((proto == "ip" && field == "protocol") || (proto == "ip6" && field == "nexthdr")) {
      r.protocols.push_back(protoMatch(op, right));
      return;
    }
    if ((proto == "ip" || proto == "ip6") && (field == "saddr" || field == "daddr")) {
      if (field == "daddr" && op != "!=" && isLoopback(right)) r.daddr_loopback = true;
      r.restrictions.push_back(text);
      return;
    }
    r.has_other_matches = true;
    return;
  }
  if (left.is_object() && left.contains("meta") && left["meta"].is_object()) {
    const std::string key = str(left["meta"], "key");
    if (key == "l4proto") {
      r.protocols.push_back(protoMatch(op, right));
      return;
    }
    if (key == "nfproto" || key == "protocol") return;  // L3 family: not a restriction on our targets
    if (key == "iifname" || key == "oifname" || key == "iif" || key == "oif") {
      r.restrictions.push_back(text);
      return;
    }
    r.has_other_matches = true;
    return;
  }
  if (left.is_object() && left.contains("ct") && left["ct"].is_object() && str(left["ct"], "key") == "state") {
    bool only_invalid = (right.is_string() && right.get<std::string>() == "invalid") ||
                        (right.is_array() && right.size() == 1 && right[0] == "invalid");
    if (only_invalid && op != "!=") r.ct_invalid_only = true;
    r.has_other_matches = true;
    return;
  }
  r.has_other_matches = true;
}

void interpretStatement(const json& e, NftRule& r) {
  if (!e.is_object() || e.empty()) return;
  const std::string key = e.begin().key();
  const json& v = e.begin().value();
  if (key == "match" && v.is_object()) {
    interpretMatch(v, r);
  } else if (key == "accept") {
    r.verdict = NftVerdict::kAccept;
  } else if (key == "drop") {
    r.verdict = NftVerdict::kDrop;
  } else if (key == "reject") {
    r.verdict = NftVerdict::kReject;
    r.verdict_target = v.is_object() ? str(v, "type") : "";
  } else if (key == "return") {
    r.verdict = NftVerdict::kReturn;
  } else if (key == "jump" || key == "goto") {
    r.verdict = key == "jump" ? NftVerdict::kJump : NftVerdict::kGoto;
    r.verdict_target = v.is_object() ? str(v, "target") : "";
  } else if (key == "queue") {
    r.verdict = NftVerdict::kOther;
  } else if (key == "xt" && v.is_object()) {
    const std::string type = str(v, "type"), name = str(v, "name");
    if (type == "match") {
      if (name != "comment") {
        r.has_xt = true;
        r.has_other_matches = true;
      }
    } else if (type == "target") {
      r.has_xt = true;
      if (name == "REJECT") {
        r.verdict = NftVerdict::kReject;
      } else if (name == "DROP") {
        r.verdict = NftVerdict::kDrop;
      } else {
        r.verdict = NftVerdict::kOther;
      }
    } else {
      r.has_xt = true;
      r.has_other_matches = true;
    }
  } else if (key == "limit" || key == "quota" || key == "numgen") {
    r.has_other_matches = true;  // matches only part of the packets
  }
  // counter, log, mangle, nat statements, ...: do not change what the rule matches.
}

NftRule parseRule(const json& jr) {
  NftRule r;
  r.family = str(jr, "family");
  r.table = str(jr, "table");
  r.chain = str(jr, "chain");
  if (auto it = jr.find("handle"); it != jr.end() && it->is_number_unsigned()) r.handle = it->get<uint64_t>();  // a float handle is malformed (found by fuzzing: UB)
  r.comment = str(jr, "comment");
  if (auto it = jr.find("expr"); it != jr.end() && it->is_array()) {
    for (const auto& e : *it) {
      interpretStatement(e, r);
      r.text += (r.text.empty() ? "" : " ") + renderStatement(e);
    }
  }
  if (!r.comment.empty()) r.text += " comment \"" + r.comment + "\"";
  return r;
}

NftSet parseSet(const json& js) {
  NftSet s;
  s.name = str(js, "name");
  s.type = js.contains("type") && js["type"].is_string() ? js["type"].get<std::string>() : "";
  if (s.type == "inet_service") {
    s.ports_known = true;
    if (auto it = js.find("elem"); it != js.end() && it->is_array()) {
      for (const auto& e : *it) {
        if (!portRanges(e, s.ports)) s.ports_known = false;
      }
    }
  }
  return s;
}

}  // namespace

Result<NftRuleset> parseNftJson(std::string_view text) {
  try {
    json doc = json::parse(text.begin(), text.end());
    if (!doc.is_object() || !doc.contains("nftables") || !doc["nftables"].is_array()) {
      return Error{"nft -j list ruleset: no \"nftables\" array in the output"};
    }
    NftRuleset rs;
    std::map<std::pair<std::string, std::string>, size_t> table_index;
    std::map<std::tuple<std::string, std::string, std::string>, size_t> chain_index;
    auto findTable = [&](const json& obj) -> NftTable* {
      auto it = table_index.find({str(obj, "family"), str(obj, "table")});
      return it == table_index.end() ? nullptr : &rs.tables[it->second];
    };
    size_t idx = 0;
    for (const auto& item : doc["nftables"]) {
      ++idx;
      if (!item.is_object() || item.empty()) continue;
      const std::string kind = item.begin().key();
      const json& obj = item.begin().value();
      if (!obj.is_object()) continue;
      if (kind == "table") {
        NftTable t;
        t.family = str(obj, "family");
        t.name = str(obj, "name");
        table_index[{t.family, t.name}] = rs.tables.size();
        rs.tables.push_back(std::move(t));
      } else if (kind == "chain") {
        NftTable* t = findTable(obj);
        if (!t) {
          return Error{"nft -j list ruleset: item " + std::to_string(idx) + ": chain " + str(obj, "name") +
                       " for unknown table " + str(obj, "family") + " " + str(obj, "table")};
        }
        NftChain c;
        c.name = str(obj, "name");
        c.type = str(obj, "type");
        c.hook = str(obj, "hook");
        if (auto it = obj.find("prio"); it != obj.end() && it->is_number_integer()) c.prio = it->get<int>();
        c.policy = str(obj, "policy");
        chain_index[{t->family, t->name, c.name}] = t->chains.size();
        t->chains.push_back(std::move(c));
      } else if (kind == "set") {
        NftTable* t = findTable(obj);
        if (t) t->sets.push_back(parseSet(obj));
      } else if (kind == "rule") {
        NftTable* t = findTable(obj);
        NftChain* c = nullptr;
        if (t) {
          auto it = chain_index.find({str(obj, "family"), str(obj, "table"), str(obj, "chain")});
          if (it != chain_index.end()) c = &t->chains[it->second];
        }
        if (!c) {
          return Error{"nft -j list ruleset: item " + std::to_string(idx) + ": rule for unknown chain " +
                       str(obj, "family") + " " + str(obj, "table") + " " + str(obj, "chain")};
        }
        c->rules.push_back(parseRule(obj));
      }
      // metainfo, map, flowtable, counter, quota, element ...: not needed.
    }
    // Resolve named port sets now that every set is known.
    for (auto& t : rs.tables) {
      for (auto& c : t.chains) {
        for (auto& r : c.rules) {
          for (auto& pm : r.dports) {
            if (pm.set_name.empty()) continue;
            const NftSet* s = t.set(pm.set_name);
            if (s && s->ports_known) {
              pm.ranges = s->ports;
            } else {
              pm.unresolved = true;
            }
          }
        }
      }
    }
    return rs;
  } catch (const json::exception& e) {
    return Error{std::string("nft -j list ruleset: ") + e.what()};
  }
}

Result<std::vector<std::pair<std::string, std::string>>> parseNftChainTables(std::string_view text) {
  try {
    json doc = json::parse(text.begin(), text.end());
    if (!doc.is_object() || !doc.contains("nftables") || !doc["nftables"].is_array()) {
      return Error{"nft -j list chains: no \"nftables\" array in the output"};
    }
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& item : doc["nftables"]) {
      if (!item.is_object() || item.empty() || item.begin().key() != "chain" || !item.begin().value().is_object()) {
        continue;
      }
      std::pair<std::string, std::string> ft{str(item.begin().value(), "family"), str(item.begin().value(), "table")};
      if (std::find(out.begin(), out.end(), ft) == out.end()) out.push_back(std::move(ft));
    }
    return out;
  } catch (const json::exception& e) {
    return Error{std::string("nft -j list chains: ") + e.what()};
  }
}

}  // namespace meshprobe::agent
