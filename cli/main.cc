// meshprobe: the user CLI over the aggregator's Query API (see cli/app.h, `meshprobe --help`).
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "cli/app.h"

int main(int argc, char** argv) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  struct winsize ws {};
  const int columns = tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
  auto term =
      meshprobe::cli::terminalFrom(tty, std::getenv("NO_COLOR"), std::getenv("TERM"), columns, std::getenv("COLUMNS"));
  term.stderr_tty = isatty(STDERR_FILENO) == 1;
  return meshprobe::cli::runCli(argc, argv, std::cout, std::cerr, term, meshprobe::cli::grpcQueryClient);
}
