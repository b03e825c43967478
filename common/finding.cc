#include "common/finding.h"

namespace meshprobe {

std::string_view severityName(Severity s) {
  switch (s) {
    case Severity::kInfo: return "INFO";
    case Severity::kWarning: return "WARNING";
    case Severity::kCritical: return "CRITICAL";
  }
  return "SEVERITY_UNSPECIFIED";
}

std::string_view layerName(Layer l) {
  switch (l) {
    case Layer::kUnderlay: return "UNDERLAY";
    case Layer::kOverlay: return "OVERLAY";
    case Layer::kIstiod: return "ISTIOD";
    case Layer::kAmbient: return "AMBIENT";
    case Layer::kUnspecified: break;
  }
  return "LAYER_UNSPECIFIED";
}

}  // namespace meshprobe
