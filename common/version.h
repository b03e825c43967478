#pragma once

namespace meshprobe {
inline constexpr const char* kVersion = "0.1.0";
}
