// The rules over DiagnosisInput (layer views, as the cluster state publishes them): the
// blame denominator with sparse coverage and with blamed peers, a large cluster with one
// broken node and one broken pair, cluster-wide failure over a few measured nodes,
// determinism of the output, and the same answer from the ClusterSnapshot path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "aggregator/diagnosis/proto_layer_view.h"
#include "aggregator/diagnosis/rules.h"
#include "common/finding.h"
#include "tests/unit/aggregator/diagnosis/dense_view.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using testing::DenseView;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Zero-padded, so name order is index order.
std::string name(uint32_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "n%04u", i);
  return buf;
}

std::vector<NodeEvidence> nodesOf(uint32_t n) {
  std::vector<NodeEvidence> out(n);
  for (uint32_t i = 0; i < n; ++i) {
    out[i].summary.set_name(name(i));
    out[i].summary.set_up(true);
    out[i].summary.set_vxlan_mtu(1450);
    out[i].has_report = true;
  }
  return out;
}

DiagnosisInput inputOf(uint32_t n, DenseView& underlay, DenseView& overlay) {
  DiagnosisInput in;
  in.nodes = nodesOf(n);
  in.underlay = underlay.seal();
  in.overlay = overlay.seal();
  in.istiod.assign(n, v1::Cell::OK);
  return in;
}

std::vector<std::string> keys(const std::vector<Candidate>& cs) {
  std::vector<std::string> out;
  for (const auto& c : cs) {
    std::string k = c.finding.code() + "[";
    for (int i = 0; i < c.finding.nodes_size(); ++i) k += (i ? "," : "") + c.finding.nodes(i);
    out.push_back(k + "]");
  }
  std::sort(out.begin(), out.end());
  return out;
}

void bothWays(DenseView& ol, DenseView::State st, uint32_t a, uint32_t b) {
  ol.set(a, b, st);
  ol.set(b, a, st);
}

TEST(DiagnosisInputRules, ANodeMeasuredWithFewPeersIsJudgedOnThose) {
  // 100 nodes; n0050 has overlay results with three peers only and fails with two of them:
  // 2 of 3 measured peers is over blame_ratio, so the node is blamed, not two pairs.
  DenseView ul(v1::UNDERLAY, 100), ol(v1::OVERLAY, 100, v1::Cell::UNKNOWN);
  for (uint32_t i = 0; i + 1 < 100; ++i) {
    if (i != 50 && i + 1 != 50) bothWays(ol, v1::Cell::OK, i, i + 1);
  }
  bothWays(ol, v1::Cell::FAIL, 50, 1);
  bothWays(ol, v1::Cell::FAIL, 50, 2);
  bothWays(ol, v1::Cell::OK, 50, 3);
  const DiagnosisInput in = inputOf(100, ul, ol);
  EXPECT_EQ(in.overlay->measuredPeers(50), 3u);
  EXPECT_THAT(keys(diagnose(in)), ElementsAre("OVERLAY_PARTITION[n0050]"));

  // The same failures with every pair measured: 2 of 99 is two bad pairs, not the node.
  DenseView ul2(v1::UNDERLAY, 100), ol2(v1::OVERLAY, 100);
  ol2.fail(50, 1).fail(1, 50).fail(50, 2).fail(2, 50);
  EXPECT_THAT(keys(diagnose(inputOf(100, ul2, ol2))),
              ElementsAre("PAIR_UNREACHABLE[n0001,n0050]", "PAIR_UNREACHABLE[n0002,n0050]"));
}

TEST(DiagnosisInputRules, ABlamedPeerLeavesTheDenominator) {
  // n0000 fails with everyone it measures but n0001 (their pair is healthy). n0001 is
  // measured with 7 peers (n0000, n0002..n0007) and fails with 3: 3 < 0.5 * 7. Once
  // n0000 is blamed, n0001's measured peers not blamed are 6, and 3 >= 0.5 * 6: blamed.
  DenseView ul(v1::UNDERLAY, 10), ol(v1::OVERLAY, 10, v1::Cell::UNKNOWN);
  bothWays(ol, v1::Cell::OK, 0, 1);
  for (uint32_t y = 2; y < 10; ++y) bothWays(ol, v1::Cell::FAIL, 0, y);
  for (uint32_t y = 2; y <= 4; ++y) bothWays(ol, v1::Cell::FAIL, 1, y);
  for (uint32_t y = 5; y <= 7; ++y) bothWays(ol, v1::Cell::OK, 1, y);
  const DiagnosisInput in = inputOf(10, ul, ol);
  ASSERT_EQ(in.overlay->measuredPeers(1), 7u);
  const auto cs = diagnose(in);
  ASSERT_THAT(keys(cs), ElementsAre("OVERLAY_PARTITION[n0000]", "OVERLAY_PARTITION[n0001]"));
  // Picked most failing first, and the ClusterSnapshot path agrees.
  EXPECT_EQ(cs[0].finding.id(), "OVERLAY_PARTITION/n0000");
  EXPECT_THAT(keys(diagnose(snapshotOfInput(in))), ElementsAre("OVERLAY_PARTITION[n0000]", "OVERLAY_PARTITION[n0001]"));
}

