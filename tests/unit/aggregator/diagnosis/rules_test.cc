// The diagnosis rules on synthetic snapshots: blame over the matrix (one bad pair, a whole
// row, a whole column, row and column, two broken nodes, everything down), the join with a
// node's own findings (the "why"), istiod, staleness and path MTU.
#include "aggregator/diagnosis/rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/finding.h"

namespace meshprobe::aggregator {
namespace {

namespace v1 = meshprobe::v1;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using State = v1::Cell::State;

std::string n(int i) { return "n" + std::to_string(i); }

// A cluster of `size` nodes n1..nN, every cell OK unless changed.
class Snap {
 public:
  explicit Snap(int size) : size_(size) {
    for (int i = 1; i <= size; ++i) {
      NodeEvidence ev;
      ev.summary.set_name(n(i));
      ev.summary.set_up(true);
      ev.summary.set_vxlan_mtu(1450);
      ev.has_report = true;
      nodes_.push_back(ev);
      istiod_[i] = v1::Cell::OK;
      for (int j = 1; j <= size; ++j) {
        if (i == j) continue;
        state_[{v1::UNDERLAY, i, j}] = v1::Cell::OK;
        state_[{v1::OVERLAY, i, j}] = v1::Cell::OK;
      }
    }
  }

  Snap& fail(v1::Layer l, int s, int d, const std::string& error = "timeout after 800ms") {
    state_[{l, s, d}] = v1::Cell::FAIL;
    errors_[{l, s, d}] = error;
    return *this;
  }
  Snap& failRow(v1::Layer l, int x, const std::string& error = "timeout after 800ms") {
    for (int d = 1; d <= size_; ++d)
      if (d != x) fail(l, x, d, error);
    return *this;
  }
  Snap& failColumn(v1::Layer l, int x, const std::string& error = "timeout after 800ms") {
    for (int s = 1; s <= size_; ++s)
      if (s != x) fail(l, s, x, error);
    return *this;
  }
  Snap& failNode(v1::Layer l, int x, const std::string& error = "timeout after 800ms") {
    return failRow(l, x, error).failColumn(l, x, error);
  }
  Snap& pair(v1::Layer l, int a, int b) { return fail(l, a, b).fail(l, b, a); }
  // Down: not up, no report; its row is UNKNOWN.
  Snap& down(int x) {
    nodes_[x - 1].summary.set_up(false);
    nodes_[x - 1].has_report = false;
    for (int d = 1; d <= size_; ++d) {
      if (d == x) continue;
      state_[{v1::UNDERLAY, x, d}] = v1::Cell::UNKNOWN;
      state_[{v1::OVERLAY, x, d}] = v1::Cell::UNKNOWN;
    }
    istiod_[x] = v1::Cell::UNKNOWN;
    return *this;
  }
  Snap& local(int x, std::string_view code, v1::Layer layer, const std::string& evidence = "") {
    v1::Finding f;
    f.set_code(std::string(code));
    f.set_severity(v1::CRITICAL);
    f.set_layer(layer);
    f.set_summary(std::string(code) + " on " + n(x));
    if (!evidence.empty()) f.add_evidence(evidence);
    f.set_remedy("fix it");
    nodes_[x - 1].findings.push_back(f);
    return *this;
  }
  Snap& istiodFail(int x) {
    istiod_[x] = v1::Cell::FAIL;
    v1::CheckResult c;
    c.set_name("istiod");
    c.set_status(v1::CheckResult::FAIL);
    c.set_summary("connect to 10.244.1.10:15012: connection timed out");
    nodes_[x - 1].checks.push_back(c);
    return local(x, codes::kIstiodUnreachable, v1::ISTIOD, "stage connect");
  }
  Snap& dfFail(int s, int d, uint32_t size = 1450) {
    dfs_[{s, d}] = size;
    return *this;
  }
  Snap& mismatch(int x, uint32_t port) {
    VxlanMismatch m;
    m.node = n(x);
    m.vni = 1;
    m.port = port;
    m.majority_vni = 1;
    m.majority_port = 4789;
    m.port_differs = true;
    mismatches_.push_back(m);
    return *this;
  }

