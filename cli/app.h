#pragma once
// The meshprobe CLI without main(): flag parsing, help, dispatch to the Query API, error
// messages and exit codes. The Query API sits behind QueryClient so unit tests drive every
// path (usage errors, unreachable aggregator, unknown node) with a fake; main() plugs in the
// gRPC one (grpcQueryClient) and the real terminal.

#include <grpcpp/support/status.h>

#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "common/tls/tls.h"
#include "meshprobe/v1/query.pb.h"

namespace meshprobe::cli {

// Exit codes (documented in --help).
inline constexpr int kExitOk = 0;           // the query succeeded (diagnose: with or without findings)
inline constexpr int kExitQueryFailed = 1;  // aggregator unreachable, timed out, or refused the query
inline constexpr int kExitUsage = 2;        // bad command, flag or argument

// The Query methods; every call gets an absolute deadline. getMatrix sends the request
// as given (layer, filters, one page's size and token); runCli walks the pages.
class QueryClient {
 public:
  using Deadline = std::chrono::system_clock::time_point;
  virtual ~QueryClient() = default;
  virtual grpc::Status listNodes(Deadline d, meshprobe::v1::ListNodesResponse* out) = 0;
  virtual grpc::Status getMatrix(Deadline d, const meshprobe::v1::GetMatrixRequest& req,
                                 meshprobe::v1::GetMatrixResponse* out) = 0;
  virtual grpc::Status getNode(Deadline d, const std::string& name, meshprobe::v1::GetNodeResponse* out) = 0;
  virtual grpc::Status diagnose(Deadline d, const std::string& node, meshprobe::v1::DiagnoseResponse* out) = 0;
  // Not pure: a client without it answers UNIMPLEMENTED, as an aggregator without the method does.
  virtual grpc::Status listNamespaces(Deadline d, meshprobe::v1::ListNamespacesResponse* out);
};

// A gRPC channel to HOST:PORT, mutual TLS when `tls` has files, else plaintext (fails
// fast: no wait-for-ready).
std::unique_ptr<QueryClient> grpcQueryClient(const std::string& address, const tls::ClientConfig& tls);

using ClientFactory =
    std::function<std::unique_ptr<QueryClient>(const std::string& address, const tls::ClientConfig& tls)>;

// What main() knows about where the output goes.
struct Terminal {
  bool stdout_tty = false;
  bool no_color = false;  // NO_COLOR set to a non-empty value, or TERM=dumb
  int width = 100;        // columns (TIOCGWINSZ, else $COLUMNS, else 100)
  bool stderr_tty = false;  // a person reads errors: plaintext without --insecure is warned about
};

// The Terminal from what main() reads: isatty(1), $NO_COLOR, $TERM, TIOCGWINSZ columns (0 if
// unknown) and $COLUMNS (null-safe).
Terminal terminalFrom(bool stdout_tty, const char* no_color, const char* term, int tty_columns, const char* columns);

// Runs the CLI; writes results to `out`, errors (one line, "meshprobe: ...") to `err`.
int runCli(int argc, const char* const argv[], std::ostream& out, std::ostream& err, const Terminal& term,
           const ClientFactory& clients, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// One line for a failed RPC, e.g. "cannot reach the aggregator at 10.0.0.1:9470: connection
// refused (UNAVAILABLE)" or "the aggregator at 10.0.0.1:9470 did not answer within 5s
// (DEADLINE_EXCEEDED)". `timeout` is the --timeout text.
std::string describeRpcError(const grpc::Status& status, const std::string& address, const std::string& timeout);

// The help texts (tool and each command); "" for an unknown command.
std::string helpText(const std::string& command = "");

}  // namespace meshprobe::cli
