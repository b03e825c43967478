#include "aggregator/matrix_query.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <array>
#include <boost/crc.hpp>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "aggregator/matrix.h"
#include "aggregator/state/snapshot.h"

namespace meshprobe::aggregator {

namespace v1 = meshprobe::v1;
namespace pbio = google::protobuf::io;

namespace {

// Token layout (before hex): varint version, varint layer, fixed32 filter fingerprint,
// string src, string dst, then fixed32 CRC-32 of everything before it.
constexpr uint32_t kTokenVersion = 1;
// Generous bound on a decoded token: two node names (at most 253 bytes each in Kubernetes)
// and a few integers. Longer input is rejected before it is decoded.
constexpr size_t kMaxTokenBytes = 1024;

uint32_t crc32(std::string_view bytes) {
  boost::crc_32_type crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

std::string layerName(v1::Layer layer) {
  const std::string& name = v1::Layer_Name(layer);
  return name.empty() ? std::to_string(static_cast<int>(layer)) : name;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool cellBefore(const v1::Cell& a, const v1::Cell& b) {
  return std::tie(a.src(), a.dst()) < std::tie(b.src(), b.dst());
}

// A valid filter state: a named state other than STATE_UNSPECIFIED.
bool knownState(int s) { return v1::Cell_State_IsValid(s) && s != v1::Cell::STATE_UNSPECIFIED; }

}  // namespace

uint32_t matrixFilterFingerprint(const v1::GetMatrixRequest& req) {
  std::set<std::string> nodes(req.nodes().begin(), req.nodes().end());
  std::set<int> states(req.states().begin(), req.states().end());
  std::string canonical;
  {
    pbio::StringOutputStream sink(&canonical);
    pbio::CodedOutputStream out(&sink);
    out.WriteVarint32(static_cast<uint32_t>(req.layer()));
    out.WriteVarint32(static_cast<uint32_t>(nodes.size()));
    for (const auto& n : nodes) {
      out.WriteVarint32(static_cast<uint32_t>(n.size()));
      out.WriteString(n);
    }
    out.WriteVarint32(static_cast<uint32_t>(states.size()));
    for (int s : states) out.WriteVarint32(static_cast<uint32_t>(s));
  }
  return crc32(canonical);
}

std::string encodePageToken(const PageCursor& cursor) {
  std::string bin;
  {
    pbio::StringOutputStream sink(&bin);
    pbio::CodedOutputStream out(&sink);
    out.WriteVarint32(kTokenVersion);
    out.WriteVarint32(static_cast<uint32_t>(cursor.layer));
    out.WriteLittleEndian32(cursor.filter_fingerprint);
    out.WriteVarint32(static_cast<uint32_t>(cursor.src.size()));
    out.WriteString(cursor.src);
    out.WriteVarint32(static_cast<uint32_t>(cursor.dst.size()));
    out.WriteString(cursor.dst);
  }
  const uint32_t sum = crc32(bin);
  for (int i = 0; i < 4; ++i) bin.push_back(static_cast<char>((sum >> (8 * i)) & 0xff));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  token.reserve(bin.size() * 2);
  for (unsigned char c : bin) {
    token.push_back(kHex[c >> 4]);
    token.push_back(kHex[c & 0xf]);
  }
  return token;
}

Result<PageCursor> decodePageToken(std::string_view token) {
  if (token.size() % 2 != 0) return Error{"it is not hex (odd length)"};
  if (token.size() / 2 > kMaxTokenBytes)
    return Error{"it is too long (" + std::to_string(token.size()) + " characters)"};
  std::string bin;
  bin.reserve(token.size() / 2);
  for (size_t i = 0; i < token.size(); i += 2) {
    const int hi = hexValue(token[i]), lo = hexValue(token[i + 1]);
    if (hi < 0 || lo < 0) return Error{"it is not hex"};
    bin.push_back(static_cast<char>(hi << 4 | lo));
  }
  if (bin.size() < 4) return Error{"it is too short"};
  const std::string_view body(bin.data(), bin.size() - 4);
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i)
    stored |= static_cast<uint32_t>(static_cast<unsigned char>(bin[body.size() + i])) << (8 * i);
  if (crc32(body) != stored) return Error{"its checksum does not match (corrupted or edited)"};

  pbio::CodedInputStream in(reinterpret_cast<const uint8_t*>(body.data()), static_cast<int>(body.size()));
  uint32_t version = 0, layer = 0, fingerprint = 0, len = 0;
  if (!in.ReadVarint32(&version)) return Error{"it is truncated"};
  if (version != kTokenVersion) return Error{"its version " + std::to_string(version) + " is unknown"};
  PageCursor c;
  if (!in.ReadVarint32(&layer) || !in.ReadLittleEndian32(&fingerprint)) return Error{"it is truncated"};
  if (!in.ReadVarint32(&len) || !in.ReadString(&c.src, static_cast<int>(len))) return Error{"it is truncated"};
  if (!in.ReadVarint32(&len) || !in.ReadString(&c.dst, static_cast<int>(len))) return Error{"it is truncated"};
  if (in.CurrentPosition() != static_cast<int>(body.size())) return Error{"it has trailing bytes"};
  c.layer = static_cast<v1::Layer>(layer);
  c.filter_fingerprint = fingerprint;
  return c;
}

namespace {

// A request's filters and cursor, checked.
struct ParsedRequest {
  std::unordered_set<std::string_view> node_filter;  // views into req.nodes()
  std::array<bool, 8> state_filter{};                // indexed by Cell::State
  bool filtered = false;
  std::optional<PageCursor> cursor;
  bool new_fields = false;
  uint32_t page_size = 0;
};

template <typename IsMember>
grpc::Status parseRequest(const v1::GetMatrixRequest& req, const MatrixPageLimits& limits, IsMember&& is_member,
                          ParsedRequest* r) {
  std::set<std::string> unknown;
  for (const auto& n : req.nodes()) {
    if (n.empty()) return {grpc::StatusCode::INVALID_ARGUMENT, "GetMatrix: an empty name in `nodes`"};
    if (!is_member(n)) unknown.insert(n);
    r->node_filter.insert(n);
  }
  if (!unknown.empty()) {
    std::string names;
    for (const auto& n : unknown) names += (names.empty() ? "'" : ", '") + n + "'";
    return {grpc::StatusCode::NOT_FOUND, "GetMatrix: no node named " + names + " has said Hello to this aggregator"};
  }
  for (int s : req.states()) {
    if (!knownState(s)) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "GetMatrix: `states` has " +
                  (s == v1::Cell::STATE_UNSPECIFIED ? std::string("STATE_UNSPECIFIED")
                                                    : "unknown state " + std::to_string(s)) +
                  "; want OK, DEGRADED, FAIL or UNKNOWN"};
    }
    r->state_filter[static_cast<size_t>(s)] = true;
  }
  r->filtered = !r->node_filter.empty() || req.states_size() > 0;
  if (!req.page_token().empty()) {
    auto decoded = decodePageToken(req.page_token());
    if (!decoded.ok()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "GetMatrix: page_token is not one this aggregator issued: " +
                                                      decoded.error().message + "; start again without a page_token"};
    }
    if (decoded->layer != req.layer()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "GetMatrix: page_token was issued for layer " +
                                                      layerName(decoded->layer) + ", not " + layerName(req.layer())};
    }
    if (decoded->filter_fingerprint != matrixFilterFingerprint(req)) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "GetMatrix: page_token was issued for other filters; send the same `nodes` and `states` on every page"};
    }
    r->cursor = std::move(decoded.value());
  }
  r->new_fields = r->filtered || req.page_size() != 0 || r->cursor.has_value();
  r->page_size = req.page_size() != 0 ? req.page_size() : limits.default_page_size;
  return grpc::Status::OK;
}

}  // namespace

