#pragma once
// Text rendering of Query API answers for the terminal. Every function here is pure: a proto
// answer and the render options in, a string out (no clock, no environment, no I/O), so the
// layouts are unit-tested byte for byte. main() decides the options from the terminal:
// colours only on a TTY without NO_COLOR, Unicode glyphs only on a TTY, plain ASCII when piped.

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>
#include <vector>

#include "meshprobe/v1/query.pb.h"

namespace meshprobe::cli {

struct RenderOptions {
  bool color = false;               // ANSI colours (TTY and NO_COLOR unset)
  bool unicode = false;             // Unicode glyphs (●◐✖) instead of ASCII (o~X): TTY output
  int width = 100;                  // terminal columns; the heatmap drops the gap between cells when it would not fit
  google::protobuf::Timestamp now;  // "now" for ages ("3s ago"); unset: ages are not shown
  // matrix: the --node/--state filter in words ("from or to node3; FAIL"), "" for none. When
  // set, a cell absent from the answer was filtered out: drawn blank and not counted.
  std::string matrix_filter;
};

// `meshprobe nodes`: NODE, NODE IP, OVERLAY IP, VNI/PORT, MTU, UP, LAST REPORT, POD CIDR; then
// the Kubernetes Nodes without an agent (missing_agents) as rows marked MISSING, each with
// its reason under the count line.
std::string renderNodes(const meshprobe::v1::ListNodesResponse& r, const RenderOptions& o);

// `meshprobe namespaces`: NAMESPACE, DATAPLANE MODE, EXPECT AMBIENT, CAPTURED (captured/running
// pods, and how many no agent reported), FINDINGS; a count line and what CAPTURED means.
std::string renderNamespaces(const meshprobe::v1::ListNamespacesResponse& r, const RenderOptions& o);

// `meshprobe matrix --layer L`: a heatmap, rows = source, columns = destination, one glyph per
// cell, numbered columns, a legend, a count line and the broken pairs. ISTIOD: one column.
std::string renderMatrix(const meshprobe::v1::GetMatrixResponse& r, const RenderOptions& o);
// `meshprobe matrix`: every layer given, one after another.
std::string renderMatrices(const std::vector<meshprobe::v1::GetMatrixResponse>& layers, const RenderOptions& o);

// `meshprobe node NAME`: summary, checks (status + summary), probes, findings.
std::string renderNode(const meshprobe::v1::GetNodeResponse& r, const RenderOptions& o);

// `meshprobe diagnose [--node N]`: findings most severe first; "no active findings" when empty.
// `node` is the filter given (only used in the empty message).
std::string renderFindings(const meshprobe::v1::DiagnoseResponse& r, const RenderOptions& o,
                           const std::string& node = "");

// The findings `node NAME` shows: the doctor's (Diagnose with the node filter) first, then the
// node's own reported ones (GetNode) whose code the doctor has not already diagnosed.
google::protobuf::RepeatedPtrField<meshprobe::v1::Finding> mergeFindings(
    const google::protobuf::RepeatedPtrField<meshprobe::v1::Finding>& diagnosed,
    const google::protobuf::RepeatedPtrField<meshprobe::v1::Finding>& reported);

// ---- building blocks, exposed for tests ----

// "0s", "42s", "3m05s", "2h07m", "3d04h"; negative (clock skew) is "0s".
std::string formatAge(const google::protobuf::Timestamp& then, const google::protobuf::Timestamp& now);
// "2026-11-26 22:03:01Z"
std::string formatTime(const google::protobuf::Timestamp& t);
// "0.42ms", "12.3ms", "1.20s"
std::string formatRtt(const google::protobuf::Duration& d);
// Display width of a UTF-8 string with ANSI escapes (escapes count 0, every code point 1).
size_t displayWidth(const std::string& s);
// Proto3 JSON as the CLI prints it: camelCase names, primitive fields always printed, indented.
std::string toJson(const google::protobuf::Message& m);
// The JSON of `meshprobe --output json matrix --layer L`: the GetMatrixResponse of every page
// in one, without the paging fields (nextPageToken, totalCells), as before paging existed.
std::string matrixToJson(const meshprobe::v1::GetMatrixResponse& r);
// The JSON of `meshprobe --output json matrix` without --layer: {"matrices": [<GetMatrixResponse>...]}.
std::string matricesToJson(const std::vector<meshprobe::v1::GetMatrixResponse>& layers);

}  // namespace meshprobe::cli
