#pragma once
// Names the calling thread as the kernel shows it (/proc/PID/task/TID/comm, `top -H`,
// `ps -L`, perf): at most 15 bytes, longer names are cut. What each of a daemon's threads
// costs can then be read per thread, and a stack in a debugger says whose it is.

#include <pthread.h>

#include <string>

namespace meshprobe {

inline void nameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace meshprobe