grpc::Status queryMatrix(v1::GetMatrixResponse full, const v1::GetMatrixRequest& req, v1::GetMatrixResponse* out,
                         const MatrixPageLimits& limits) {
  // ---- the request ----
  std::unordered_map<std::string_view, size_t> member_index;  // name -> index in full.nodes()
  for (int i = 0; i < full.nodes_size(); ++i) member_index.emplace(full.nodes(i), static_cast<size_t>(i));
  ParsedRequest parsed;
  if (auto st = parseRequest(req, limits, [&](const std::string& n) { return member_index.count(n) > 0; }, &parsed);
      !st.ok()) {
    return st;
  }
  const auto& node_filter = parsed.node_filter;
  const auto& state_filter = parsed.state_filter;
  const bool filtered = parsed.filtered;
  const auto& cursor = parsed.cursor;
  const bool new_fields = parsed.new_fields;
  const uint32_t page_size = parsed.page_size;
  // ISTIOD cells all go to "istiod", which is no member (a member of that name included).
  const bool src_only = full.layer() == v1::ISTIOD;

  // ---- the page ----
  auto* cells = full.mutable_cells();
  if (!std::is_sorted(cells->begin(), cells->end(), cellBefore)) {
    std::stable_sort(cells->pointer_begin(), cells->pointer_end(),
                     [](const v1::Cell* a, const v1::Cell* b) { return cellBefore(*a, *b); });
  }
  auto matches = [&](const v1::Cell& c) {
    if (!node_filter.empty() && !node_filter.count(c.src()) && (src_only || !node_filter.count(c.dst()))) {
      return false;
    }
    if (req.states_size() > 0) {
      const auto s = static_cast<size_t>(c.state());
      if (s >= state_filter.size() || !state_filter[s]) return false;
    }
    return true;
  };
  auto afterCursor = [&](const v1::Cell& c) {
    return !cursor || std::tie(c.src(), c.dst()) > std::tie(cursor->src, cursor->dst);
  };

  std::vector<char> involved(filtered ? static_cast<size_t>(full.nodes_size()) : 0, 0);
  std::vector<int> page;  // indexes into cells
  uint32_t total = 0;
  size_t bytes = 0;
  bool more = false;  // a matching cell after the page
  for (int i = 0; i < cells->size(); ++i) {
    const v1::Cell& c = cells->Get(i);
    if (!matches(c)) continue;
    ++total;
    if (filtered) {
      for (const std::string* name : {&c.src(), &c.dst()}) {
        if (auto it = member_index.find(*name); it != member_index.end()) involved[it->second] = 1;
        if (src_only) break;
      }
    }
    if (more || !afterCursor(c)) continue;
    const size_t size = c.ByteSizeLong();
    const size_t encoded = 1 + pbio::CodedOutputStream::VarintSize64(size) + size;  // tag, length, cell
    if (page.size() >= page_size || (!page.empty() && bytes + encoded > limits.max_page_bytes)) {
      more = true;
      continue;
    }
    bytes += encoded;
    page.push_back(i);
  }

  out->Clear();
  out->set_layer(full.layer());
  for (int i = 0; i < full.nodes_size(); ++i) {
    if (!filtered || involved[static_cast<size_t>(i)]) out->add_nodes(std::move(*full.mutable_nodes(i)));
  }
  out->mutable_cells()->Reserve(static_cast<int>(page.size()));
  for (int i : page) *out->add_cells() = std::move(*cells->Mutable(i));
  if (more) {
    const v1::Cell& last = out->cells(out->cells_size() - 1);
    out->set_next_page_token(encodePageToken({req.layer(), matrixFilterFingerprint(req), last.src(), last.dst()}));
  }
  if (new_fields || more) out->set_total_cells(total);
  return grpc::Status::OK;
}

