// ThreadSanitizer build only (-DMESHPROBE_TSAN=ON): tells TSan about the locks that
// Debian's uninstrumented gRPC hands work between its threads with.
//
// gRPC 1.51 synchronises its thread pools, executors and completion queues with
// absl::Mutex and absl::CondVar (grpc_core::Mutex, gpr_mu and gpr_cv are thin wrappers).
// Debian's abseil is not built with -fsanitize=thread, so TSan sees none of these
// hand-offs: memory that one gRPC thread fills (a message we passed to StartRead, a call
// object, a reactor) and another reads after taking the lock looks racy, hundreds of
// reports per in-process gRPC test. libgrpc, libgpr and libgrpc++ call these absl
// functions through the PLT, so definitions in the test executable interpose them (the
// executable comes first in symbol lookup, and the linker exports a symbol that a linked
// shared library uses). Each one forwards to abseil's (dlsym RTLD_NEXT) and adds the
// acquire/release TSan would have recorded had abseil been instrumented: lock = acquire
// on the mutex address, unlock = release, a condition wait releases and re-acquires the
// mutex, a signal releases on the condition variable and the woken waiter acquires it.
// Nothing here hides a report; it only adds the ordering the real locks provide.
//
// The symbol names are abseil's as Debian 12 builds it (inline namespace `debian3`);
// a missing symbol aborts at the first call with the name, rather than racing silently.

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);

namespace {

template <typename F>
F realFunction(const char* name) {
  static_assert(sizeof(F) == sizeof(void*));
  void* symbol = dlsym(RTLD_NEXT, name);
  if (symbol == nullptr) {
    std::fprintf(stderr, "absl_sync_annotations: %s not found: %s\n", name, dlerror());
    std::abort();
  }
  F function;
  std::memcpy(&function, &symbol, sizeof function);
  return function;
}

using VoidFn = void (*)(void*);
using BoolFn = bool (*)(void*);
using WaitFn = void (*)(void*, void*);
// absl::Duration and absl::Time are {int64_t, uint32_t}: passed in two integer registers.
using TimedWaitFn = bool (*)(void*, void*, int64_t, uint32_t);

}  // namespace

#define MESHPROBE_ACQUIRING(symbol)                                \
  extern "C" void symbol(void* mu) {                               \
    static const VoidFn real = realFunction<VoidFn>(#symbol);      \
    real(mu);                                                      \
    __tsan_acquire(mu);                                            \
  }
#define MESHPROBE_RELEASING(symbol)                                \
  extern "C" void symbol(void* object) {                           \
    static const VoidFn real = realFunction<VoidFn>(#symbol);      \
    __tsan_release(object);                                        \
    real(object);                                                  \
  }
#define MESHPROBE_TRY_ACQUIRING(symbol)                            \
  extern "C" bool symbol(void* mu) {                               \
    static const BoolFn real = realFunction<BoolFn>(#symbol);      \
    const bool locked = real(mu);                                  \
    if (locked) __tsan_acquire(mu);                                \
    return locked;                                                 \
  }
#define MESHPROBE_TIMED_WAIT(symbol)                                           \
  extern "C" bool symbol(void* cv, void* mu, int64_t hi, uint32_t lo) {        \
    static const TimedWaitFn real = realFunction<TimedWaitFn>(#symbol);        \
    __tsan_release(mu);                                                        \
    const bool timed_out = real(cv, mu, hi, lo);                               \
    __tsan_acquire(mu);                                                        \
    __tsan_acquire(cv);                                                        \
    return timed_out;                                                          \
  }

// absl::Mutex::Lock(), Unlock(), ReaderLock(), ReaderUnlock(), TryLock(), ReaderTryLock()
MESHPROBE_ACQUIRING(_ZN4absl7debian35Mutex4LockEv)
MESHPROBE_RELEASING(_ZN4absl7debian35Mutex6UnlockEv)
MESHPROBE_ACQUIRING(_ZN4absl7debian35Mutex10ReaderLockEv)
MESHPROBE_RELEASING(_ZN4absl7debian35Mutex12ReaderUnlockEv)
MESHPROBE_TRY_ACQUIRING(_ZN4absl7debian35Mutex7TryLockEv)
MESHPROBE_TRY_ACQUIRING(_ZN4absl7debian35Mutex13ReaderTryLockEv)
// absl::CondVar::Signal(), SignalAll()
MESHPROBE_RELEASING(_ZN4absl7debian37CondVar6SignalEv)
MESHPROBE_RELEASING(_ZN4absl7debian37CondVar9SignalAllEv)
// absl::CondVar::WaitWithTimeout(Mutex*, Duration), WaitWithDeadline(Mutex*, Time)
MESHPROBE_TIMED_WAIT(_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE)
MESHPROBE_TIMED_WAIT(_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE)

// absl::CondVar::Wait(Mutex*)
extern "C" void _ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(void* cv, void* mu) {
  static const WaitFn real = realFunction<WaitFn>("_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(cv, mu);
  __tsan_acquire(mu);
  __tsan_acquire(cv);
}
