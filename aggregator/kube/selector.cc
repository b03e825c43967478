#include "aggregator/kube/selector.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace meshprobe::aggregator::kube {

namespace {

// ---- validation (apimachinery pkg/util/validation) ----

bool isAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
bool isQualifiedNamePart(std::string_view s) {
  if (s.empty() || !isAlnum(s.front()) || !isAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return isAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

// DNS-1123 subdomain: [a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*, at most 253.
bool isDns1123Subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    const std::string_view label =
        s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    const auto lowerAlnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (label.empty() || !lowerAlnum(label.front()) || !lowerAlnum(label.back())) return false;
    if (!std::all_of(label.begin(), label.end(), [&](char c) { return lowerAlnum(c) || c == '-'; })) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

constexpr std::string_view kNameRule =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character";

// ---- lexer (labels.Lexer) ----

enum class Tok {
  kError,
  kEnd,
  kClosePar,
  kComma,
  kNot,
  kDoubleEquals,
  kEquals,
  kGreater,
  kIdentifier,
  kIn,
  kLess,
  kNotEquals,
  kNotIn,
  kOpenPar
};

struct Item {
  Tok tok;
  std::string literal;
};

bool isWhitespace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool isSpecial(char c) {
  switch (c) {
    case '=':
    case '!':
    case '(':
    case ')':
    case ',':
    case '>':
    case '<':
      return true;
    default:
      return false;
  }
}

bool literalToken(std::string_view s, Tok& out) {
  static const std::pair<std::string_view, Tok> kTokens[] = {
      {")", Tok::kClosePar},   {",", Tok::kComma},     {"!", Tok::kNot},    {"==", Tok::kDoubleEquals},
      {"=", Tok::kEquals},     {">", Tok::kGreater},   {"in", Tok::kIn},    {"<", Tok::kLess},
      {"!=", Tok::kNotEquals}, {"notin", Tok::kNotIn}, {"(", Tok::kOpenPar}};
  for (const auto& [text, tok] : kTokens) {
    if (text == s) {
      out = tok;
      return true;
    }
  }
  return false;
}

std::vector<Item> lex(std::string_view s) {
  std::vector<Item> items;
  size_t pos = 0;
  while (true) {
    while (pos < s.size() && isWhitespace(s[pos])) ++pos;
    if (pos >= s.size()) {
      items.push_back({Tok::kEnd, ""});
      return items;
    }
    if (isSpecial(s[pos])) {
      // The longest run of special characters that is a token ("!=" before "!").
      std::string buffer;
      Item last{Tok::kError, ""};
      while (pos < s.size() && isSpecial(s[pos])) {
        buffer += s[pos];
        Tok t;
        if (literalToken(buffer, t)) {
          last = {t, buffer};
          ++pos;
        } else {
          break;
        }
      }
      items.push_back(last);
      continue;
    }
    const size_t begin = pos;
    while (pos < s.size() && !isSpecial(s[pos]) && !isWhitespace(s[pos])) ++pos;
    std::string word(s.substr(begin, pos - begin));
    Tok t;
    if (literalToken(word, t)) {
      items.push_back({t, word});
    } else {
      items.push_back({Tok::kIdentifier, word});
    }
  }
}

// ---- parser (labels.Parser) ----

// strconv.ParseInt(v, 10, 64).
bool parseInt(const std::string& v, int64_t& out) {
  const char* b = v.data() + (!v.empty() && v[0] == '+' ? 1 : 0);
  const auto [end, ec] = std::from_chars(b, v.data() + v.size(), out);
  return !v.empty() && ec == std::errc() && end == v.data() + v.size();
}

enum class Context { kKeyAndOperator, kValues };

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text), items_(lex(text)) {}

  Result<std::vector<Requirement>> parse() {
    std::vector<Requirement> out;
    while (true) {
      const Item& next = lookahead(Context::kValues);
      switch (next.tok) {
        case Tok::kIdentifier:
        case Tok::kNot: {
          auto r = parseRequirement();
          if (!r.ok()) return r.error();
          out.push_back(std::move(r.value()));
          const Item t = consume(Context::kValues);
          if (t.tok == Tok::kEnd) return out;
          if (t.tok != Tok::kComma) return fail(t, "',' or end of string");
          const Item& after = lookahead(Context::kValues);
          if (after.tok != Tok::kIdentifier && after.tok != Tok::kNot) return fail(after, "identifier after ','");
          break;
        }
        case Tok::kEnd:
          return out;
        default:
          return fail(next, "!, identifier, or end of string");
      }
    }
  }

 private:
  Item adjust(Item item, Context context) const {
    // In a value position the keywords are plain words: `a in (in)`.
    if (context == Context::kValues && (item.tok == Tok::kIn || item.tok == Tok::kNotIn)) item.tok = Tok::kIdentifier;
    return item;
  }
  Item lookahead(Context context) const { return adjust(items_[pos_], context); }
  Item consume(Context context) {
    Item item = adjust(items_[pos_], context);
    if (pos_ + 1 < items_.size()) ++pos_;  // the last item is kEnd; it stays
    return item;
  }

  Error fail(const Item& found, std::string_view expected) const {
    const std::string what = found.tok == Tok::kEnd ? "end of string" : "'" + found.literal + "'";
    return Error{"label selector \"" + std::string(text_) + "\": found " + what +
                 ", expected: " + std::string(expected)};
  }
  Error invalid(std::string_view what, std::string_view token, const std::string& why) const {
    return Error{"label selector \"" + std::string(text_) + "\": invalid " + std::string(what) + " '" +
                 std::string(token) + "': " + why};
  }

  Result<Requirement> parseRequirement() {
    Requirement r;
    bool not_exists = false;
    Item t = consume(Context::kValues);
    if (t.tok == Tok::kNot) {
      not_exists = true;
      t = consume(Context::kValues);
    }
    if (t.tok != Tok::kIdentifier) return fail(t, "identifier");
    if (auto why = qualifiedNameError(t.literal); !why.empty()) return invalid("label key", t.literal, why);
    r.key = t.literal;
    const Tok next = lookahead(Context::kValues).tok;
    if (not_exists || next == Tok::kEnd || next == Tok::kComma) {
      r.op = not_exists ? Requirement::Op::kDoesNotExist : Requirement::Op::kExists;
      return r;
    }
    const Item op = consume(Context::kKeyAndOperator);
    switch (op.tok) {
      case Tok::kIn:
        r.op = Requirement::Op::kIn;
        break;
      case Tok::kNotIn:
        r.op = Requirement::Op::kNotIn;
        break;
      case Tok::kEquals:
        r.op = Requirement::Op::kEquals;
        break;
      case Tok::kDoubleEquals:
        r.op = Requirement::Op::kDoubleEquals;
        break;
      case Tok::kNotEquals:
        r.op = Requirement::Op::kNotEquals;
        break;
      case Tok::kGreater:
        r.op = Requirement::Op::kGreaterThan;
        break;
      case Tok::kLess:
        r.op = Requirement::Op::kLessThan;
        break;
      default:
        return fail(op, "in, notin, =, ==, !=, gt, lt");
    }
    std::set<std::string> values;
    if (r.op == Requirement::Op::kIn || r.op == Requirement::Op::kNotIn) {
      auto v = parseValues();
      if (!v.ok()) return v.error();
      values = std::move(v.value());
    } else {
      const Item& v = lookahead(Context::kValues);
      if (v.tok == Tok::kEnd || v.tok == Tok::kComma) {
        values.insert("");  // `a=` is `a=""`
      } else {
        const Item got = consume(Context::kValues);
        if (got.tok != Tok::kIdentifier) return fail(got, "identifier");
        values.insert(got.literal);
      }
    }
    if (r.op == Requirement::Op::kGreaterThan || r.op == Requirement::Op::kLessThan) {
      const std::string& v = *values.begin();
      int64_t n = 0;
      if (!parseInt(v, n)) {
        return invalid("value", v, "for 'gt', 'lt' operators, the value must be an integer");
      }
    }
    for (const auto& v : values) {
      if (auto why = labelValueError(v); !why.empty()) return invalid("value of " + r.key, v, why);
    }
    r.values.assign(values.begin(), values.end());
    return r;
  }

  // "(" values ")" with labels.Parser's leniency for empty entries: "()", "(,a)", "(a,,b)".
  Result<std::set<std::string>> parseValues() {
    const Item open = consume(Context::kValues);
    if (open.tok != Tok::kOpenPar) return fail(open, "'('");
    const Item& first = lookahead(Context::kValues);
    if (first.tok == Tok::kClosePar) {
      consume(Context::kValues);
      return std::set<std::string>{""};
    }
    if (first.tok != Tok::kIdentifier && first.tok != Tok::kComma) return fail(first, "',', ')' or identifier");
    std::set<std::string> s;
    while (true) {
      const Item t = consume(Context::kValues);
      if (t.tok == Tok::kIdentifier) {
        s.insert(t.literal);
        const Item& n = lookahead(Context::kValues);
        if (n.tok == Tok::kComma) {
          consume(Context::kValues);
          const Item& m = lookahead(Context::kValues);
          if (m.tok == Tok::kClosePar) {
            s.insert("");  // "(a,)"
            break;
          }
          continue;
        }
        if (n.tok == Tok::kClosePar) break;
        return fail(n, "',' or ')'");
      }
      if (t.tok == Tok::kComma) {  // "(," or ",,": an empty value
        s.insert("");
        const Item& n = lookahead(Context::kValues);
        if (n.tok == Tok::kClosePar) break;
        if (n.tok == Tok::kComma || n.tok == Tok::kIdentifier) continue;
        return fail(n, "',', ')' or identifier");
      }
      return fail(t, "',', or identifier");
    }
    const Item close = consume(Context::kValues);
    if (close.tok != Tok::kClosePar) return fail(close, "')'");
    return s;
  }

  std::string_view text_;
  std::vector<Item> items_;
  size_t pos_ = 0;
};

}  // namespace

