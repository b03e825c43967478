// Label selectors against apimachinery's labels.Parse behaviour (pkg/labels/selector.go):
// the syntax, its leniencies, validation, and matching on missing keys.
#include "aggregator/kube/selector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace meshprobe::aggregator::kube {
namespace {

using ::testing::HasSubstr;

Selector mustParse(std::string_view text) {
  auto s = Selector::parse(text);
  EXPECT_TRUE(s.ok()) << text << ": " << (s.ok() ? "" : s.error().message);
  return s.ok() ? s.value() : Selector();
}

std::string parseError(std::string_view text) {
  auto s = Selector::parse(text);
  EXPECT_FALSE(s.ok()) << text << " parsed as " << (s.ok() ? s->toString() : "");
  return s.ok() ? "" : s.error().message;
}

const Labels kProd{{"env", "prod"}, {"tier", "web"}, {"replicas", "3"}};

TEST(LabelSelector, EmptyMatchesEverything) {
  for (const char* text : {"", "   ", "\t\n"}) {
    const Selector s = mustParse(text);
    EXPECT_TRUE(s.empty());
    EXPECT_TRUE(s.matches({}));
    EXPECT_TRUE(s.matches(kProd));
  }
  EXPECT_TRUE(Selector().matches(kProd));
}

TEST(LabelSelector, EqualityOperators) {
  EXPECT_TRUE(mustParse("env=prod").matches(kProd));
  EXPECT_TRUE(mustParse("env==prod").matches(kProd));
  EXPECT_FALSE(mustParse("env=dev").matches(kProd));
  EXPECT_FALSE(mustParse("env=prod").matches({}));
  EXPECT_FALSE(mustParse("env!=prod").matches(kProd));
  EXPECT_TRUE(mustParse("env!=dev").matches(kProd));
}

TEST(LabelSelector, InequalityAndNotinMatchAMissingKey) {
  EXPECT_TRUE(mustParse("zone!=a").matches(kProd));
  EXPECT_TRUE(mustParse("zone notin (a,b)").matches(kProd));
  EXPECT_FALSE(mustParse("zone in (a,b)").matches(kProd));
  EXPECT_FALSE(mustParse("env notin (prod,dev)").matches(kProd));
  EXPECT_TRUE(mustParse("env in (dev,prod)").matches(kProd));
}

TEST(LabelSelector, ExistsAndDoesNotExist) {
  EXPECT_TRUE(mustParse("env").matches(kProd));
  EXPECT_FALSE(mustParse("zone").matches(kProd));
  EXPECT_TRUE(mustParse("!zone").matches(kProd));
  EXPECT_FALSE(mustParse("!env").matches(kProd));
  EXPECT_TRUE(mustParse("! zone").matches(kProd));  // whitespace between ! and the key
}

TEST(LabelSelector, CommaIsAnd) {
  EXPECT_TRUE(mustParse("env=prod,tier=web").matches(kProd));
  EXPECT_FALSE(mustParse("env=prod,tier=db").matches(kProd));
  EXPECT_TRUE(mustParse("env=prod,!zone,tier in (web)").matches(kProd));
  // The same key twice: both must hold.
  EXPECT_FALSE(mustParse("env=prod,env=dev").matches(kProd));
}

TEST(LabelSelector, WhitespaceAnywhere) {
  const Selector s = mustParse("  env = prod ,\ttier  in ( web , db ) , ! zone ");
  EXPECT_TRUE(s.matches(kProd));
  EXPECT_EQ(s.toString(), "env=prod,tier in (db,web),!zone");
  EXPECT_TRUE(mustParse("env\n!=\ndev").matches(kProd));
}

TEST(LabelSelector, EmptyValues) {
  // `a=` is a = "": matches an empty value, not a missing key.
  EXPECT_TRUE(mustParse("a=").matches({{"a", ""}}));
  EXPECT_FALSE(mustParse("a=").matches({}));
  EXPECT_TRUE(mustParse("a=,env=prod").matches({{"a", ""}, {"env", "prod"}}));
  // `in ()` is `in ("")`; empty entries in a list are "".
  EXPECT_EQ(mustParse("a in ()").requirements()[0].values, (std::vector<std::string>{""}));
  EXPECT_EQ(mustParse("a in (x,,y)").requirements()[0].values, (std::vector<std::string>{"", "x", "y"}));
  EXPECT_EQ(mustParse("a in (,x)").requirements()[0].values, (std::vector<std::string>{"", "x"}));
  EXPECT_EQ(mustParse("a in (x,)").requirements()[0].values, (std::vector<std::string>{"", "x"}));
  EXPECT_EQ(mustParse("a in (x,x)").requirements()[0].values, (std::vector<std::string>{"x"}));
}

TEST(LabelSelector, KeywordsAreValuesInAValuePosition) {
  EXPECT_TRUE(mustParse("a in (in,notin)").matches({{"a", "notin"}}));
  EXPECT_TRUE(mustParse("a=in").matches({{"a", "in"}}));
  EXPECT_TRUE(mustParse("in").matches({{"in", "x"}}));  // a key named "in"
}

TEST(LabelSelector, PrefixedKeys) {
  const Selector s = mustParse("istio.io/dataplane-mode=ambient");
  EXPECT_TRUE(s.matches({{"istio.io/dataplane-mode", "ambient"}}));
  EXPECT_FALSE(s.matches({{"dataplane-mode", "ambient"}}));
  EXPECT_TRUE(mustParse("app.kubernetes.io/name in (meshprobe-agent)")
                  .matches({{"app.kubernetes.io/name", "meshprobe-agent"}}));
}

TEST(LabelSelector, GreaterAndLessThan) {
  EXPECT_TRUE(mustParse("replicas>2").matches(kProd));
  EXPECT_FALSE(mustParse("replicas>3").matches(kProd));
  EXPECT_TRUE(mustParse("replicas<4").matches(kProd));
  EXPECT_FALSE(mustParse("env>1").matches(kProd));   // not a number: no match
  EXPECT_FALSE(mustParse("zone<9").matches(kProd));  // missing key: no match
  EXPECT_THAT(parseError("replicas>x"), HasSubstr("must be an integer"));
}

TEST(LabelSelector, ErrorsNameTheToken) {
  EXPECT_THAT(parseError("env=prod tier=web"), HasSubstr("found 'tier', expected: ',' or end of string"));
  EXPECT_THAT(parseError("env prod"), HasSubstr("found 'prod', expected: in, notin"));
  EXPECT_THAT(parseError("env in prod"), HasSubstr("found 'prod', expected: '('"));
  EXPECT_THAT(parseError("env in (prod"), HasSubstr("found end of string, expected: ',' or ')'"));
  EXPECT_THAT(parseError("env in (a b)"), HasSubstr("found 'b'"));
  EXPECT_THAT(parseError("env=prod,"), HasSubstr("found end of string, expected: identifier after ','"));
  EXPECT_THAT(parseError(",env"), HasSubstr("found ','"));
  EXPECT_THAT(parseError("=prod"), HasSubstr("found '='"));
  EXPECT_THAT(parseError("!env=prod"), HasSubstr("found '='"));  // ! takes a bare key
  EXPECT_THAT(parseError("env=(a)"), HasSubstr("found '('"));
}

TEST(LabelSelector, ValidatesKeysAndValues) {
  EXPECT_THAT(parseError("-env=prod"), HasSubstr("invalid label key '-env'"));
  EXPECT_THAT(parseError("env-=prod"), HasSubstr("invalid label key 'env-'"));
  EXPECT_THAT(parseError("/env=prod"), HasSubstr("prefix part must be non-empty"));
  EXPECT_THAT(parseError("Istio.io/mode=x"), HasSubstr("DNS-1123"));  // prefixes are lowercase
  EXPECT_THAT(parseError("a/b/c=x"), HasSubstr("invalid label key 'a/b/c'"));
  EXPECT_THAT(parseError("example.com/=x"), HasSubstr("name part must be non-empty"));
  EXPECT_THAT(parseError(std::string(64, 'k') + "=x"), HasSubstr("no more than 63"));
  EXPECT_THAT(parseError("env=" + std::string(64, 'v')), HasSubstr("no more than 63"));
  EXPECT_THAT(parseError("env=-prod"), HasSubstr("invalid value of env '-prod'"));
  EXPECT_THAT(parseError("env in (ok,bad_)"), HasSubstr("'bad_'"));
  EXPECT_THAT(parseError("env=a/b"), HasSubstr("'a/b'"));
  // The edges that are valid.
  mustParse(std::string(63, 'k') + "=" + std::string(63, 'v'));
  mustParse("a.b_c-D=E.f_g-9");
  mustParse("x=9");
}

TEST(LabelSelector, ToStringRoundTrips) {
  const Selector s = mustParse("tier notin (b,a),!zone,env==prod,app,n>3");
  EXPECT_EQ(s.toString(), "app,env==prod,n>3,tier notin (a,b),!zone");
  EXPECT_EQ(mustParse(s.toString()).toString(), s.toString());
}

TEST(LabelSelector, FromSet) {
  const Selector s = Selector::fromSet({{"app", "ztunnel"}});
  EXPECT_EQ(s.toString(), "app=ztunnel");
  EXPECT_TRUE(s.matches({{"app", "ztunnel"}, {"x", "y"}}));
  EXPECT_FALSE(s.matches({{"app", "istiod"}}));
  EXPECT_TRUE(Selector::fromSet({}).empty());
}

}  // namespace
}  // namespace meshprobe::aggregator::kube
