// GetMatrix's filters and paging (aggregator/matrix_query.h) on matrices built here: an old
// request is answered unchanged, filters alone and together, the default page size and the
// byte budget at their boundaries, reading every page while the matrix grows and shrinks,
// and page tokens that were corrupted, edited, or belong to another query.
#include "aggregator/matrix_query.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <boost/crc.hpp>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using StateOf = std::function<v1::Cell::State(const std::string& src, const std::string& dst)>;

v1::Cell::State allOk(const std::string&, const std::string&) { return v1::Cell::OK; }

// What ClusterState::matrix() answers: every member sorted in `nodes`; UNDERLAY/OVERLAY
// every ordered pair of distinct members, ISTIOD one cell per member to "istiod".
v1::GetMatrixResponse makeMatrix(v1::Layer layer, std::vector<std::string> nodes, const StateOf& state = allOk) {
  std::sort(nodes.begin(), nodes.end());
  v1::GetMatrixResponse m;
  m.set_layer(layer);
  for (const auto& n : nodes) m.add_nodes(n);
  auto add = [&](const std::string& src, const std::string& dst) {
    auto* c = m.add_cells();
    c->set_src(src);
    c->set_dst(dst);
    c->set_layer(layer);
    c->set_state(state(src, dst));
    c->set_loss(c->state() == v1::Cell::FAIL ? 1.0 : 0.0);
    c->mutable_rtt()->set_nanos(200'000);
    c->mutable_last_update()->set_seconds(1795000000);
  };
  for (const auto& src : nodes) {
    if (layer == v1::ISTIOD) {
      add(src, "istiod");
      continue;
    }
    for (const auto& dst : nodes) {
      if (dst != src) add(src, dst);
    }
  }
  return m;
}

std::vector<std::string> names(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 1; i <= n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

v1::GetMatrixRequest request(v1::Layer layer, std::vector<std::string> nodes = {},
                             std::vector<v1::Cell::State> states = {}, uint32_t page_size = 0, std::string token = "") {
  v1::GetMatrixRequest r;
  r.set_layer(layer);
  for (auto& n : nodes) r.add_nodes(n);
  for (auto s : states) r.add_states(s);
  r.set_page_size(page_size);
  r.set_page_token(std::move(token));
  return r;
}

std::vector<std::string> keys(const v1::GetMatrixResponse& r) {
  std::vector<std::string> out;
  for (const auto& c : r.cells()) out.push_back(c.src() + ">" + c.dst());
  return out;
}

v1::GetMatrixResponse query(const v1::GetMatrixResponse& full, const v1::GetMatrixRequest& req,
                            const MatrixPageLimits& limits = {}) {
  v1::GetMatrixResponse out;
  grpc::Status st = queryMatrix(full, req, &out, limits);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return out;
}

grpc::Status queryError(const v1::GetMatrixResponse& full, const v1::GetMatrixRequest& req) {
  v1::GetMatrixResponse out;
  grpc::Status st = queryMatrix(full, req, &out);
  EXPECT_EQ(out.ByteSizeLong(), 0u) << "an error writes nothing";
  return st;
}

// FAIL for every pair that involves node3, DEGRADED for node1 -> node2, OK otherwise.
v1::Cell::State node3Broken(const std::string& src, const std::string& dst) {
  if (src == "node3" || dst == "node3") return v1::Cell::FAIL;
  if (src == "node1" && dst == "node2") return v1::Cell::DEGRADED;
  return v1::Cell::OK;
}

// ---- an old request ----

TEST(MatrixQuery, AnOldRequestGetsTheWholeMatrixByteForByte) {
  for (v1::Layer layer : {v1::UNDERLAY, v1::OVERLAY, v1::ISTIOD}) {
    const auto full = makeMatrix(layer, names("node", 5), node3Broken);
    const auto got = query(full, request(layer));
    EXPECT_EQ(got.SerializeAsString(), full.SerializeAsString()) << v1::Layer_Name(layer);
    EXPECT_EQ(got.next_page_token(), "");
    EXPECT_EQ(got.total_cells(), 0u);
  }
}

TEST(MatrixQuery, AnEmptyOrOneNodeMatrixIsAnsweredAsIs) {
  const auto empty = makeMatrix(v1::OVERLAY, {});
  EXPECT_EQ(query(empty, request(v1::OVERLAY)).SerializeAsString(), empty.SerializeAsString());
  const auto one = makeMatrix(v1::OVERLAY, {"node1"});
  auto got = query(one, request(v1::OVERLAY));
  EXPECT_THAT(got.nodes(), ElementsAre("node1"));
  EXPECT_THAT(got.cells(), IsEmpty());
}

// ---- filters ----

TEST(MatrixQuery, NodesFilterKeepsCellsFromOrToThoseNodes) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 4));
  auto got = query(full, request(v1::OVERLAY, {"node2"}));
  EXPECT_THAT(keys(got),
              ElementsAre("node1>node2", "node2>node1", "node2>node3", "node2>node4", "node3>node2", "node4>node2"));
  EXPECT_THAT(got.nodes(), ElementsAre("node1", "node2", "node3", "node4"));  // all take part
  EXPECT_EQ(got.total_cells(), 6u);                                           // filtered: always counted
  EXPECT_EQ(got.next_page_token(), "");

  auto two = query(full, request(v1::OVERLAY, {"node4", "node1", "node4"}));  // order, repeats: no matter
  EXPECT_EQ(two.cells_size(), 10);                                            // 12 pairs less node2<->node3
  for (const auto& c : two.cells()) {
    EXPECT_TRUE(c.src() == "node1" || c.src() == "node4" || c.dst() == "node1" || c.dst() == "node4")
        << c.src() << c.dst();
  }
}

