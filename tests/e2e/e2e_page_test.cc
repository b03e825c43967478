// E2E test of the matrix page: the real meshprobe-aggregator serves the page at
// http://198.51.100.2:9471/ in the control netns of the 4-node mesh (mesh.h); Debian's
// headless Chromium loads it there (--dump-dom, --screenshot), so the page's JavaScript
// really fetches /api/v1/state and builds the DOM. Fault: node3 drops every VXLAN packet
// it receives (iptables INPUT udp/4789 DROP), so its OVERLAY row and column fail.
//
// What is asserted from the DOM Chromium dumps: the page rendered data (body
// data-loaded="true", status "ok"); OVERLAY cells td[data-layer=OVERLAY][data-src][data-dst]
// are FAIL exactly in node3's row and column and OK elsewhere; every UNDERLAY cell OK; the
// ISTIOD column has one cell per node; the nodes list (tr.node) has node3 first, failing
// with 3 OVERLAY peers and every other node with 1; the broken pairs list (tr.pair) holds
// node3's six OVERLAY cells, FAIL; the findings list (ul#findings) is there, and when
// the Diagnose API names node3 at that moment, an li.finding with node3 in data-nodes is
// listed too. The details panel of a cell (what a click opens; also opened by the URL
// #cell=OVERLAY/node1/node3) shows its state, loss and last update. A 1400x1000
// screenshot is kept at <build>/artifacts/matrix_page.png.

#include <regex>
#include <set>

#include "tests/e2e/mesh.h"

#ifndef MESHPROBE_BINARY_DIR
#error "MESHPROBE_BINARY_DIR must be defined by the build"
#endif