std::string qualifiedNameError(std::string_view key) {
  std::string_view name = key;
  const size_t slash = key.find('/');
  if (slash != std::string_view::npos) {
    if (key.find('/', slash + 1) != std::string_view::npos) {
      return "a qualified name is an optional DNS subdomain prefix and '/' then a name (e.g. 'example.com/MyName')";
    }
    const std::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (prefix.empty()) return "prefix part must be non-empty";
    if (!isDns1123Subdomain(prefix)) {
      return "prefix part must be a lowercase DNS-1123 subdomain of at most 253 characters (e.g. 'example.com')";
    }
  }
  if (name.empty()) return "name part must be non-empty";
  if (name.size() > 63) return "name part must be no more than 63 characters";
  if (!isQualifiedNamePart(name)) return "name part " + std::string(kNameRule);
  return "";
}

std::string labelValueError(std::string_view value) {
  if (value.size() > 63) return "must be no more than 63 characters";
  if (!value.empty() && !isQualifiedNamePart(value)) return "a valid label value " + std::string(kNameRule);
  return "";
}

bool Requirement::matches(const Labels& labels) const {
  const auto it = labels.find(key);
  const bool has = it != labels.end();
  const auto in = [&] { return std::binary_search(values.begin(), values.end(), it->second); };
  switch (op) {
    case Op::kEquals:
    case Op::kDoubleEquals:
    case Op::kIn:
      return has && in();
    case Op::kNotEquals:
    case Op::kNotIn:
      return !has || !in();
    case Op::kExists:
      return has;
    case Op::kDoesNotExist:
      return !has;
    case Op::kGreaterThan:
    case Op::kLessThan: {
      int64_t have = 0, want = 0;
      if (!has || values.size() != 1 || !parseInt(it->second, have) || !parseInt(values[0], want)) return false;
      return op == Op::kGreaterThan ? have > want : have < want;
    }
  }
  return false;
}

