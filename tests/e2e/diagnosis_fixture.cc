// The diagnosis suite's fixture, the parts that need nothing of mesh.h (which exactly one
// translation unit per executable includes: e2e_diagnosis_test.cc, through
// diagnosis_fixture.h): the istio-cni stand-in and the result formatting and recording.

#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#define MESHPROBE_DIAGNOSIS_FIXTURE_CC
#include "tests/e2e/diagnosis_fixture.h"

namespace meshprobe::e2e::diagnosis {

// istio-cni's side of the ZDS socket for the disconnect scenario: a SOCK_SEQPACKET listener
// that accepts ztunnel and closes the connection when ztunnel hangs up (EOF), as istio-cni's
// ZDS server does. Writes its state to the ready file (atomically). The socket file stays on exit.
const char* const kIstioCni = R"(import os, select, socket, sys
path, ready = sys.argv[1], sys.argv[2]
def say(text):
    with open(ready + ".tmp", "w") as f:
        f.write(text + "\n")
    os.rename(ready + ".tmp", ready)
try:
    os.unlink(path)
except FileNotFoundError:
    pass
lsn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
lsn.bind(path)
lsn.listen(16)
say("listening")
accepted, conns = 0, []
while True:
    readable, _, _ = select.select([lsn] + conns, [], [])
    for s in readable:
        if s is lsn:
            c, _ = lsn.accept()
            conns.append(c)
            accepted += 1
            say("accepted %d open %d" % (accepted, len(conns)))
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:
            conns.remove(s)
            s.close()
            say("accepted %d open %d closed" % (accepted, len(conns)))
)";

std::string joinOr(const std::vector<std::string>& v, const std::string& sep, const std::string& none) {
  if (v.empty()) return none;
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

void recordResult(const nlohmann::json& line) {
  const char* path = std::getenv("MPE2E_DIAG_RESULTS");
  if (!path || !*path) return;
  std::ofstream out(path, std::ios::app);
  out << line.dump() << "\n";
  if (!out) std::cerr << "cannot append to MPE2E_DIAG_RESULTS=" << path << std::endl;
}

}  // namespace meshprobe::e2e::diagnosis