  ClusterSnapshot build() const {
    ClusterSnapshot snap;
    snap.nodes = nodes_;
    auto fill = [&](v1::GetMatrixResponse& m, v1::Layer l) {
      m.set_layer(l);
      for (int i = 1; i <= size_; ++i) m.add_nodes(n(i));
      for (int s = 1; s <= size_; ++s) {
        for (int d = 1; d <= size_; ++d) {
          if (s == d) continue;
          auto* c = m.add_cells();
          c->set_src(n(s));
          c->set_dst(n(d));
          c->set_layer(l);
          c->set_state(state_.at({l, s, d}));
        }
      }
    };
    fill(snap.underlay, v1::UNDERLAY);
    fill(snap.overlay, v1::OVERLAY);
    snap.istiod.set_layer(v1::ISTIOD);
    for (int i = 1; i <= size_; ++i) {
      auto* c = snap.istiod.add_cells();
      c->set_src(n(i));
      c->set_dst("istiod");
      c->set_state(istiod_.at(i));
    }
    // Probe results behind the cells (errors, DF probes).
    for (int s = 1; s <= size_; ++s) {
      auto& ev = snap.nodes[s - 1];
      if (!ev.has_report) continue;
      for (int d = 1; d <= size_; ++d) {
        if (s == d) continue;
        for (v1::Layer l : {v1::UNDERLAY, v1::OVERLAY}) {
          v1::ProbeResult p;
          p.set_dst(n(d));
          p.set_layer(l);
          p.set_sent(10);
          const bool failed = state_.at({l, s, d}) == v1::Cell::FAIL;
          p.set_received(failed ? 0 : 10);
          p.set_loss(failed ? 1.0 : 0.0);
          if (failed) {
            p.set_consecutive_failures(4);
            p.set_error(errors_.at({l, s, d}));
          }
          if (l == v1::OVERLAY) {
            auto* mtu = p.mutable_path_mtu();
            mtu->set_size(1450);
            mtu->set_sent(10);
            if (auto it = dfs_.find({s, d}); it != dfs_.end()) {
              mtu->set_size(it->second);
              mtu->set_consecutive_failures(5);
              mtu->set_error("timeout after 800ms");
            } else {
              mtu->set_received(10);
            }
          }
          ev.probes.push_back(p);
        }
      }
    }
    snap.vxlan_mismatches = mismatches_;
    return snap;
  }

