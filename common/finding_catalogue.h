#pragma once
// The finding catalogue: one row per finding code, the single place that says what a code
// is. The aggregator's rules read severities, layers, remedies and the relations between
// codes from it; a unit test (tests/unit/common/finding_catalogue_test.cc) checks the
// alert rules, the docs tables and the proto comment against it, so a new code fails the
// build's tests until it has a row here, a remedy, docs rows and an alert.
//
// Adding a code: a constant in common/finding.h, a row in finding_catalogue.cc, then make
// `ctest -R FindingCatalogue` pass (it names what is missing).

#include <span>
#include <string>
#include <string_view>

#include "common/finding.h"

namespace meshprobe {

// The rows of the runbook's troubleshooting table (docs/operations.md, section 9).
enum class RunbookRow { kNone, kZtunnelNotReady, kCrossNodeFailure, kPodCreationBlocked, kNoHbone };
// The runbook's words for the row ("cross-node failure"); "" for kNone.
std::string_view runbookRowName(RunbookRow row);

// A remedy for one situation of a code (`when`), e.g. the cluster-wide form.
struct RemedyVariant {
  std::string_view when;
  std::string_view text;
};

struct FindingSpec {
  std::string_view code;
  // As the aggregator raises it; the agent's vxlan_device check takes it from here too.
  Severity severity = Severity::kCritical;
  // kUnspecified: the finding takes the layer it was seen on (PAIR_UNREACHABLE) or has none.
  Layer layer = Layer::kUnspecified;
  std::string_view check;  // the agent check that raises it on the node; "" = the aggregator only
  RunbookRow runbook = RunbookRow::kNone;
  std::string_view alert;  // the alert in manifests/monitoring/meshprobe-rules.yaml that fires on it
  // Codes that, raised for the same node (or a pair with it), end at once while this one
  // stands: consequences of this fault or vaguer guesses about it.
  std::span<const std::string_view> supersedes;
  // Codes whose finding on the same node stays but is attributed to this one (its summary
  // names the cause, its remedy says to fix this first).
  std::span<const std::string_view> explains;
  // What to do. Templates: {node} is the blamed node, {peer} the other end of a pair.
  std::string_view remedy;
  std::span<const RemedyVariant> variants;  // remedies for other situations, by `when`
};

// Every code, in the order of the operations guide's table.
std::span<const FindingSpec> findingCatalogue();

// The row of `code`; nullptr for a code the catalogue does not know.
const FindingSpec* findFinding(std::string_view code);

// A finding of `code` with the catalogue's severity and layer filled in, so every raiser (a
// node check, the aggregator's rules) agrees on them; the caller adds summary, evidence,
// remedy and nodes. An unknown code keeps CRITICAL and an unspecified layer (the catalogue
// test fails on any code without a row).
Finding findingOf(std::string_view code);

// Whether a finding with `code` supersedes / explains one with `other` on the same node.
bool supersedes(std::string_view code, std::string_view other);
bool explains(std::string_view code, std::string_view other);

// The remedy of `code` for situation `when` ("" or an unknown situation: the default),
// with {node} and {peer} filled in. "" for an unknown code.
std::string remedyFor(std::string_view code, std::string_view when = {}, std::string_view node = {},
                      std::string_view peer = {});

}  // namespace meshprobe
