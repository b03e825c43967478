#pragma once
// Run work inside another network namespace without moving the caller.
//
// setns(CLONE_NEWNET) changes the namespace of the calling THREAD only, so the work runs
// in a dedicated thread that joins the namespace and then exits: the caller's thread (and
// every other agent thread) stays where it was. Anything that reads "the calling thread's
// netns" — sock_diag, rtnetlink, fork/exec of iptables-save — sees the target namespace
// when called from the work function.
//
// The caller waits at most `timeout`. On expiry the thread is left to finish on its own
// (detached); the work must therefore bound its own kernel reads and child processes,
// own what it captures by value, or refer only to objects that live until process exit.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "common/result.h"

namespace meshprobe::agent {

namespace netns_detail {
// Opens `path`, joins it with setns(CLONE_NEWNET) in a new thread, runs `work` there.
// Returns an error naming `path` when open/setns fails (work not run) or on timeout.
Status runInThread(const std::string& path, std::function<void()> work, std::chrono::milliseconds timeout);
}  // namespace netns_detail

// Runs `fn` (returning Result<T>) inside the network namespace at `path` (a bind-mounted
// netns file such as /var/run/netns/NAME, or /proc/PID/ns/net). Errors:
//   open:  ENOENT (no such netns), EACCES (not allowed to read that process's namespace)
//   setns: EPERM (needs CAP_SYS_ADMIN: run as root), EINVAL (not a network namespace)
//   timeout: "... did not finish within Nms"
// Every error message names `path`; Error::sys_errno carries the errno when there is one.
template <typename F>
auto runInNetns(const std::string& path, std::chrono::milliseconds timeout, F fn) -> std::invoke_result_t<F> {
  using R = std::invoke_result_t<F>;
  // Shared with the worker thread, which may outlive this call when it times out.
  auto out = std::make_shared<std::optional<R>>();
  Status st = netns_detail::runInThread(
      path, [out, fn = std::move(fn)]() mutable { out->emplace(fn()); }, timeout);
  if (!st.ok()) return st.error();
  return std::move(**out);
}

}  // namespace meshprobe::agent