TEST(MatrixQuery, StatesFilterKeepsCellsInThoseStatesAndNodesListsOnlyTheirEnds) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 5), node3Broken);
  auto fail = query(full, request(v1::OVERLAY, {}, {v1::Cell::FAIL}));
  EXPECT_EQ(fail.cells_size(), 8);
  for (const auto& c : fail.cells()) EXPECT_EQ(c.state(), v1::Cell::FAIL);
  EXPECT_THAT(fail.nodes(), ElementsAre("node1", "node2", "node3", "node4", "node5"));

  auto degraded = query(full, request(v1::OVERLAY, {}, {v1::Cell::DEGRADED}));
  EXPECT_THAT(keys(degraded), ElementsAre("node1>node2"));
  EXPECT_THAT(degraded.nodes(), ElementsAre("node1", "node2"));

  auto either = query(full, request(v1::OVERLAY, {}, {v1::Cell::DEGRADED, v1::Cell::FAIL}));
  EXPECT_EQ(either.cells_size(), 9);
  EXPECT_EQ(either.total_cells(), 9u);

  auto none = query(full, request(v1::OVERLAY, {}, {v1::Cell::UNKNOWN}));
  EXPECT_THAT(none.cells(), IsEmpty());
  EXPECT_THAT(none.nodes(), IsEmpty());
  EXPECT_EQ(none.total_cells(), 0u);
  EXPECT_EQ(none.next_page_token(), "");
  EXPECT_EQ(none.layer(), v1::OVERLAY);
}

TEST(MatrixQuery, NodesAndStatesTogetherMustBothHold) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 5), node3Broken);
  auto got = query(full, request(v1::OVERLAY, {"node1"}, {v1::Cell::FAIL, v1::Cell::DEGRADED}));
  EXPECT_THAT(keys(got), ElementsAre("node1>node2", "node1>node3", "node3>node1"));
  EXPECT_THAT(got.nodes(), ElementsAre("node1", "node2", "node3"));
  auto ok = query(full, request(v1::OVERLAY, {"node3"}, {v1::Cell::OK}));
  EXPECT_THAT(ok.cells(), IsEmpty());
}

