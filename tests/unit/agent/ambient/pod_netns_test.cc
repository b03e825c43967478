#include "agent/ambient/pod_netns.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <filesystem>
#include <fstream>

using namespace meshprobe::agent;
namespace fs = std::filesystem;

namespace {

// A fake host: <root>/netns with netns files, <root>/proc/<PID>/ns/net, <root>/self-net.
// Hard links stand in for "the same namespace seen twice" (same st_dev/st_ino).
class FakeHost : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("mph-ambient-enum-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "netns");
    fs::create_directories(root_ / "proc");
    touch(root_ / "self-net");
  }
  void TearDown() override { fs::remove_all(root_); }

  static void touch(const fs::path& p) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << "ns\n";
  }
  void netnsFile(const std::string& name) { touch(root_ / "netns" / name); }
  fs::path procNs(int pid) { return root_ / "proc" / std::to_string(pid) / "ns" / "net"; }
  void procLink(int pid, const fs::path& target) {
    fs::create_directories(procNs(pid).parent_path());
    fs::create_hard_link(target, procNs(pid));
  }

  NetnsSources sources() const {
    return NetnsSources{(root_ / "netns").string(), (root_ / "proc").string(), (root_ / "self-net").string(),
                        (root_ / "proc/1/ns/net").string()};
  }
  static std::vector<std::string> names(const NetnsEnumeration& e) {
    std::vector<std::string> out;
    for (const auto& p : e.pods) out.push_back(p.name);
    return out;
  }

  fs::path root_;
};

}  // namespace

TEST_F(FakeHost, ListsNetnsFilesAndUniqueProcNamespaces) {
  netnsFile("cni-b");
  netnsFile("cni-a");
  touch(procNs(1));                                // the host: excluded
  touch(procNs(100));                              // a pod seen only in /proc
  procLink(101, procNs(100));                      // same pod, second process
  procLink(102, root_ / "netns" / "cni-b");        // a netns-dir pod's process
  procLink(103, procNs(1));                        // a host process
  procLink(200, root_ / "self-net");               // the agent itself
  fs::create_directories(root_ / "proc" / "104");  // no ns dir (kernel thread, fake tree)
  fs::create_directories(root_ / "proc" / "sys");  // not a PID

  auto e = enumeratePodNetns(sources());
  EXPECT_EQ(names(e), (std::vector<std::string>{"cni-a", "cni-b", "pid:100"}));
  ASSERT_EQ(e.pods.size(), 3u);
  EXPECT_EQ(e.pods[0].path, (root_ / "netns" / "cni-a").string());
  EXPECT_EQ(e.pods[2].path, procNs(100).string());
  EXPECT_TRUE(e.errors.empty());
  EXPECT_EQ(e.proc_entries, 7u);
  EXPECT_EQ(e.proc_unreadable, 0u);
}

TEST_F(FakeHost, AliasesInTheNetnsDirAreListedOnce) {
  netnsFile("cni-a");
  fs::create_hard_link(root_ / "netns" / "cni-a", root_ / "netns" / "cni-z");
  fs::create_directories(root_ / "netns" / "subdir");
  auto e = enumeratePodNetns(sources());
  EXPECT_EQ(names(e), (std::vector<std::string>{"cni-a"}));
  ASSERT_EQ(e.notes.size(), 1u);         // the ignored directory
  EXPECT_FALSE(e.proc_skipped.empty());  // proc/ exists, proc/1/ns/net does not
}

TEST_F(FakeHost, TheHostAndTheAgentAreNeverPods) {
  touch(procNs(1));
  fs::create_hard_link(procNs(1), root_ / "netns" / "host-alias");
  fs::create_hard_link(root_ / "self-net", root_ / "netns" / "agent-alias");
  auto e = enumeratePodNetns(sources());
  EXPECT_TRUE(e.pods.empty());
  EXPECT_TRUE(e.errors.empty());
}

TEST_F(FakeHost, MissingNetnsDirAndHostProcAreNotesNotErrors) {
  fs::remove_all(root_ / "netns");
  fs::remove_all(root_ / "proc");
  auto e = enumeratePodNetns(sources());
  EXPECT_TRUE(e.pods.empty());
  EXPECT_TRUE(e.errors.empty());
  ASSERT_EQ(e.notes.size(), 3u);
  EXPECT_NE(e.notes[0].find("host netns"), std::string::npos) << e.notes[0];
  EXPECT_NE(e.notes[1].find((root_ / "netns").string() + " does not exist"), std::string::npos) << e.notes[1];
  EXPECT_NE(e.notes[2].find((root_ / "proc").string() + " does not exist"), std::string::npos) << e.notes[2];
}

TEST_F(FakeHost, NetnsDirThatIsNotADirectoryIsAnError) {
  fs::remove_all(root_ / "netns");
  touch(root_ / "netns");
  touch(procNs(1));  // the host
  touch(procNs(5));  // /proc pods are still found
  auto e = enumeratePodNetns(sources());
  ASSERT_EQ(e.errors.size(), 1u);
  EXPECT_NE(e.errors[0].find("cannot read netns dir " + (root_ / "netns").string()), std::string::npos) << e.errors[0];
  EXPECT_EQ(names(e), (std::vector<std::string>{"pid:5"}));
}

