// The page compiled into the aggregator (kMatrixPageHtml, generated from
// aggregator/web/matrix_page.html): self-contained, and exposing the DOM hooks the e2e test
// and users' scripts rely on. Its behaviour in a browser is tested by tests/e2e/e2e_page_test.cc.

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "aggregator/web/matrix_page_html.h"

namespace meshprobe::aggregator::web {
namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

TEST(MatrixPageTest, IsACompleteHtmlDocument) {
  const std::string_view page = kMatrixPageHtml;
  EXPECT_EQ(page.substr(0, 15), "<!doctype html>");
  EXPECT_TRUE(contains(page, "<meta charset=\"utf-8\">"));
  EXPECT_TRUE(contains(page, "</html>"));
  EXPECT_FALSE(contains(page, "placeholder"));
}

TEST(MatrixPageTest, LoadsNothingButItsOwnStateDocument) {
  const std::string_view page = kMatrixPageHtml;
  for (std::string_view external : {"http://", "https://", "//cdn", "<script src", "<link", "@import", "url("}) {
    EXPECT_FALSE(contains(page, external)) << "the page must be self-contained, found: " << external;
  }
  // Relative, so the page also works behind a path-prefixing proxy.
  EXPECT_TRUE(contains(page, "fetch(\"api/v1/state?cells=auto\""));
  EXPECT_TRUE(contains(page, "fetch(\"api/v1/matrix?layer=\""));
  EXPECT_TRUE(contains(page, "fetch(\"api/v1/cell?layer=\""));
}

TEST(MatrixPageTest, ExposesTheTestableDomHooks) {
  const std::string_view page = kMatrixPageHtml;
  for (std::string_view hook : {"\"data-src\"",
                                "\"data-dst\"",
                                "\"data-layer\"",
                                "\"data-state\"",
                                "<ul id=\"findings\">",
                                "\"data-code\"",
                                "\"data-nodes\"",
                                "\"data-severity\"",
                                "id=\"status\"",
                                "dataset.loaded = \"true\"",
                                "id=\"legend\"",
                                "<aside id=\"details\"",
                                "\"data-field\"",
                                "cell=",
                                "heatmap=",
                                "<table class=\"list\" id=\"nodes\">",
                                "<table class=\"list\" id=\"pairs\">",
                                "\"data-health\"",
                                "\"data-failing\"",
                                "el(\"canvas\"",
                                "dataset.renderMs",
                                "dataset.firstRenderMs",
                                "dataset.heatmapMs",
                                "<section id=\"missing-section\" hidden>",
                                "<ul id=\"missing-agents\">",
                                "\"data-pod-state\"",
                                "data.missingAgents"}) {
    EXPECT_TRUE(contains(page, hook)) << hook;
  }
  // Every cell state has a symbol and a legend entry, so colour is never the only cue.
  for (std::string_view state : {"OK", "DEGRADED", "FAIL", "UNKNOWN"}) {
    EXPECT_TRUE(contains(page, "<span class=\"sym s-" + std::string(state) + "\">")) << state;
  }
}

}  // namespace
}  // namespace meshprobe::aggregator::web