TEST(MatrixQuery, IstiodNodesFilterIsOnTheSourceAndIstiodIsNoNode) {
  // A member that happens to be called "istiod" does not pull in every ISTIOD cell.
  const auto full = makeMatrix(v1::ISTIOD, {"istiod", "node1", "node2"});
  auto got = query(full, request(v1::ISTIOD, {"node2"}));
  EXPECT_THAT(keys(got), ElementsAre("node2>istiod"));
  EXPECT_THAT(got.nodes(), ElementsAre("node2"));
  auto named = query(full, request(v1::ISTIOD, {"istiod"}));
  EXPECT_THAT(keys(named), ElementsAre("istiod>istiod"));
}

TEST(MatrixQuery, UnknownNodesAreNotFoundNamingEveryOne) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 3));
  grpc::Status st = queryError(full, request(v1::OVERLAY, {"node9", "node1", "ghost"}));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("'ghost', 'node9'"));
  EXPECT_THAT(st.error_message(), ::testing::Not(HasSubstr("node1")));
}

TEST(MatrixQuery, BadFilterValuesAreInvalidArgument) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 3));
  grpc::Status empty = queryError(full, request(v1::OVERLAY, {"node1", ""}));
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty.error_message(), HasSubstr("empty name"));

  grpc::Status unspecified = queryError(full, request(v1::OVERLAY, {}, {v1::Cell::STATE_UNSPECIFIED}));
  EXPECT_EQ(unspecified.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unspecified.error_message(), HasSubstr("STATE_UNSPECIFIED"));

  // A state value from a newer schema arrives as a bare number.
  auto req = request(v1::OVERLAY);
  req.mutable_states()->Add(7);
  grpc::Status unknown = queryError(full, req);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unknown.error_message(), HasSubstr("unknown state 7"));
}

// ---- paging ----

// Reads every page of `req` (at most 10,000 of them), checking each against `page_size`.
std::vector<std::string> readAll(const v1::GetMatrixResponse& full, v1::GetMatrixRequest req, size_t page_size,
                                 int* pages = nullptr, const MatrixPageLimits& limits = {}) {
  std::vector<std::string> all;
  int n = 0;
  for (; n < 10'000; ++n) {
    auto page = query(full, req, limits);
    EXPECT_LE(static_cast<size_t>(page.cells_size()), page_size);
    EXPECT_TRUE(page.cells_size() > 0 || page.next_page_token().empty()) << "an empty page promises more";
    for (auto& k : keys(page)) all.push_back(std::move(k));
    if (page.next_page_token().empty()) break;
    req.set_page_token(page.next_page_token());
  }
  if (pages) *pages = n + 1;
  return all;
}

TEST(MatrixQuery, PagesConcatenateToTheWholeFilteredMatrix) {
  const auto full = makeMatrix(v1::UNDERLAY, names("node", 6), node3Broken);  // 30 cells
  const auto whole = keys(full);
  for (uint32_t size : {1u, 3u, 7u, 29u, 30u, 31u, 1000u}) {
    int pages = 0;
    EXPECT_EQ(readAll(full, request(v1::UNDERLAY, {}, {}, size), size, &pages), whole) << size;
    EXPECT_EQ(pages, static_cast<int>((30 + size - 1) / size)) << size;
  }
  const auto filtered = keys(query(full, request(v1::UNDERLAY, {"node3", "node5"}, {v1::Cell::FAIL})));
  EXPECT_EQ(filtered.size(), 10u);  // node3's row and column; node5's FAIL cells are among them
  EXPECT_EQ(readAll(full, request(v1::UNDERLAY, {"node3", "node5"}, {v1::Cell::FAIL}, 4), 4), filtered);
}

