#pragma once
// Expected failures are values (docs/architecture.md): a Result<T> holds either a value or an Error
// that names what failed. Invariants use assert; exceptions never cross callbacks.

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace meshprobe {

struct Error {
  std::string message;
  int sys_errno = 0;  // errno of the failing syscall, 0 when not a syscall error

  static Error fromErrno(std::string what, int err);
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void> equivalent.
struct Unit {};
using Status = Result<Unit>;
inline Status okStatus() { return Unit{}; }

}  // namespace meshprobe