 private:
  int size_;
  std::vector<NodeEvidence> nodes_;
  std::map<std::tuple<v1::Layer, int, int>, State> state_;
  std::map<std::tuple<v1::Layer, int, int>, std::string> errors_;
  std::map<int, State> istiod_;
  std::map<std::pair<int, int>, uint32_t> dfs_;
  std::vector<VxlanMismatch> mismatches_;
};

// "CODE[n1,n2]@LAYER" per candidate, sorted: compact, exact assertions.
std::vector<std::string> keys(const std::vector<Candidate>& cs) {
  std::vector<std::string> out;
  for (const auto& c : cs) {
    std::string k = c.finding.code() + "[";
    for (int i = 0; i < c.finding.nodes_size(); ++i) k += (i ? "," : "") + c.finding.nodes(i);
    out.push_back(k + "]@" + v1::Layer_Name(c.finding.layer()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

const Candidate* find(const std::vector<Candidate>& cs, const std::string& code) {
  for (const auto& c : cs)
    if (c.finding.code() == code) return &c;
  return nullptr;
}

std::string evidenceOf(const Candidate& c) {
  std::string all;
  for (const auto& e : c.finding.evidence()) all += e + "\n";
  return all;
}

TEST(DiagnosisRules, HealthyClusterHasNoFindings) { EXPECT_THAT(diagnose(Snap(4).build()), IsEmpty()); }

TEST(DiagnosisRules, OneBadPairBlamesThePairNotANode) {
  auto cs = diagnose(Snap(4).pair(v1::OVERLAY, 1, 3).build());
  EXPECT_THAT(keys(cs), ElementsAre("PAIR_UNREACHABLE[n1,n3]@OVERLAY"));
  EXPECT_EQ(cs[0].finding.severity(), v1::WARNING);
  EXPECT_EQ(cs[0].onset_after, RuleOptions{}.onset_pair);
  EXPECT_THAT(evidenceOf(cs[0]), AllOf(HasSubstr("OVERLAY n1 -> n3 FAIL"), HasSubstr("OVERLAY n3 -> n1 FAIL")));
}

TEST(DiagnosisRules, OneWayBadPairIsStillOnlyThePair) {
  EXPECT_THAT(keys(diagnose(Snap(4).fail(v1::OVERLAY, 2, 4).build())), ElementsAre("PAIR_UNREACHABLE[n2,n4]@OVERLAY"));
}

TEST(DiagnosisRules, WholeRowBlamesTheSource) {
  auto cs = diagnose(Snap(4).failRow(v1::OVERLAY, 2).build());
  EXPECT_THAT(keys(cs), ElementsAre("OVERLAY_PARTITION[n2]@OVERLAY"));
  EXPECT_EQ(cs[0].finding.severity(), v1::CRITICAL);
  EXPECT_EQ(cs[0].finding.id(), "OVERLAY_PARTITION/n2");
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("3 peers"));
}

TEST(DiagnosisRules, WholeColumnBlamesTheDestination) {
  EXPECT_THAT(keys(diagnose(Snap(4).failColumn(v1::OVERLAY, 3).build())), ElementsAre("OVERLAY_PARTITION[n3]@OVERLAY"));
}

TEST(DiagnosisRules, RowAndColumnBlameOneNodeOnly) {
  auto cs = diagnose(Snap(5).failNode(v1::OVERLAY, 4).build());
  EXPECT_THAT(keys(cs), ElementsAre("OVERLAY_PARTITION[n4]@OVERLAY"));
  EXPECT_EQ(cs[0].finding.evidence_size(), 8);  // 4 peers x 2 directions
}

TEST(DiagnosisRules, TwoBrokenNodesAreBothNamedAndTheirPeersAreNot) {
  EXPECT_THAT(keys(diagnose(Snap(4).failNode(v1::OVERLAY, 2).failNode(v1::OVERLAY, 3).build())),
              ElementsAre("OVERLAY_PARTITION[n2]@OVERLAY", "OVERLAY_PARTITION[n3]@OVERLAY"));
  EXPECT_THAT(keys(diagnose(Snap(6).failNode(v1::OVERLAY, 1).failNode(v1::OVERLAY, 5).build())),
              ElementsAre("OVERLAY_PARTITION[n1]@OVERLAY", "OVERLAY_PARTITION[n5]@OVERLAY"));
}

TEST(DiagnosisRules, EverythingDownIsOneClusterWideFinding) {
  Snap s(4);
  for (int i = 1; i <= 4; ++i) s.failRow(v1::OVERLAY, i);
  auto cs = diagnose(s.build());
  ASSERT_THAT(keys(cs), ElementsAre("OVERLAY_PARTITION[n1,n2,n3,n4]@OVERLAY"));
  EXPECT_EQ(cs[0].finding.id(), "OVERLAY_PARTITION/*");
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("cluster-wide"));
}

TEST(DiagnosisRules, TwoNodeClusterCannotBlameANode) {
  EXPECT_THAT(keys(diagnose(Snap(2).pair(v1::OVERLAY, 1, 2).build())), ElementsAre("PAIR_UNREACHABLE[n1,n2]@OVERLAY"));
}

TEST(DiagnosisRules, LocalCauseExplainsTheOverlayAndCarriesTheMatrix) {
  const std::string rule = "-A INPUT -p udp -m udp --dport 4789 -j DROP";
  auto cs = diagnose(
      Snap(4).failNode(v1::OVERLAY, 2).local(2, codes::kVxlanPortFiltered, v1::OVERLAY, "iptables: " + rule).build());
  ASSERT_THAT(keys(cs), ElementsAre("VXLAN_PORT_FILTERED[n2]@OVERLAY"));
  EXPECT_EQ(cs[0].onset_after, RuleOptions{}.onset_local);
  EXPECT_THAT(evidenceOf(cs[0]),
              AllOf(HasSubstr(rule), HasSubstr("OVERLAY n1 -> n2 FAIL"), HasSubstr("reported by the agent on n2")));
  EXPECT_THAT(cs[0].supersedes, ElementsAre("OVERLAY_PARTITION/n2"));
}

TEST(DiagnosisRules, StaleFdbOnOneNodeExplainsItsBadPair) {
  auto cs = diagnose(Snap(4).pair(v1::OVERLAY, 1, 4).local(1, codes::kOverlayFdbStale, v1::OVERLAY).build());
  ASSERT_THAT(keys(cs), ElementsAre("OVERLAY_FDB_STALE[n1]@OVERLAY"));
  EXPECT_THAT(evidenceOf(cs[0]), HasSubstr("OVERLAY n4 -> n1 FAIL"));
  EXPECT_THAT(cs[0].supersedes, Contains("PAIR_UNREACHABLE/n1,n4"));
}

TEST(DiagnosisRules, LocalFindingWithoutMatrixSymptomsIsStillReported) {
  EXPECT_THAT(keys(diagnose(Snap(3).local(3, codes::kZtunnelNotConnected, v1::AMBIENT).build())),
              ElementsAre("ZTUNNEL_NOT_CONNECTED[n3]@AMBIENT"));
}

TEST(DiagnosisRules, UnderlayDownExplainsOverlayAndStaleness) {
  auto cs = diagnose(Snap(4).failColumn(v1::UNDERLAY, 4).failColumn(v1::OVERLAY, 4).down(4).build());
  ASSERT_THAT(keys(cs), ElementsAre("UNDERLAY_UNREACHABLE[n4]@UNDERLAY"));
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("stopped reporting"));
}

TEST(DiagnosisRules, UnderlayOnlyFromPeersWhileNodeStillReports) {
  auto cs = diagnose(Snap(4).failNode(v1::UNDERLAY, 3).failNode(v1::OVERLAY, 3).build());
  EXPECT_THAT(keys(cs), ElementsAre("UNDERLAY_UNREACHABLE[n3]@UNDERLAY"));
}

TEST(DiagnosisRules, StoppedAgentWhoseHostRefusesIsAgentStaleOnly) {
  const std::string refused = "timeout after 800ms (TCP connect failed: connection refused)";
  auto cs = diagnose(
      Snap(4).failColumn(v1::UNDERLAY, 3, refused).failColumn(v1::OVERLAY, 3, refused).down(3).build());
  ASSERT_THAT(keys(cs), ElementsAre("AGENT_STALE[n3]@LAYER_UNSPECIFIED"));
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("stopped reporting"));
}

TEST(DiagnosisRules, AgentThatStopsAnsweringIsNamedBeforeItGoesStale) {
  const std::string refused = "timeout after 800ms (TCP connect failed: connection refused)";
  auto cs = diagnose(Snap(4).failColumn(v1::UNDERLAY, 3, refused).failColumn(v1::OVERLAY, 3, refused).build());
  ASSERT_THAT(keys(cs), ElementsAre("AGENT_STALE[n3]@LAYER_UNSPECIFIED"));
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("does not answer probes"));
}

TEST(DiagnosisRules, DownNodeWithUnknownCellsIsOnlyStale) {
  auto cs = diagnose(Snap(4).down(2).build());
  EXPECT_THAT(keys(cs), ElementsAre("AGENT_STALE[n2]@LAYER_UNSPECIFIED"));
}

TEST(DiagnosisRules, DownNodesLastFindingsAreNotEvidence) {
  Snap s(3);
  s.local(2, codes::kVxlanSocketMissing, v1::OVERLAY).down(2);
  EXPECT_THAT(keys(diagnose(s.build())), ElementsAre("AGENT_STALE[n2]@LAYER_UNSPECIFIED"));
}

TEST(DiagnosisRules, IstiodFailingFromEveryNodeBlamesIstiod) {
  Snap s(4);
  for (int i = 1; i <= 4; ++i) s.istiodFail(i);
  auto cs = diagnose(s.build());
  ASSERT_THAT(keys(cs), ElementsAre("ISTIOD_UNREACHABLE[]@ISTIOD"));
  EXPECT_EQ(cs[0].finding.id(), "ISTIOD_UNREACHABLE/istiod");
  EXPECT_THAT(cs[0].supersedes, Contains("ISTIOD_UNREACHABLE/n3"));
  EXPECT_THAT(cs[0].finding.summary(), HasSubstr("every node (4 of 4)"));
  EXPECT_EQ(cs[0].finding.evidence_size(), 4);
}

TEST(DiagnosisRules, IstiodFailingOnlyWhereTheOverlayIsBrokenBlamesThatNodesOverlay) {
  auto cs = diagnose(
      Snap(4).failNode(v1::OVERLAY, 2).local(2, codes::kVxlanDeviceMissing, v1::OVERLAY).istiodFail(2).build());
  ASSERT_THAT(keys(cs), ElementsAre("ISTIOD_UNREACHABLE[n2]@ISTIOD", "VXLAN_DEVICE_MISSING[n2]@OVERLAY"));
  const auto* istiod = find(cs, "ISTIOD_UNREACHABLE");
  EXPECT_THAT(istiod->finding.summary(), HasSubstr("overlay is broken"));
  EXPECT_THAT(istiod->finding.remedy(), HasSubstr("overlay first"));
}

TEST(DiagnosisRules, IstiodFailingFromOneHealthyNodeIsThatNodes) {
  auto cs = diagnose(Snap(4).istiodFail(3).build());
  ASSERT_THAT(keys(cs), ElementsAre("ISTIOD_UNREACHABLE[n3]@ISTIOD"));
  EXPECT_EQ(cs[0].onset_after, RuleOptions{}.onset_istiod_node);  // the others' checks get their turn
  EXPECT_THAT(evidenceOf(cs[0]), HasSubstr("stage connect"));
}

TEST(DiagnosisRules, MissingDeviceFoldsTheSocketAndRoutesItTookWithIt) {
  auto cs = diagnose(Snap(4)
                         .failNode(v1::OVERLAY, 2)
                         .local(2, codes::kVxlanDeviceMissing, v1::OVERLAY)
                         .local(2, codes::kVxlanSocketMissing, v1::OVERLAY)
                         .local(2, codes::kOverlayFdbStale, v1::OVERLAY)
                         .build());
  ASSERT_THAT(keys(cs), ElementsAre("VXLAN_DEVICE_MISSING[n2]@OVERLAY"));
  EXPECT_THAT(evidenceOf(cs[0]), AllOf(HasSubstr("follows from it: VXLAN_SOCKET_MISSING"),
                                       HasSubstr("follows from it: OVERLAY_FDB_STALE")));
  EXPECT_THAT(cs[0].supersedes, Contains("VXLAN_SOCKET_MISSING/n2"));
}

TEST(DiagnosisRules, ConfigMismatchMergesWithTheNodesOwnFinding) {
  auto cs = diagnose(Snap(4)
                         .failNode(v1::OVERLAY, 2)
                         .mismatch(2, 8472)
                         .local(2, codes::kVxlanConfigMismatch, v1::OVERLAY, "device port 8472, expected 4789")
                         .build());
  ASSERT_THAT(keys(cs), ElementsAre("VXLAN_CONFIG_MISMATCH[n2]@OVERLAY"));
  EXPECT_THAT(evidenceOf(cs[0]), AllOf(HasSubstr("port 8472"), HasSubstr("expected 4789"), HasSubstr("n1 -> n2")));
}

TEST(DiagnosisRules, DfProbesFailingToAndFromOneNodeIsItsMtu) {
  Snap s(4);
  for (int i = 1; i <= 3; ++i) s.dfFail(i, 4).dfFail(4, i);
  auto cs = diagnose(s.build());
  ASSERT_THAT(keys(cs), ElementsAre("MTU_MISMATCH[n4]@OVERLAY"));
  EXPECT_THAT(cs[0].finding.summary(), AllOf(HasSubstr("n4"), HasSubstr("1450")));
}

TEST(DiagnosisRules, DfFailuresDoNotCountWhenSmallProbesFailToo) {
  Snap s(4);
  s.failNode(v1::OVERLAY, 4);
  for (int i = 1; i <= 3; ++i) s.dfFail(i, 4).dfFail(4, i);
  EXPECT_THAT(keys(diagnose(s.build())), ElementsAre("OVERLAY_PARTITION[n4]@OVERLAY"));
}

TEST(DiagnosisRules, TwoFaultsOnTwoNodesAtOnce) {
  auto cs = diagnose(Snap(4)
                         .failNode(v1::OVERLAY, 2)
                         .local(2, codes::kVxlanPortFiltered, v1::OVERLAY)
                         .failNode(v1::OVERLAY, 3)
                         .local(3, codes::kVxlanDeviceMissing, v1::OVERLAY)
                         .build());
  EXPECT_THAT(keys(cs), ElementsAre("VXLAN_DEVICE_MISSING[n3]@OVERLAY", "VXLAN_PORT_FILTERED[n2]@OVERLAY"));
}

TEST(DiagnosisRules, EvidenceIsBounded) {
  Snap s(20);
  s.failNode(v1::OVERLAY, 7);
  auto cs = diagnose(s.build());
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].finding.evidence_size(), 13);
  EXPECT_THAT(cs[0].finding.evidence(12), HasSubstr("and 26 more"));
}

}  // namespace
}  // namespace meshprobe::aggregator