TEST(MatrixQuery, EveryPageCarriesTheTotalAndTheSameNodes) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 5), node3Broken);
  auto req = request(v1::OVERLAY, {}, {v1::Cell::FAIL}, 3);
  auto p1 = query(full, req);
  ASSERT_NE(p1.next_page_token(), "");
  req.set_page_token(p1.next_page_token());
  auto p2 = query(full, req);
  EXPECT_EQ(p1.total_cells(), 8u);
  EXPECT_EQ(p2.total_cells(), 8u);
  EXPECT_EQ(p1.layer(), v1::OVERLAY);
  EXPECT_EQ(p2.layer(), v1::OVERLAY);
  EXPECT_TRUE(std::equal(p1.nodes().begin(), p1.nodes().end(), p2.nodes().begin(), p2.nodes().end()));
}

TEST(MatrixQuery, DefaultPageSizeAppliesOnlyAboveIt) {
  MatrixPageLimits limits;
  limits.default_page_size = 12;
  const auto twelve = makeMatrix(v1::OVERLAY, names("node", 4));  // 12 cells: one page, as before
  EXPECT_EQ(query(twelve, request(v1::OVERLAY), limits).SerializeAsString(), twelve.SerializeAsString());

  const auto twenty = makeMatrix(v1::OVERLAY, names("node", 5));  // 20 cells: paged
  auto p1 = query(twenty, request(v1::OVERLAY), limits);
  EXPECT_EQ(p1.cells_size(), 12);
  EXPECT_NE(p1.next_page_token(), "");
  EXPECT_EQ(p1.total_cells(), 20u);
  EXPECT_EQ(p1.nodes_size(), 5);  // unfiltered: every member
  EXPECT_EQ(readAll(twenty, request(v1::OVERLAY), 12, nullptr, limits), keys(twenty));
}

TEST(MatrixQuery, TheRealDefaultIsTenThousandCells) {
  // 101 nodes: 10,100 cells, above the default; 100 nodes: 9,900 cells, one page.
  ASSERT_EQ(kDefaultMatrixPageSize, 10'000u);
  const auto small = makeMatrix(v1::OVERLAY, names("n", 100));
  EXPECT_EQ(query(small, request(v1::OVERLAY)).SerializeAsString(), small.SerializeAsString());
  const auto big = makeMatrix(v1::OVERLAY, names("n", 101));
  auto p1 = query(big, request(v1::OVERLAY));
  EXPECT_EQ(p1.cells_size(), 10'000);
  EXPECT_EQ(p1.total_cells(), 10'100u);
  EXPECT_LT(p1.ByteSizeLong(), kMaxMatrixPageBytes);
  auto req = request(v1::OVERLAY);
  req.set_page_token(p1.next_page_token());
  auto p2 = query(big, req);
  EXPECT_EQ(p2.cells_size(), 100);
  EXPECT_EQ(p2.next_page_token(), "");
}

TEST(MatrixQuery, AByteBudgetCutsPagesBeforePageSizeButNeverEmpty) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 4));  // 12 cells
  const size_t cell = full.cells(0).ByteSizeLong() + 2;         // + tag and length
  MatrixPageLimits limits;
  limits.max_page_bytes = 3 * cell;
  auto p1 = query(full, request(v1::OVERLAY, {}, {}, 10), limits);
  EXPECT_EQ(p1.cells_size(), 3);
  EXPECT_NE(p1.next_page_token(), "");
  int pages = 0;
  EXPECT_EQ(readAll(full, request(v1::OVERLAY, {}, {}, 10), 3, &pages, limits), keys(full));
  EXPECT_EQ(pages, 4);
  // An old request over the budget is paged too: the answer must fit a client's limit.
  EXPECT_NE(query(full, request(v1::OVERLAY), limits).next_page_token(), "");

  limits.max_page_bytes = 1;  // smaller than any cell: one cell per page, still progress
  EXPECT_EQ(readAll(full, request(v1::OVERLAY), 1, &pages, limits), keys(full));
  EXPECT_EQ(pages, 12);
}

