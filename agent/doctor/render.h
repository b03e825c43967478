#pragma once
// --once output: a readable table (status colour on a TTY) or the contract JSON
// {"node", "checks": [{"name","status","summary","details"}], "findings": [...]}.

#include <nlohmann/json.hpp>
#include <string>

#include "agent/doctor/doctor.h"

namespace meshprobe::agent {

nlohmann::json findingToJson(const Finding& f);
nlohmann::json reportToJson(const DoctorReport& report);
std::string renderText(const DoctorReport& report, bool color);

}  // namespace meshprobe::agent
