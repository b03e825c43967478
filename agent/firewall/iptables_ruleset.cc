#include "agent/firewall/iptables_ruleset.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>
#include <unordered_map>

namespace meshprobe::agent {

const IptablesChain* IptablesTable::chain(std::string_view chain_name) const {
  for (const auto& c : chains) {
    if (c.name == chain_name) return &c;
  }
  return nullptr;
}

const IptablesTable* IptablesRuleset::table(std::string_view table_name) const {
  for (const auto& t : tables) {
    if (t.name == table_name) return &t;
  }
  return nullptr;
}

size_t IptablesRuleset::ruleCount() const {
  size_t n = 0;
  for (const auto& t : tables) {
    for (const auto& c : t.chains) n += c.rules.size();
  }
  return n;
}

namespace {

Error lineError(int line, const std::string& what) {
  return Error{"iptables-save line " + std::to_string(line) + ": " + what};
}

// Splits a rule line into arguments the way iptables-save quotes them: double quotes
// group, backslash escapes '"' and '\' inside quotes.
Result<std::vector<std::string>> tokenize(std::string_view s, int line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    std::string tok;
    bool quoted = false;
    while (i < s.size()) {
      char c = s[i];
      if (quoted) {
        if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\')) {
          tok += s[i + 1];
          i += 2;
          continue;
        }
        if (c == '"') {
          quoted = false;
          ++i;
          continue;
        }
        tok += c;
        ++i;
        continue;
      }
      if (std::isspace(static_cast<unsigned char>(c))) break;
      if (c == '"') {
        quoted = true;
        ++i;
        continue;
      }
      tok += c;
      ++i;
    }
    if (quoted) return lineError(line, "unterminated quote");
    out.push_back(std::move(tok));
  }
  return out;
}

std::optional<uint16_t> parsePortNumber(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

// "4789", "4000:5000", ":1024", "1024:" -> range.
std::optional<PortRange> parseRange(std::string_view s) {
  auto colon = s.find(':');
  if (colon == std::string_view::npos) {
    auto p = parsePortNumber(s);
    if (!p) return std::nullopt;
    return PortRange{*p, *p};
  }
  std::string_view a = s.substr(0, colon), b = s.substr(colon + 1);
  std::optional<uint16_t> first = a.empty() ? std::optional<uint16_t>(0) : parsePortNumber(a);
  std::optional<uint16_t> last = b.empty() ? std::optional<uint16_t>(65535) : parsePortNumber(b);
  if (!first || !last || *first > *last) return std::nullopt;
  return PortRange{*first, *last};
}

// "53,4789,8472" or "15010:15014,80".
std::optional<std::vector<PortRange>> parsePortList(std::string_view s) {
  std::vector<PortRange> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string_view part = s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    auto r = parseRange(part);
    if (!r) return std::nullopt;
    out.push_back(*r);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string normalizeProtocol(std::string p) {
  std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) { return std::tolower(c); });
  if (p == "all" || p == "0") return "";
  if (p == "6") return "tcp";
  if (p == "17") return "udp";
  if (p == "1") return "icmp";
  if (p == "58") return "ipv6-icmp";
  if (p == "132") return "sctp";
  return p;
}

bool isModelledMatch(const std::string& m) { return m == "tcp" || m == "udp" || m == "multiport" || m == "comment"; }

// Options whose value we skip without modelling; they make the rule conditional.
bool looksLikeOption(const std::string& t) {
  return t.size() > 1 && t[0] == '-' && !std::isdigit(static_cast<unsigned char>(t[1]));
}