TEST(MatrixQuery, PagingOverAGrowingMatrixNeitherRepeatsNorSkipsWhatWasThere) {
  const auto before = makeMatrix(v1::OVERLAY, {"node2", "node4", "node6"});  // 6 cells
  auto req = request(v1::OVERLAY, {}, {}, 3);
  auto p1 = query(before, req);
  ASSERT_THAT(keys(p1), ElementsAre("node2>node4", "node2>node6", "node4>node2"));

  // node1, node3, node5 join: cells appear before the cursor, after it, and between.
  const auto after = makeMatrix(v1::OVERLAY, {"node1", "node2", "node3", "node4", "node5", "node6"});
  req.set_page_token(p1.next_page_token());
  std::vector<std::string> rest = readAll(after, req, 3);
  // Exactly the cells of `after` past node4>node2, in order: the old ones not yet read
  // (node4>node6, node6>node2, node6>node4) and the new ones past the cursor.
  std::vector<std::string> want;
  for (const auto& k : keys(after)) {
    if (k > "node4>node2") want.push_back(k);
  }
  EXPECT_EQ(rest, want);
  for (std::string old : {"node4>node6", "node6>node2", "node6>node4"}) {
    EXPECT_NE(std::find(rest.begin(), rest.end(), old), rest.end()) << old;
  }
  for (const auto& k : keys(p1)) EXPECT_EQ(std::find(rest.begin(), rest.end(), k), rest.end()) << k << " repeated";
}

TEST(MatrixQuery, PagingContinuesWhenTheCursorsNodeIsGone) {
  const auto before = makeMatrix(v1::OVERLAY, names("node", 4));
  auto req = request(v1::OVERLAY, {}, {}, 4);
  auto p1 = query(before, req);
  ASSERT_EQ(keys(p1).back(), "node2>node1");
  const auto after = makeMatrix(v1::OVERLAY, {"node1", "node3", "node4"});  // node2 forgotten
  req.set_page_token(p1.next_page_token());
  EXPECT_THAT(readAll(after, req, 4), ElementsAre("node3>node1", "node3>node4", "node4>node1", "node4>node3"));
}

TEST(MatrixQuery, UnsortedCellsArePagedInSrcDstOrder) {
  auto full = makeMatrix(v1::OVERLAY, names("node", 3));
  const auto sorted = keys(full);
  std::reverse(full.mutable_cells()->begin(), full.mutable_cells()->end());
  EXPECT_EQ(readAll(full, request(v1::OVERLAY, {}, {}, 2), 2), sorted);
}

// ---- page tokens ----

TEST(MatrixQuery, PageTokenRoundTrips) {
  PageCursor c{v1::ISTIOD, 0xdeadbeef, std::string(253, 'a'), "istiod"};
  const std::string token = encodePageToken(c);
  EXPECT_EQ(token.find_first_not_of("0123456789abcdef"), std::string::npos) << token;
  auto back = decodePageToken(token);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->layer, v1::ISTIOD);
  EXPECT_EQ(back->filter_fingerprint, 0xdeadbeefu);
  EXPECT_EQ(back->src, c.src);
  EXPECT_EQ(back->dst, "istiod");
}

TEST(MatrixQuery, TheSameFiltersInAnyOrderShareTokens) {
  EXPECT_EQ(matrixFilterFingerprint(request(v1::OVERLAY, {"a", "b"}, {v1::Cell::FAIL, v1::Cell::OK})),
            matrixFilterFingerprint(request(v1::OVERLAY, {"b", "a", "a"}, {v1::Cell::OK, v1::Cell::FAIL})));
  EXPECT_NE(matrixFilterFingerprint(request(v1::OVERLAY, {"a"})), matrixFilterFingerprint(request(v1::OVERLAY)));
  EXPECT_NE(matrixFilterFingerprint(request(v1::OVERLAY, {"ab"})),
            matrixFilterFingerprint(request(v1::OVERLAY, {"a", "b"})));
  EXPECT_NE(matrixFilterFingerprint(request(v1::OVERLAY)), matrixFilterFingerprint(request(v1::UNDERLAY)));

  const auto full = makeMatrix(v1::OVERLAY, names("node", 4));
  auto p1 = query(full, request(v1::OVERLAY, {"node1", "node2"}, {}, 2));
  auto p2 = query(full, request(v1::OVERLAY, {"node2", "node1"}, {}, 5, p1.next_page_token()));  // size may change
  EXPECT_EQ(p2.cells_size(), 5);
}

