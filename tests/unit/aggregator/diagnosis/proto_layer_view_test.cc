// ProtoLayerView: a LayerView over a protobuf matrix and the nodes' probe lists (what
// diagnose(const ClusterSnapshot&) hands the rules).
#include "aggregator/diagnosis/proto_layer_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<NodeEvidence> nodes(int n) {
  std::vector<NodeEvidence> out;
  for (int i = 0; i < n; ++i) {
    NodeEvidence e;
    e.summary.set_name("n" + std::to_string(i));
    e.summary.set_up(true);
    e.has_report = true;
    out.push_back(e);
  }
  return out;
}

void cell(v1::GetMatrixResponse& m, int s, int d, v1::Cell::State st) {
  auto* c = m.add_cells();
  c->set_src("n" + std::to_string(s));
  c->set_dst("n" + std::to_string(d));
  c->set_state(st);
}

v1::ProbeResult probe(int d, v1::Layer layer) {
  v1::ProbeResult p;
  p.set_dst("n" + std::to_string(d));
  p.set_layer(layer);
  p.set_sent(10);
  p.set_received(10);
  return p;
}

TEST(ProtoLayerView, FailingCellsAreSortedWhateverTheMatrixOrder) {
  v1::GetMatrixResponse m;
  cell(m, 3, 1, v1::Cell::FAIL);
  cell(m, 0, 2, v1::Cell::FAIL);
  cell(m, 1, 0, v1::Cell::OK);
  cell(m, 0, 1, v1::Cell::FAIL);
  cell(m, 2, 3, v1::Cell::DEGRADED);
  ProtoLayerView v(m, v1::OVERLAY, nodes(4));
  EXPECT_EQ(v.size(), 4u);
  EXPECT_THAT(v.failing(), ElementsAre(CellPair{0, 1}, CellPair{0, 2}, CellPair{3, 1}));
  EXPECT_EQ(v.state(2, 3), v1::Cell::DEGRADED);
}

TEST(ProtoLayerView, MissingCellsSelfAndStrangersAreUnknown) {
  v1::GetMatrixResponse m;
  cell(m, 0, 1, v1::Cell::OK);
  cell(m, 1, 1, v1::Cell::FAIL);  // src == dst: not a cell
  auto* c = m.add_cells();        // a node not in the snapshot
  c->set_src("n0");
  c->set_dst("stranger");
  c->set_state(v1::Cell::FAIL);
  cell(m, 2, 0, v1::Cell::STATE_UNSPECIFIED);
  ProtoLayerView v(m, v1::UNDERLAY, nodes(3));
  EXPECT_EQ(v.state(0, 1), v1::Cell::OK);
  EXPECT_EQ(v.state(1, 0), v1::Cell::UNKNOWN);
  EXPECT_EQ(v.state(1, 1), v1::Cell::UNKNOWN);
  EXPECT_EQ(v.state(2, 0), v1::Cell::UNKNOWN);
  EXPECT_EQ(v.state(0, 7), v1::Cell::UNKNOWN);
  EXPECT_THAT(v.failing(), IsEmpty());
}

TEST(ProtoLayerView, MeasuredPeersCountEitherDirectionOnce) {
  v1::GetMatrixResponse m;
  cell(m, 0, 1, v1::Cell::OK);    // 0-1 one way
  cell(m, 2, 0, v1::Cell::FAIL);  // 0-2 the other way
  cell(m, 0, 3, v1::Cell::OK);    // 0-3 both ways: one peer
  cell(m, 3, 0, v1::Cell::DEGRADED);
  cell(m, 1, 2, v1::Cell::UNKNOWN);  // not measured
  ProtoLayerView v(m, v1::UNDERLAY, nodes(5));
  EXPECT_EQ(v.measuredPeers(0), 3u);
  EXPECT_EQ(v.measuredPeers(1), 1u);
  EXPECT_EQ(v.measuredPeers(2), 1u);
  EXPECT_EQ(v.measuredPeers(3), 1u);
  EXPECT_EQ(v.measuredPeers(4), 0u);
}

TEST(ProtoLayerView, DetailsAreTheProbesBehindCellsThatNeedExplaining) {
  auto ns = nodes(3);
  v1::GetMatrixResponse m;
  cell(m, 0, 1, v1::Cell::FAIL);
  cell(m, 0, 2, v1::Cell::OK);
  cell(m, 1, 0, v1::Cell::OK);
  cell(m, 1, 2, v1::Cell::OK);
  cell(m, 2, 0, v1::Cell::OK);
  auto failed = probe(1, v1::OVERLAY);
  failed.set_received(0);
  failed.set_consecutive_failures(4);
  failed.set_error("timeout after 800ms");
  ns[0].probes.push_back(failed);
  ns[0].probes.push_back(probe(2, v1::OVERLAY));   // healthy: no detail
  ns[0].probes.push_back(probe(1, v1::UNDERLAY));  // another layer
  auto df = probe(0, v1::OVERLAY);                 // OK cell, DF probes missing
  df.mutable_path_mtu()->set_size(1450);
  df.mutable_path_mtu()->set_sent(5);
  df.mutable_path_mtu()->set_consecutive_failures(5);
  ns[1].probes.push_back(df);
  auto first = probe(2, v1::OVERLAY);  // two results for one cell: the first counts
  first.set_error("first");
  auto second = probe(2, v1::OVERLAY);
  second.set_error("second");
  ns[1].probes.push_back(first);
  ns[1].probes.push_back(second);
  ProtoLayerView v(m, v1::OVERLAY, ns);

  ASSERT_NE(v.detail(0, 1), nullptr);
  EXPECT_EQ(v.detail(0, 1)->error(), "timeout after 800ms");
  EXPECT_EQ(v.detail(0, 2), nullptr);
  ASSERT_NE(v.detail(1, 0), nullptr);
  EXPECT_EQ(v.detail(1, 0)->path_mtu().consecutive_failures(), 5u);
  ASSERT_NE(v.detail(1, 2), nullptr);
  EXPECT_EQ(v.detail(1, 2)->error(), "first");
  EXPECT_EQ(v.detail(2, 0), nullptr);  // no probe at all
  EXPECT_THAT(v.detailed(), ElementsAre(CellPair{0, 1}, CellPair{1, 0}, CellPair{1, 2}));
}

TEST(ProtoLayerView, ADownSourcesRowIsUnknownWithoutDetails) {
  auto ns = nodes(3);
  ns[1].summary.set_up(false);
  auto p = probe(0, v1::UNDERLAY);
  p.set_error("stale");
  ns[1].probes.push_back(p);
  v1::GetMatrixResponse m;
  cell(m, 1, 0, v1::Cell::FAIL);
  cell(m, 0, 1, v1::Cell::FAIL);
  ProtoLayerView v(m, v1::UNDERLAY, ns);
  EXPECT_EQ(v.state(1, 0), v1::Cell::UNKNOWN);
  EXPECT_EQ(v.state(0, 1), v1::Cell::FAIL);  // the up source's cell towards it stays
  EXPECT_THAT(v.failing(), ElementsAre(CellPair{0, 1}));
  EXPECT_EQ(v.detail(1, 0), nullptr);
  EXPECT_EQ(v.measuredPeers(1), 1u);
}

}  // namespace
}  // namespace meshprobe::aggregator