TEST_F(FakeHost, EmptySourcesAreSkipped) {
  auto e = enumeratePodNetns(NetnsSources{});
  EXPECT_TRUE(e.pods.empty());
  EXPECT_TRUE(e.errors.empty());
  EXPECT_TRUE(e.notes.empty());
}

// ---- the host's netns cannot be identified (/proc/1/ns/net) ----

namespace {

// FakeHost with stat() failing with `err` on the host netns path, and the privileges the
// agent is said to have (counting how often they are asked for).
class UnreadableHostNetns : public FakeHost {
 protected:
  void SetUp() override {
    FakeHost::SetUp();
    netnsFile("cni-a");
    touch(procNs(1));
    touch(procNs(100));  // a pod seen only in /proc: must not be listed
    procLink(101, procNs(1));  // a host process: would pass for a pod if /proc were scanned
  }
  NetnsEnumeration enumerate(int err, Privileges who) {
    NetnsProbe probe;
    probe.privileges = [this, who] {
      ++privilege_lookups_;
      return who;
    };
    const std::string host = sources().host_netns;
    probe.stat = [host, err](const std::string& path, struct stat& st) {
      if (path == host) return err;
      return ::stat(path.c_str(), &st) == 0 ? 0 : errno;
    };
    return enumeratePodNetns(sources(), probe);
  }
  int privilege_lookups_ = 0;
};

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

constexpr uint64_t kAllCaps = 0x000001ffffffffffull;

}  // namespace

TEST_F(UnreadableHostNetns, EaccesAsRootWithCapsSkipsProcWithThePidNamespaceAdvice) {
  auto e = enumerate(EACCES, Privileges{true, 0, kAllCaps});
  EXPECT_EQ(names(e), (std::vector<std::string>{"cni-a"})) << "the netns dir is still listed, /proc is not";
  EXPECT_EQ(e.proc_entries, 0u);
  EXPECT_TRUE(e.errors.empty()) << "cannot tell the host's netns is not a failure";
  EXPECT_TRUE(has(e.proc_skipped, "Permission denied")) << e.proc_skipped;
  EXPECT_TRUE(has(e.proc_skipped, "hostPID: true")) << e.proc_skipped;
  EXPECT_FALSE(has(e.proc_skipped, "run it as root")) << e.proc_skipped;
  EXPECT_EQ(privilege_lookups_, 1);
}

TEST_F(UnreadableHostNetns, EaccesWithoutRootSaysRunAsRoot) {
  auto e = enumerate(EACCES, Privileges{true, 65534, 0});
  EXPECT_TRUE(e.errors.empty());
  EXPECT_TRUE(has(e.proc_skipped, "uid 65534, not root")) << e.proc_skipped;
  EXPECT_EQ(names(e), (std::vector<std::string>{"cni-a"}));
}

TEST_F(UnreadableHostNetns, RootWithoutPtraceNamesTheMissingCapability) {
  auto e = enumerate(EPERM, Privileges{true, 0, kAllCaps & ~(1ull << kCapSysPtrace)});
  EXPECT_TRUE(has(e.proc_skipped, "lacks CAP_SYS_PTRACE")) << e.proc_skipped;
  EXPECT_TRUE(e.errors.empty());
}

TEST_F(UnreadableHostNetns, EnoentWithAProcDirSkipsProcWithoutAskingForPrivileges) {
  auto e = enumerate(ENOENT, Privileges{true, 0, kAllCaps});
  EXPECT_TRUE(has(e.proc_skipped, "does not exist")) << e.proc_skipped;
  EXPECT_TRUE(has(e.proc_skipped, "--host-root")) << e.proc_skipped;
  EXPECT_EQ(e.proc_entries, 0u);
  EXPECT_EQ(privilege_lookups_, 0);
  EXPECT_TRUE(e.errors.empty());
}

TEST_F(FakeHost, UnreadableProcessNamespacesGiveAdviceForWhoTheAgentIs) {
  touch(procNs(1));
  touch(procNs(7));
  NetnsProbe probe;
  probe.privileges = [] { return Privileges{true, 0, kAllCaps}; };
  const std::string denied = procNs(7).string();
  probe.stat = [denied](const std::string& path, struct stat& st) {
    if (path == denied) return EACCES;
    return ::stat(path.c_str(), &st) == 0 ? 0 : errno;
  };
  auto e = enumeratePodNetns(sources(), probe);
  EXPECT_EQ(e.proc_unreadable, 1u);
  ASSERT_EQ(e.errors.size(), 1u);
  EXPECT_TRUE(has(e.errors[0], "cannot read the network namespace of 1 of 2 processes")) << e.errors[0];
  EXPECT_FALSE(has(e.errors[0], "run the agent as root")) << "root with every capability: " << e.errors[0];
  EXPECT_TRUE(has(e.errors[0], "hostPID: true")) << e.errors[0];
}

TEST(EnumeratePodNetnsReal, TheAgentsOwnNamespaceIsExcluded) {
  // On the real /proc, this process' namespace is the agent's: never listed as a pod.
  NetnsSources s{"", "/proc", "/proc/self/ns/net", "/proc/1/ns/net"};
  auto e = enumeratePodNetns(s);
  const std::string self = "pid:" + std::to_string(::getpid());
  for (const auto& p : e.pods) EXPECT_NE(p.name, self);
}
