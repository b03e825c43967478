#pragma once
// Durations on the command line are written like Go/Kubernetes ones: "500ms", "1s", "2m",
// "1m30s", "250us". A bare "0" is zero.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace meshprobe {

using Duration = std::chrono::nanoseconds;

std::optional<Duration> parseDuration(std::string_view text);
std::string formatDuration(Duration d);  // "1.5s", "250ms", "40us"

}  // namespace meshprobe