std::string Requirement::toString() const {
  std::string s = op == Op::kDoesNotExist ? "!" + key : key;
  switch (op) {
    case Op::kExists:
    case Op::kDoesNotExist:
      return s;
    case Op::kEquals:
      s += "=";
      break;
    case Op::kDoubleEquals:
      s += "==";
      break;
    case Op::kNotEquals:
      s += "!=";
      break;
    case Op::kIn:
      s += " in (";
      break;
    case Op::kNotIn:
      s += " notin (";
      break;
    case Op::kGreaterThan:
      s += ">";
      break;
    case Op::kLessThan:
      s += "<";
      break;
  }
  for (size_t i = 0; i < values.size(); ++i) s += (i ? "," : "") + values[i];
  if (op == Op::kIn || op == Op::kNotIn) s += ")";
  return s;
}

Result<Selector> Selector::parse(std::string_view text) {
  auto reqs = Parser(text).parse();
  if (!reqs.ok()) return reqs.error();
  Selector s;
  s.requirements_ = std::move(reqs.value());
  std::stable_sort(s.requirements_.begin(), s.requirements_.end(),
                   [](const Requirement& a, const Requirement& b) { return a.key < b.key; });
  return s;
}

Selector Selector::fromSet(const Labels& set) {
  Selector s;
  for (const auto& [k, v] : set) s.requirements_.push_back({k, Requirement::Op::kEquals, {v}});
  return s;  // a std::map iterates sorted by key
}

bool Selector::matches(const Labels& labels) const {
  return std::all_of(requirements_.begin(), requirements_.end(),
                     [&](const Requirement& r) { return r.matches(labels); });
}

std::string Selector::toString() const {
  std::string s;
  for (size_t i = 0; i < requirements_.size(); ++i) s += (i ? "," : "") + requirements_[i].toString();
  return s;
}

}  // namespace meshprobe::aggregator::kube