TEST(DiagnosisInputRules, LargeClusterWithOneBrokenNodeAndOneBrokenPair) {
  constexpr uint32_t kN = 2000;
  DenseView ul(v1::UNDERLAY, kN), ol(v1::OVERLAY, kN);
  ol.failNode(700).fail(10, 20).fail(20, 10);
  const auto cs = diagnose(inputOf(kN, ul, ol));
  ASSERT_THAT(keys(cs), ElementsAre("OVERLAY_PARTITION[n0700]", "PAIR_UNREACHABLE[n0010,n0020]"));
  const Candidate& node = cs[0].finding.code() == "OVERLAY_PARTITION" ? cs[0] : cs[1];
  EXPECT_THAT(node.finding.summary(), HasSubstr("fail with 1999 peers"));
  ASSERT_EQ(node.finding.evidence_size(), 13);
  EXPECT_EQ(node.finding.evidence(0), "OVERLAY n0700 -> n0000 FAIL: loss 100%, 4 missed in a row, timeout after 800ms");
  EXPECT_EQ(node.finding.evidence(1), "OVERLAY n0000 -> n0700 FAIL: loss 100%, 4 missed in a row, timeout after 800ms");
  EXPECT_EQ(node.finding.evidence(12), "... and " + std::to_string(2 * (kN - 1) - 12) + " more");
}

// A node's measured peers cost O(nodes) in the cluster state's view: a pass with one broken
// node asks them of the candidate and of the nodes checked for "every pair fails" (the
// check stops at the first node with a working pair), not of all 2,000 nodes.
TEST(DiagnosisInputRules, ABrokenNodeAsksForTheMeasuredPeersOfAFewNodesOnly) {
  constexpr uint32_t kN = 2000;
  DenseView ul(v1::UNDERLAY, kN), ol(v1::OVERLAY, kN);
  ol.failNode(0);  // the first node in order fails with every peer: the check reads one more
  const DiagnosisInput in = inputOf(kN, ul, ol);
  ASSERT_THAT(keys(diagnose(in)), ElementsAre("OVERLAY_PARTITION[n0000]"));
  const auto* overlay = dynamic_cast<const DenseView*>(in.overlay.get());
  ASSERT_NE(overlay, nullptr);
  EXPECT_LE(overlay->measuredCalls(), 3u);
}

TEST(DiagnosisInputRules, EveryMeasuredPairFailingIsClusterWideEvenWhenFewAreMeasured) {
  DenseView ul(v1::UNDERLAY, 30), ol(v1::OVERLAY, 30, v1::Cell::UNKNOWN);
  for (uint32_t a = 3; a <= 5; ++a)
    for (uint32_t b = a + 1; b <= 5; ++b) bothWays(ol, v1::Cell::FAIL, a, b);
  const auto cs = diagnose(inputOf(30, ul, ol));
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].finding.id(), "OVERLAY_PARTITION/*");
  EXPECT_EQ(cs[0].finding.nodes_size(), 30);
  // Each failing cell once: 3 pairs, both ways.
  EXPECT_THAT(cs[0].finding.evidence(),
              ElementsAre(HasSubstr("n0003 -> n0004"), HasSubstr("n0004 -> n0003"), HasSubstr("n0003 -> n0005"),
                          HasSubstr("n0005 -> n0003"), HasSubstr("n0004 -> n0005"), HasSubstr("n0005 -> n0004")));
}

TEST(DiagnosisInputRules, OutputIsDeterministicAndTiesGoToNodeOrder) {
  DenseView ul(v1::UNDERLAY, 50), ol(v1::OVERLAY, 50);
  ol.failNode(30).failNode(7).fail(40, 41);  // n0007 and n0030 fail with 49 peers each
  const DiagnosisInput in = inputOf(50, ul, ol);
  const auto a = diagnose(in), b = diagnose(in);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].finding.id(), "OVERLAY_PARTITION/n0007");
  EXPECT_EQ(a[1].finding.id(), "OVERLAY_PARTITION/n0030");
  EXPECT_EQ(a[2].finding.id(), "PAIR_UNREACHABLE/n0040,n0041");
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].finding.SerializeAsString(), b[i].finding.SerializeAsString());
  // The protobuf path gives the same findings, byte for byte.
  const auto c = diagnose(snapshotOfInput(in));
  ASSERT_EQ(c.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].finding.SerializeAsString(), c[i].finding.SerializeAsString());
}

TEST(DiagnosisInputRules, DfFailuresAreReadFromTheViewsDetails) {
  DenseView ul(v1::UNDERLAY, 6), ol(v1::OVERLAY, 6);
  for (uint32_t y = 0; y < 6; ++y) {
    if (y == 3) continue;
    for (auto [s, d] : {std::pair{3u, y}, std::pair{y, 3u}}) {
      v1::ProbeResult p;
      p.set_sent(10);
      p.set_received(10);
      p.mutable_path_mtu()->set_size(1450);
      p.mutable_path_mtu()->set_sent(6);
      p.mutable_path_mtu()->set_consecutive_failures(6);
      ol.set(s, d, v1::Cell::OK, p);
    }
  }
  const auto cs = diagnose(inputOf(6, ul, ol));
  ASSERT_THAT(keys(cs), ElementsAre("MTU_MISMATCH[n0003]"));
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("1450"));
}

TEST(DiagnosisInputRules, MissingLayerViewsShowNothing) {
  DiagnosisInput in;
  in.nodes = nodesOf(3);
  in.istiod = {v1::Cell::FAIL, v1::Cell::FAIL, v1::Cell::FAIL};
  const auto cs = diagnose(in);
  ASSERT_THAT(keys(cs), ElementsAre("ISTIOD_UNREACHABLE[]"));
}

}  // namespace
}  // namespace meshprobe::aggregator
