#pragma once
// GetMatrix's filters and paging over one layer's whole matrix, apart from how the matrix
// is built (ClusterState::matrix): a pure function from (the matrix, the request) to the
// page, plus the page-token codec. The contract is the one documented on GetMatrixRequest
// in proto/meshprobe/v1/query.proto:
//   - filters `nodes` (src or dst among them; ISTIOD: src) and `states`, applied together;
//   - pages in (src, dst) order of at most page_size cells (0: kDefaultMatrixPageSize) and at
//     most max_page_bytes of encoded cells, at least one cell per page;
//   - a page token names the last cell returned (layer, a fingerprint of the filters, src,
//     dst) and a checksum, hex-encoded: growing or shrinking matrices never repeat or shift
//     a page; a token that does not decode or belongs to another query is INVALID_ARGUMENT;
//   - an old request (layer only) whose answer fits one default page is answered exactly as
//     before paging existed: every member in `nodes`, every cell, no token, no total.

#include <grpcpp/support/status.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::aggregator {

// 10,000 cells of typical node names (tens of characters) encode to about 1 MB.
inline constexpr uint32_t kDefaultMatrixPageSize = 10'000;
// Half of grpcurl's (and gRPC's) default 4 MB receive limit, leaving room for `nodes`.
inline constexpr size_t kMaxMatrixPageBytes = 2 * 1024 * 1024;

struct MatrixPageLimits {
  uint32_t default_page_size = kDefaultMatrixPageSize;  // page_size 0
  size_t max_page_bytes = kMaxMatrixPageBytes;          // encoded cells per page
};

// Where the previous page ended, for the query it belongs to.
struct PageCursor {
  meshprobe::v1::Layer layer = meshprobe::v1::LAYER_UNSPECIFIED;
  uint32_t filter_fingerprint = 0;  // matrixFilterFingerprint() of the query
  std::string src;                  // the last cell returned
  std::string dst;
};

// CRC-32 over the layer and the sorted, de-duplicated node names and states, so a token
// is valid for the same filters in any order.
uint32_t matrixFilterFingerprint(const meshprobe::v1::GetMatrixRequest& req);

// Opaque, URL- and JSON-safe (lowercase hex of a versioned binary form with a CRC-32).
// The checksum catches corruption and truncation; it authenticates nothing, and needs
// not: a crafted token can only move where the next page starts.
std::string encodePageToken(const PageCursor& cursor);
// Error says what is wrong ("not hex", "checksum mismatch", "unknown version 7", ...).
Result<PageCursor> decodePageToken(std::string_view token);

// One page of `full` (the whole matrix of req.layer(): `nodes` = every member, `cells` =
// every cell) for `req`, written to *out. Errors (nothing written):
//   NOT_FOUND         a `nodes` name that is not a member (every unknown name is listed)
//   INVALID_ARGUMENT  an empty node name, STATE_UNSPECIFIED or an unknown state, a bad
//                     page token, or a token of another layer or other filters
grpc::Status queryMatrix(meshprobe::v1::GetMatrixResponse full, const meshprobe::v1::GetMatrixRequest& req,
                         meshprobe::v1::GetMatrixResponse* out, const MatrixPageLimits& limits = {});

struct StateSnapshot;
// The same answer from the cluster state's snapshot (req.layer() must have a matrix),
// building only the page's cells: an unfiltered page costs O(page), a `nodes` filter
// O(nodes × filtered nodes) state reads, a `states` filter O(nodes²) packed-state reads
// (no protobuf) to count total_cells.
grpc::Status queryMatrix(const StateSnapshot& snapshot, const meshprobe::v1::GetMatrixRequest& req,
                         meshprobe::v1::GetMatrixResponse* out, const MatrixPageLimits& limits = {});

}  // namespace meshprobe::aggregator
