#include "common/thread_name.h"

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

namespace meshprobe {
namespace {

// What the kernel shows for a thread (`top -H`, `ps -L`, /proc/PID/task/TID/comm).
std::string commOf(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

TEST(ThreadName, TheKernelShowsTheNameCutToFifteenBytes) {
  std::string short_name, long_name;
  std::thread([&] {
    const auto tid = static_cast<pid_t>(::syscall(SYS_gettid));
    nameThisThread("mp-report");
    short_name = commOf(tid);
    nameThisThread("mp-a-name-longer-than-fifteen");
    long_name = commOf(tid);
  }).join();
  EXPECT_EQ(short_name, "mp-report");
  EXPECT_EQ(long_name, "mp-a-name-longe");
}

}  // namespace
}  // namespace meshprobe