namespace meshprobe::e2e {
namespace {

constexpr const char* kChromium = "/usr/bin/chromium";

std::string pageUrl() { return "http://" + Mesh::httpAddr() + "/"; }

// The attributes of every start tag `<tag ...>` in `html` (Chromium's serialized DOM:
// attribute values double-quoted, & " < > escaped).
std::vector<std::map<std::string, std::string>> startTags(const std::string& html, const std::string& tag) {
  std::vector<std::map<std::string, std::string>> out;
  static const std::regex attr(R"re(([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:="([^"]*)")?)re");
  const std::regex start("<" + tag + R"re((\s[^>]*)?>)re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), start); it != std::sregex_iterator(); ++it) {
    std::map<std::string, std::string> attrs;
    const std::string body = (*it)[1].str();
    for (auto a = std::sregex_iterator(body.begin(), body.end(), attr); a != std::sregex_iterator(); ++a) {
      attrs[(*a)[1].str()] = (*a)[2].str();
    }
    out.push_back(std::move(attrs));
  }
  return out;
}

bool hasWord(const std::string& words, const std::string& word) {
  std::istringstream in(words);
  std::string w;
  while (in >> w) {
    if (w == word) return true;
  }
  return false;
}

class PageTest : public MeshTest {
 protected:
  void SetUp() override {
    MeshTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_EQ(access(kChromium, X_OK), 0) << kChromium << " is missing (scripts/setup.sh installs it)";
    profile_ = std::make_unique<TempDir>("chromium");
  }
  void TearDown() override {
    profile_.reset();
    MeshTest::TearDown();
  }

  // headless Chromium in the control netns with a throwaway HOME and profile.
  CmdResult chromium(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kChromium, "--headless", "--no-sandbox", "--disable-gpu",
                                     "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                                     "--disable-extensions", "--disable-background-networking",
                                     "--disable-component-update", "--disable-sync",
                                     "--user-data-dir=" + profile_->sub("profile-" + std::to_string(++runs_)),
                                     // Page JS runs for this much virtual time: the first fetch plus a
                                     // couple of 2 s refreshes.
                                     "--virtual-time-budget=5000"};
    argv.insert(argv.end(), args.begin(), args.end());
    CmdOptions o;
    o.netns = mesh_->control().name();
    o.timeout = 90s;
    o.env = {"HOME=" + profile_->path(), "XDG_CONFIG_HOME=" + profile_->path(), "XDG_CACHE_HOME=" + profile_->path()};
    return runCommand(argv, o);
  }

  // GET url with curl in the control netns: {exit code, body}.
  CmdResult httpGet(const std::string& url) const {
    CmdOptions o;
    o.netns = mesh_->control().name();
    o.timeout = 10s;
    return runCommand({"curl", "-sS", "--fail", "--max-time", "3", url}, o);
  }

  // The active findings from the Diagnose API (null on error).
  nlohmann::json diagnose(std::string* error) const { return Mesh::parse(mesh_->cli({"diagnose"}), error); }

  static bool namesNode(const nlohmann::json& findings, const std::string& node) {
    if (!findings.is_object() || !findings.contains("findings")) return false;
    for (const auto& f : findings["findings"]) {
      if (!f.contains("nodes")) continue;
      for (const auto& n : f["nodes"]) {
        if (n == node) return true;
      }
    }
    return false;
  }

  // "" when the DOM shows node3's OVERLAY row and column FAIL, the rest of OVERLAY and
  // all of UNDERLAY OK, one ISTIOD cell per node; else what differs.
  static std::string domMismatch(const std::string& dom) {
    std::string out;
    auto body = startTags(dom, "body");
    if (body.empty() || body[0]["data-loaded"] != "true")
      out += "  body not data-loaded=\"true\" (page never rendered data)\n";
    for (const auto& s : startTags(dom, "span")) {
      if (s.count("id") && s.at("id") == "status" && s.at("data-state") != "ok") {
        out += "  #status data-state=" + s.at("data-state") + "\n";
      }
    }
    std::map<std::string, std::map<std::pair<std::string, std::string>, std::string>>
        cells;  // layer -> (src,dst) -> state
    for (auto& td : startTags(dom, "td")) {
      if (!td.count("data-layer")) continue;
      auto& layer = cells[td["data-layer"]];
      const auto key = std::make_pair(td["data-src"], td["data-dst"]);
      if (layer.count(key)) out += "  duplicate " + td["data-layer"] + " cell " + key.first + "->" + key.second + "\n";
      layer[key] = td["data-state"];
    }
    auto expectLayer = [&](const std::string& name, const std::function<std::string(int, int)>& want) {
      const auto& layer = cells[name];
      if (layer.size() != static_cast<size_t>(kNodes * (kNodes - 1))) {
        out += "  " + name + ": " + std::to_string(layer.size()) + " cells, want " +
               std::to_string(kNodes * (kNodes - 1)) + "\n";
      }
      for (int s = 1; s <= kNodes; ++s) {
        for (int d = 1; d <= kNodes; ++d) {
          if (s == d) continue;
          auto it = layer.find({nodeName(s), nodeName(d)});
          const std::string got = it == layer.end() ? "(absent)" : it->second;
          if (got != want(s, d)) {
            out +=
                "  " + name + " " + nodeName(s) + "->" + nodeName(d) + ": want " + want(s, d) + ", got " + got + "\n";
          }
        }
      }
    };
    expectLayer("OVERLAY", [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "OK"); });
    expectLayer("UNDERLAY", [](int, int) { return std::string("OK"); });
    const auto& istiod = cells["ISTIOD"];
    for (int n = 1; n <= kNodes; ++n) {
      if (!istiod.count({nodeName(n), "istiod"})) out += "  ISTIOD cell " + nodeName(n) + "->istiod absent\n";
    }
    // The nodes list: every node once, node3 first (most broken), failing with its 3 peers
    // on OVERLAY while the others fail with one (node3).
    std::vector<std::string> rows;
    for (auto& tr : startTags(dom, "tr")) {
      if (tr.count("class") && hasWord(tr["class"], "node")) rows.push_back(tr["data-node"]);
    }
    if (rows.size() != static_cast<size_t>(kNodes) || rows.empty() || rows[0] != nodeName(3)) {
      out += "  nodes list:";
      for (const auto& r : rows) out += " " + r;
      out += " (want " + std::to_string(kNodes) + " rows, " + nodeName(3) + " first)\n";
    }
    std::multiset<std::string> overlay_failing;
    for (auto& td : startTags(dom, "td")) {
      if (td["data-field"] == "OVERLAY" && td.count("data-failing")) overlay_failing.insert(td["data-failing"]);
    }
    const std::multiset<std::string> want_failing = {"1", "1", "1", "3"};
    if (overlay_failing != want_failing) {
      out += "  OVERLAY peers failing per node:";
      for (const auto& f : overlay_failing) out += " " + f;
      out += " (want 3 1 1 1)\n";
    }
    // The broken pairs list: node3's six OVERLAY cells, FAIL.
    size_t overlay_pairs = 0;
    for (auto& tr : startTags(dom, "tr")) {
      if (!tr.count("class") || !hasWord(tr["class"], "pair") || tr["data-layer"] != "OVERLAY") continue;
      ++overlay_pairs;
      if (tr["data-state"] != "FAIL" || (tr["data-src"] != nodeName(3) && tr["data-dst"] != nodeName(3))) {
        out += "  broken pair " + tr["data-src"] + "->" + tr["data-dst"] + " " + tr["data-state"] + "\n";
      }
    }
    if (overlay_pairs != 2u * (kNodes - 1))
      out += "  " + std::to_string(overlay_pairs) + " OVERLAY broken pairs listed\n";
    return out;
  }

