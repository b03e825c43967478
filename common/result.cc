#include "common/result.h"

#include <cstring>

namespace meshprobe {

Error Error::fromErrno(std::string what, int err) {
  return Error{what + ": " + std::strerror(err), err};
}

}  // namespace meshprobe
