#pragma once
// A fuzz target is one function over arbitrary bytes, defined with MESHPROBE_FUZZ_TARGET.
// The same source builds two ways:
//   - with MESHPROBE_LIBFUZZER (clang, -fsanitize=fuzzer): a libFuzzer binary whose
//     LLVMFuzzerTestOneInput calls the target (tests/fuzz/CMakeLists.txt, MESHPROBE_FUZZ=ON);
//   - otherwise: the target registers itself by name, and unit_fuzz_replay (a normal unit
//     test, also under ASan/UBSan) runs every target over its seed corpus and every input
//     kept in tests/fuzz/regressions/<name>/ — each crash a fuzzer found stays a test.
// A target returns normally for any input; a broken invariant aborts through FUZZ_CHECK,
// which libFuzzer reports as a crash and the replay test as a death.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <span>
#include <string>
#include <string_view>

namespace meshprobe::fuzz {

using TargetFn = void (*)(std::span<const uint8_t>);

// Every target linked into this binary, by name.
std::map<std::string, TargetFn>& registry();

struct Registrar {
  Registrar(const char* name, TargetFn fn) { registry()[name] = fn; }
};

inline std::string_view asText(std::span<const uint8_t> data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

}  // namespace meshprobe::fuzz

#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

#ifdef MESHPROBE_LIBFUZZER
#define MESHPROBE_FUZZ_TARGET(name)                                                      \
  static void fuzz_##name(std::span<const uint8_t> data);                                \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {             \
    fuzz_##name(std::span<const uint8_t>(bytes, size));                                  \
    return 0;                                                                            \
  }                                                                                      \
  static void fuzz_##name(std::span<const uint8_t> data)
#else
#define MESHPROBE_FUZZ_TARGET(name)                                                      \
  static void fuzz_##name(std::span<const uint8_t> data);                                \
  static const ::meshprobe::fuzz::Registrar fuzz_registrar_##name(#name, &fuzz_##name);  \
  static void fuzz_##name(std::span<const uint8_t> data)
#endif
