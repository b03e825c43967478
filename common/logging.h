#pragma once
// spdlog setup shared by both daemons: --log-level debug|info|warn|error and
// --log-format text|json (JSON lines for log pipelines). Logs go to stderr.

#include <string>

#include "common/result.h"

namespace meshprobe {

Status setupLogging(const std::string& level, const std::string& format);

}  // namespace meshprobe