  std::unique_ptr<TempDir> profile_;
  int runs_ = 0;
};

TEST_F(PageTest, ChromiumShowsNode3OverlayRowAndColumnFailAndTheFindings) {
  ASSERT_TRUE(waitHealthy());

  // The aggregator's HTTP side serves the page and its data.
  std::string last;
  ASSERT_TRUE(pollUntil(
      [&] {
        auto r = httpGet(pageUrl() + "api/v1/state");
        last = r.describe() + " " + r.out.substr(0, 300);
        if (r.exit_code != 0) return false;
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        return !j.is_discarded() && j.contains("layers");
      },
      20s, 200ms))
      << "GET " << pageUrl() << "api/v1/state never answered with the page's JSON: " << last << mesh_->diagnostics();
  auto index = httpGet(pageUrl());
  ASSERT_EQ(index.exit_code, 0) << index.describe();
  ASSERT_NE(index.out.find("api/v1/state"), std::string::npos) << "/ is not the matrix page:\n"
                                                               << index.out.substr(0, 500);

  mesh_->cluster().node(3).sh("iptables -A INPUT -p udp --dport 4789 -j DROP");
  const auto injected = SteadyClock::now();
  const Expect node3FailsAnyOther = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "*"); };
  const Expect node3Fails = [](int s, int d) { return std::string(s == 3 || d == 3 ? "FAIL" : "OK"); };
  double detection = 0;
  ASSERT_TRUE(eventually(
      "every OVERLAY cell to and from node3 FAIL", [&] { return layerMismatch("OVERLAY", node3FailsAnyOther); }, 30s,
      &detection, injected));
  ASSERT_TRUE(eventually(
      "only node3's OVERLAY cells FAIL, every UNDERLAY cell OK",
      [&] { return layerMismatch("OVERLAY", node3Fails) + layerMismatch("UNDERLAY", kAllOk); }, 15s));
  std::cout << "Query API: node3's overlay row and column FAIL after " << seconds(detection) << std::endl;

  // Give the findings engine a moment (onset hysteresis) to name node3; the page is
  // checked either way.
  std::string diag_error;
  nlohmann::json findings;
  const bool diagnosed = pollUntil(
      [&] {
        findings = diagnose(&diag_error);
        return namesNode(findings, "node3");
      },
      10s, 250ms);
  std::cout << "Diagnose API " << (diagnosed ? "names node3: " : "does not name node3 (yet): ")
            << (findings.is_null() ? diag_error : findings.dump()) << std::endl;

  // Load the page in Chromium and read the DOM its JavaScript built. The page shows the
  // API's state at load time; a few tries absorb a refresh racing a state change.
  std::string dom, mismatch;
  CmdResult run;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    run = chromium({"--dump-dom", pageUrl()});
    ASSERT_EQ(run.exit_code, 0) << run.describe();
    dom = run.out;
    mismatch = domMismatch(dom);
    if (mismatch.empty()) break;
    std::cout << "DOM attempt " << attempt << " differs:\n" << mismatch;
  }
  ASSERT_TRUE(mismatch.empty()) << mismatch << "\n---- DOM (first 4000 chars) ----\n"
                                << dom.substr(0, 4000) << mesh_->diagnostics();

  // Findings: the list is always there; with a Diagnose answer naming node3, the page lists it.
  ASSERT_NE(dom.find("id=\"findings\""), std::string::npos) << "no ul#findings in the DOM";
  const auto items = startTags(dom, "li");
  std::vector<std::string> listed;
  bool page_names_node3 = false;
  for (const auto& li : items) {
    if (!li.count("class") || !hasWord(li.at("class"), "finding")) continue;
    listed.push_back(li.at("data-code") + "[" + li.at("data-nodes") + "]");
    EXPECT_FALSE(li.at("data-code").empty());
    EXPECT_TRUE(li.count("data-severity"));
    if (hasWord(li.at("data-nodes"), "node3")) page_names_node3 = true;
  }
  std::cout << "findings on the page: " << listed.size();
  for (const auto& l : listed) std::cout << " " << l;
  std::cout << std::endl;
  if (diagnosed) {
    EXPECT_TRUE(page_names_node3) << "Diagnose names node3 but the page lists no finding with node3: "
                                  << findings.dump() << "\nlisted: " << listed.size();
    EXPECT_GE(listed.size(), 1u);
  } else {
    std::cout << "NOTE: no finding naming node3 from the Diagnose API within 10 s; only the list element was "
                 "asserted"
              << std::endl;
  }

  // A cell's details (what a click shows), opened through the URL: /#cell=OVERLAY/node1/node3.
  auto details = chromium({"--dump-dom", pageUrl() + "#cell=OVERLAY/node1/node3"});
  ASSERT_EQ(details.exit_code, 0) << details.describe();
  auto asides = startTags(details.out, "aside");
  ASSERT_EQ(asides.size(), 1u) << details.out.substr(0, 2000);
  auto& panel = asides[0];
  EXPECT_FALSE(panel.count("hidden")) << "details panel hidden";
  EXPECT_EQ(panel["data-layer"], "OVERLAY");
  EXPECT_EQ(panel["data-src"], "node1");
  EXPECT_EQ(panel["data-dst"], "node3");
  EXPECT_EQ(panel["data-state"], "FAIL");
  std::smatch loss, updated;
  const std::string& text = details.out;
  ASSERT_TRUE(std::regex_search(text, loss, std::regex(R"re(data-field="loss">([0-9.]+)%<)re")))
      << "no loss in the details panel";
  EXPECT_GT(std::stod(loss[1].str()), 0.0) << "a FAIL cell with 0% loss";
  EXPECT_TRUE(std::regex_search(text, updated, std::regex(R"re(data-field="lastUpdate">20[0-9-]+ [0-9:]+ UTC)re")))
      << "no last-update time in the details panel";
  std::cout << "details panel: node1 -> node3 OVERLAY FAIL, loss " << loss[1] << "%" << std::endl;

  // A screenshot for humans (CI artifact).
  const std::string dir = std::string(MESHPROBE_BINARY_DIR) + "/artifacts";
  mustRun({"mkdir", "-p", dir});
  const std::string png = dir + "/matrix_page.png";
  ::unlink(png.c_str());
  auto shot = chromium({"--hide-scrollbars", "--window-size=1400,1000", "--screenshot=" + png, pageUrl()});
  ASSERT_EQ(shot.exit_code, 0) << shot.describe();
  const std::string bytes = readFile(png);
  ASSERT_GT(bytes.size(), 10'000u) << png << " is missing or trivially small (" << bytes.size() << " bytes)";
  ASSERT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png << " is not a PNG";
  // IHDR: width and height, big-endian, at bytes 16..23.
  auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 1400u);
  EXPECT_EQ(be32(20), 1000u);
  std::cout << "screenshot: " << png << " (" << bytes.size() << " bytes)" << std::endl;

  mesh_->cluster().node(3).sh("iptables -D INPUT -p udp --dport 4789 -j DROP");
}

}  // namespace
}  // namespace meshprobe::e2e