grpc::Status withToken(const v1::GetMatrixResponse& full, const std::string& token,
                       v1::GetMatrixRequest req = request(v1::OVERLAY, {}, {}, 2)) {
  req.set_page_token(token);
  return queryError(full, req);
}

TEST(MatrixQuery, EveryEditOfATokenIsInvalidArgument) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 4));
  const std::string token = query(full, request(v1::OVERLAY, {}, {}, 2)).next_page_token();
  ASSERT_FALSE(token.empty());
  EXPECT_EQ(query(full, request(v1::OVERLAY, {}, {}, 2, token)).cells_size(), 2);  // the token as issued works
  for (size_t i = 0; i < token.size(); ++i) {                                      // every single-character change
    std::string t = token;
    t[i] = t[i] == '0' ? '1' : '0';
    grpc::Status st = withToken(full, t);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << i;
    EXPECT_THAT(st.error_message(), HasSubstr("page_token")) << i;
  }
  struct Case {
    std::string token, says;
  } cases[] = {
      {token.substr(0, token.size() - 2), "checksum"},
      {token.substr(0, token.size() - 1), "odd length"},
      {"zz" + token.substr(2), "not hex"},
      {"00", "too short"},
      {std::string(4000, 'a'), "too long"},
      {"not a token!", "not hex"},
      {token + "00", "checksum"},
  };
  for (const auto& c : cases) {
    grpc::Status st = withToken(full, c.token);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.token;
    EXPECT_THAT(st.error_message(), HasSubstr(c.says)) << c.token;
  }
}

TEST(MatrixQuery, AWellFormedTokenOfAnotherVersionOrQueryIsRefusedSayingWhy) {
  const auto full = makeMatrix(v1::OVERLAY, names("node", 4));
  const auto req = request(v1::OVERLAY, {"node1"}, {}, 2);
  const std::string token = query(full, req).next_page_token();
  ASSERT_FALSE(token.empty());

  grpc::Status layer = withToken(full, token, request(v1::UNDERLAY, {"node1"}, {}, 2));
  EXPECT_EQ(layer.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(layer.error_message(), HasSubstr("issued for layer OVERLAY, not UNDERLAY"));

  grpc::Status filters = withToken(full, token, request(v1::OVERLAY, {"node2"}, {}, 2));
  EXPECT_EQ(filters.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(filters.error_message(), HasSubstr("other filters"));
  grpc::Status states = withToken(full, token, request(v1::OVERLAY, {"node1"}, {v1::Cell::OK}, 2));
  EXPECT_THAT(states.error_message(), HasSubstr("other filters"));

  // A correctly checksummed token of an unknown version (hand-made: version 2, then junk).
  auto cursor = decodePageToken(token);
  ASSERT_TRUE(cursor.ok());
  std::string v2 = encodePageToken(*cursor);
  ASSERT_EQ(v2.substr(0, 2), "01");
  std::string bin;
  for (size_t i = 0; i + 8 < v2.size(); i += 2)
    bin.push_back(static_cast<char>(std::stoi(v2.substr(i, 2), nullptr, 16)));
  bin[0] = 2;
  // Checksummed the way the codec does: CRC-32 of the body, little-endian, after it.
  boost::crc_32_type crc;
  crc.process_bytes(bin.data(), bin.size());
  for (int i = 0; i < 4; ++i) bin.push_back(static_cast<char>((crc.checksum() >> (8 * i)) & 0xff));
  std::string hex;
  for (unsigned char c : bin) {
    static constexpr char kHex[] = "0123456789abcdef";
    hex.push_back(kHex[c >> 4]);
    hex.push_back(kHex[c & 0xf]);
  }
  grpc::Status version = withToken(full, hex, req);
  EXPECT_EQ(version.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(version.error_message(), HasSubstr("version 2"));
}

}  // namespace
}  // namespace meshprobe::aggregator
