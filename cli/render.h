#pragma once
// Text rendering of Query API answers for the terminal: coloured on a TTY, plain when piped.

#include <string>

#include "meshprobe/v1/query.pb.h"

namespace meshprobe::cli {

std::string renderNodes(const meshprobe::v1::ListNodesResponse& r, bool color);
// A heatmap: rows are sources, columns destinations (numbered, legend below).
std::string renderMatrix(const meshprobe::v1::GetMatrixResponse& r, bool color);
std::string renderNode(const meshprobe::v1::GetNodeResponse& r, bool color);
std::string renderFindings(const meshprobe::v1::DiagnoseResponse& r, bool color);

}  // namespace meshprobe::cli