Result<IptablesRule> parseRule(const std::string& chain, std::string text, const std::vector<std::string>& toks,
                               size_t first_arg, int line) {
  IptablesRule r;
  r.chain = chain;
  r.text = std::move(text);
  r.line = line;
  r.args.assign(toks.begin() + static_cast<std::ptrdiff_t>(first_arg), toks.end());
  const auto& a = r.args;
  bool neg = false;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string& t = a[i];
    if (t == "!") {
      neg = true;
      continue;
    }
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= a.size()) return lineError(line, "option " + t + " needs a value");
      return a[++i];
    };
    auto ports = [&](std::vector<PortRange>& dst, bool& dst_neg, bool list) -> Status {
      const std::string opt = t;
      auto v = value();
      if (!v) return v.error();
      std::optional<std::vector<PortRange>> parsed;
      if (list) {
        parsed = parsePortList(*v);
      } else if (auto one = parseRange(*v)) {
        parsed = std::vector<PortRange>{*one};
      }
      if (!parsed) return lineError(line, "bad port '" + *v + "' for " + opt);
      dst.insert(dst.end(), parsed->begin(), parsed->end());
      dst_neg = neg;
      return okStatus();
    };
    auto text_opt = [&](std::string& dst, bool& dst_neg) -> Status {
      auto v = value();
      if (!v) return v.error();
      dst = *v;
      dst_neg = neg;
      return okStatus();
    };
    Status st = okStatus();
    if (t == "-p" || t == "--protocol") {
      auto v = value();
      if (!v) return v.error();
      r.protocol = normalizeProtocol(*v);
      r.protocol_negated = neg;
    } else if (t == "-s" || t == "--source" || t == "--src") {
      st = text_opt(r.source, r.source_negated);
    } else if (t == "-d" || t == "--destination" || t == "--dst") {
      st = text_opt(r.destination, r.destination_negated);
    } else if (t == "-i" || t == "--in-interface") {
      st = text_opt(r.in_interface, r.in_interface_negated);
    } else if (t == "-o" || t == "--out-interface") {
      st = text_opt(r.out_interface, r.out_interface_negated);
    } else if (t == "-m" || t == "--match") {
      auto v = value();
      if (!v) return v.error();
      r.matches.push_back(*v);
      if (!isModelledMatch(*v)) r.has_other_matches = true;
    } else if (t == "--dport" || t == "--destination-port") {
      st = ports(r.dports, r.dports_negated, false);
    } else if (t == "--sport" || t == "--source-port") {
      st = ports(r.sports, r.sports_negated, false);
    } else if (t == "--dports" || t == "--destination-ports") {
      st = ports(r.dports, r.dports_negated, true);
    } else if (t == "--sports" || t == "--source-ports") {
      st = ports(r.sports, r.sports_negated, true);
    } else if (t == "--ports") {
      st = ports(r.ports, r.ports_negated, true);
    } else if (t == "--comment") {
      auto v = value();
      if (!v) return v.error();
    } else if (t == "-j" || t == "--jump" || t == "-g" || t == "--goto") {
      auto v = value();
      if (!v) return v.error();
      r.target = *v;
      r.is_goto = (t == "-g" || t == "--goto");
      r.target_args.assign(a.begin() + static_cast<std::ptrdiff_t>(i) + 1, a.end());
      break;
    } else if (looksLikeOption(t)) {
      // An option of a match we do not model (--ctstate, --mark, --match-set, ...):
      // skip its values.
      r.has_other_matches = true;
      while (i + 1 < a.size() && !looksLikeOption(a[i + 1]) && a[i + 1] != "!") ++i;
    } else {
      return lineError(line, "unexpected argument '" + t + "'");
    }
    if (!st) return st.error();
    neg = false;
  }
  if (neg) return lineError(line, "'!' without an option");
  return r;
}

}  // namespace

Result<IptablesRuleset> parseIptablesSave(std::string_view text) {
  IptablesRuleset rs;
  IptablesTable* open = nullptr;
  std::unordered_map<std::string, size_t> chain_index;  // chains of the open table
  int open_line = 0;
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = (nl == std::string_view::npos) ? text.size() : nl + 1;
    ++line_no;
    while (!raw.empty() && (raw.back() == '\r' || raw.back() == ' ' || raw.back() == '\t')) raw.remove_suffix(1);
    while (!raw.empty() && (raw.front() == ' ' || raw.front() == '\t')) raw.remove_prefix(1);
    if (raw.empty() || raw.front() == '#') continue;

    if (raw.front() == '*') {
      if (open)
        return lineError(line_no, "table " + std::string(raw.substr(1)) + " starts before table " + open->name +
                                      " (line " + std::to_string(open_line) + ") was committed");
      std::string name(raw.substr(1));
      if (name.empty()) return lineError(line_no, "table name missing after '*'");
      rs.tables.push_back(IptablesTable{name, {}});
      open = &rs.tables.back();
      chain_index.clear();
      open_line = line_no;
      continue;
    }
    if (raw == "COMMIT") {
      if (!open) return lineError(line_no, "COMMIT outside a table");
      open = nullptr;
      continue;
    }
    if (raw.front() == ':') {
      if (!open) return lineError(line_no, "chain declaration outside a table");
      auto toks = tokenize(raw.substr(1), line_no);
      if (!toks) return toks.error();
      if (toks->size() < 2) return lineError(line_no, "chain declaration needs a name and a policy");
      IptablesChain c;
      c.name = (*toks)[0];
      c.policy = (*toks)[1];
      if (!chain_index.emplace(c.name, open->chains.size()).second) {
        return lineError(line_no, "chain " + c.name + " declared twice");
      }
      open->chains.push_back(std::move(c));
      continue;
    }
    // Rules, optionally with "[packets:bytes]" counters first (iptables-save -c).
    auto toks = tokenize(raw, line_no);
    if (!toks) return toks.error();
    size_t k = 0;
    if (k < toks->size() && !(*toks)[k].empty() && (*toks)[k].front() == '[') ++k;
    if (k >= toks->size() || ((*toks)[k] != "-A" && (*toks)[k] != "--append")) {
      std::string head = toks->empty() ? std::string(raw) : (*toks)[k < toks->size() ? k : 0];
      return lineError(line_no, "unexpected line starting with '" + head + "'");
    }
    if (!open) return lineError(line_no, "rule outside a table");
    if (k + 1 >= toks->size()) return lineError(line_no, "rule without a chain");
    const std::string& chain_name = (*toks)[k + 1];
    auto found = chain_index.find(chain_name);
    IptablesChain* chain = found == chain_index.end() ? nullptr : &open->chains[found->second];
    if (!chain) return lineError(line_no, "rule for undeclared chain " + chain_name + " in table " + open->name);
    // The rule text as printed, without a counters prefix.
    std::string rule_text(raw);
    if (k == 1) {
      auto a = rule_text.find("-A");
      if (a != std::string::npos) rule_text = rule_text.substr(a);
    }
    auto rule = parseRule(chain_name, std::move(rule_text), *toks, k + 2, line_no);
    if (!rule) return rule.error();
    chain->rules.push_back(std::move(*rule));
  }
  if (open) return lineError(open_line, "table " + open->name + " is not terminated by COMMIT");
  return rs;
}

}  // namespace meshprobe::agent