grpc::Status queryMatrix(const StateSnapshot& snap, const v1::GetMatrixRequest& req, v1::GetMatrixResponse* out,
                         const MatrixPageLimits& limits) {
  const v1::Layer layer = req.layer();
  ParsedRequest parsed;
  if (auto st = parseRequest(req, limits, [&](const std::string& n) { return snap.indexOf(n).has_value(); }, &parsed);
      !st.ok()) {
    return st;
  }
  const uint32_t n = snap.size();
  const bool istiod = layer == v1::ISTIOD;
  const size_t l = istiod ? 0 : static_cast<size_t>(rowLayerIndex(layer));
  std::vector<char> in_filter(n, 0);
  std::vector<uint32_t> filter_idx;  // sorted
  for (const auto& name : parsed.node_filter) filter_idx.push_back(*snap.indexOf(name));
  std::sort(filter_idx.begin(), filter_idx.end());
  for (uint32_t i : filter_idx) in_filter[i] = 1;
  const bool by_node = !filter_idx.empty();
  const bool by_state = req.states_size() > 0;

  auto stateOf = [&](uint32_t i, uint32_t j) { return istiod ? snap.istiod[i] : snap.state(l, i, j); };
  // Where the page starts: the first cell after the cursor, as (src index, dst index).
  const std::string istiod_dst(kIstiodDst);
  auto afterCursor = [&](uint32_t i, uint32_t j) {
    if (!parsed.cursor) return true;
    const std::string& dst = istiod ? istiod_dst : snap.name(j);
    return std::tie(snap.name(i), dst) > std::tie(parsed.cursor->src, parsed.cursor->dst);
  };

  std::vector<char> involved(parsed.filtered ? n : 0, 0);
  std::vector<v1::Cell> page;
  uint64_t total = 0;
  size_t bytes = 0;
  bool more = false;
  auto visit = [&](uint32_t i, uint32_t j) {  // a candidate cell in (src, dst) order
    if (by_state) {
      const auto s = static_cast<size_t>(stateOf(i, j));
      if (s >= parsed.state_filter.size() || !parsed.state_filter[s]) return;
    }
    ++total;
    if (parsed.filtered) {
      involved[i] = 1;
      if (!istiod) involved[j] = 1;
    }
    if (more || !afterCursor(i, j)) return;
    v1::Cell c = snap.cell(layer, i, j);
    const size_t size = c.ByteSizeLong();
    const size_t encoded = 1 + pbio::CodedOutputStream::VarintSize64(size) + size;  // tag, length, cell
    if (page.size() >= parsed.page_size || (!page.empty() && bytes + encoded > limits.max_page_bytes)) {
      more = true;
      return;
    }
    bytes += encoded;
    page.push_back(std::move(c));
  };

  if (!parsed.filtered) {
    // Every cell matches: start at the cursor and stop after the page.
    total = istiod ? n : static_cast<uint64_t>(n) * (n > 0 ? n - 1 : 0);
    uint32_t i0 = 0;
    if (parsed.cursor) {
      // Binary search over the names (indexes are in name order).
      uint32_t lo = 0, hi = n;
      while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (snap.name(mid) < parsed.cursor->src) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      i0 = lo;
    }
    const uint64_t counted = total;
    for (uint32_t i = i0; i < n && !more; ++i) {
      if (istiod) {
        visit(i, 0);
        continue;
      }
      for (uint32_t j = 0; j < n && !more; ++j) {
        if (j != i) visit(i, j);
      }
    }
    total = counted;  // visit() counted only what it walked
  } else {
    for (uint32_t i = 0; i < n; ++i) {
      if (istiod) {
        if (!by_node || in_filter[i]) visit(i, 0);
        continue;
      }
      if (!by_node || in_filter[i]) {
        for (uint32_t j = 0; j < n; ++j) {
          if (j != i) visit(i, j);
        }
      } else {
        for (uint32_t j : filter_idx) {
          if (j != i) visit(i, j);
        }
      }
    }
  }

  out->Clear();
  out->set_layer(layer);
  for (uint32_t i = 0; i < n; ++i) {
    if (!parsed.filtered || involved[i]) out->add_nodes(snap.name(i));
  }
  out->mutable_cells()->Reserve(static_cast<int>(page.size()));
  for (auto& c : page) *out->add_cells() = std::move(c);
  if (more) {
    const v1::Cell& last = out->cells(out->cells_size() - 1);
    out->set_next_page_token(encodePageToken({layer, matrixFilterFingerprint(req), last.src(), last.dst()}));
  }
  if (parsed.new_fields || more) out->set_total_cells(static_cast<uint32_t>(total));
  return grpc::Status::OK;
}

}  // namespace meshprobe::aggregator
