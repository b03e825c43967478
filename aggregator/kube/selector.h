#pragma once
// Kubernetes label selectors as `kubectl -l` and the API's labelSelector parameter take
// them, parsed and matched as apimachinery's labels.Parse does (k8s.io/apimachinery
// pkg/labels/selector.go):
//
//   selector    ::= "" | requirement { "," requirement }       (comma = AND)
//   requirement ::= [ "!" ] KEY                                   (exists / does not exist)
//                 | KEY ( "=" | "==" | "!=" ) [ VALUE ]            (an absent VALUE is "")
//                 | KEY ( "in" | "notin" ) "(" VALUE { "," VALUE } ")"
//                 | KEY ( ">" | "<" ) INTEGER                      (labels.Parse accepts these too)
//
// Whitespace (space, tab, CR, LF) separates tokens anywhere. KEY is a qualified name
// ([DNS-1123 subdomain "/"] name, name at most 63 characters of [A-Za-z0-9-_.] starting and
// ending alphanumeric); VALUE is empty or such a name. `in`/`notin` are values inside a
// value position (`a in (in)`). As upstream: `a!=b` and `a notin (b)` match objects
// without `a`; `a in ()` is `a in ("")`; an empty selector matches everything.
// Errors name the token that is wrong.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aggregator/kube/objects.h"
#include "common/result.h"

namespace meshprobe::aggregator::kube {

struct Requirement {
  enum class Op { kEquals, kDoubleEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist, kGreaterThan, kLessThan };
  std::string key;
  Op op = Op::kExists;
  std::vector<std::string> values;  // sorted, without duplicates

  bool matches(const Labels& labels) const;
  std::string toString() const;  // as labels.Requirement.String()
};

class Selector {
 public:
  Selector() = default;  // empty: matches everything

  static Result<Selector> parse(std::string_view text);
  // key=value for each entry (not validated: for the built-in defaults).
  static Selector fromSet(const Labels& set);

  bool matches(const Labels& labels) const;
  bool empty() const { return requirements_.empty(); }
  const std::vector<Requirement>& requirements() const { return requirements_; }
  // The canonical text (requirements sorted by key, as upstream): parse(toString()) is
  // the same selector.
  std::string toString() const;

 private:
  std::vector<Requirement> requirements_;  // sorted by key (stable)
};

// Validation as apimachinery's util/validation: "" when valid, else why not.
std::string qualifiedNameError(std::string_view key);
std::string labelValueError(std::string_view value);

}  // namespace meshprobe::aggregator::kube
