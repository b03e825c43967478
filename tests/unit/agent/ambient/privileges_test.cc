// The uid/capability lookup behind the ambient check's advice, and the advice itself for
// each reason /proc/1/ns/net can fail.

#include "agent/ambient/privileges.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

using namespace meshprobe::agent;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A /proc/<PID>/status excerpt as the kernel writes it.
std::string status(const std::string& uid_line, const std::string& capeff) {
  return "Name:\tmeshprobe-agent\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t1\n" + uid_line +
         "\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t" + capeff + "\nCapEff:\t" + capeff +
         "\nCapBnd:\t000001ffffffffff\n";
}

Privileges root(uint64_t caps) { return Privileges{true, 0, caps}; }
constexpr uint64_t kAll = 0x000001ffffffffffull;
constexpr uint64_t kDockerDefault = 0x00000000a80425fbull;  // runc's default set: no SYS_PTRACE, no SYS_ADMIN

const std::string kHost = "/host/proc/1/ns/net";

}  // namespace

TEST(ParseProcStatus, RootWithEveryCapability) {
  auto p = parseProcStatus(status("Uid:\t0\t0\t0\t0", "000001ffffffffff"));
  ASSERT_TRUE(p.known);
  EXPECT_EQ(p.euid, 0u);
  EXPECT_TRUE(p.has(kCapSysPtrace));
  EXPECT_TRUE(p.has(kCapSysAdmin));
}

TEST(ParseProcStatus, EffectiveUidIsTheSecondColumn) {
  auto p = parseProcStatus(status("Uid:\t1000\t0\t0\t0", "0000000000000000"));
  ASSERT_TRUE(p.known);
  EXPECT_EQ(p.euid, 0u);
  p = parseProcStatus(status("Uid:\t0\t1000\t1000\t1000", "0000000000000000"));
  EXPECT_EQ(p.euid, 1000u);
  EXPECT_FALSE(p.has(kCapSysPtrace));
}

TEST(ParseProcStatus, DefaultContainerCapabilitiesLackPtraceAndAdmin) {
  auto p = parseProcStatus(status("Uid:\t0\t0\t0\t0", "00000000a80425fb"));
  ASSERT_TRUE(p.known);
  EXPECT_EQ(p.cap_eff, kDockerDefault);
  EXPECT_FALSE(p.has(kCapSysPtrace));
  EXPECT_FALSE(p.has(kCapSysAdmin));
  EXPECT_TRUE(p.has(0));  // CAP_CHOWN
}

TEST(ParseProcStatus, MissingOrMalformedFieldsAreUnknown) {
  EXPECT_FALSE(parseProcStatus("").known);
  EXPECT_FALSE(parseProcStatus("Uid:\t0\t0\t0\t0\n").known);
  EXPECT_FALSE(parseProcStatus("CapEff:\t000001ffffffffff\n").known);
  EXPECT_FALSE(parseProcStatus(status("Uid:\tx", "000001ffffffffff")).known);
  EXPECT_FALSE(parseProcStatus(status("Uid:\t0\t0\t0\t0", "zz")).known);
  // "CapEffX:" is not "CapEff:".
  EXPECT_FALSE(parseProcStatus("Uid:\t0\t0\t0\t0\nCapEffX:\t1\n").known);
}

TEST(CurrentPrivileges, MatchesThisProcess) {
  auto p = currentPrivileges();
  ASSERT_TRUE(p.known);
  EXPECT_EQ(p.euid, static_cast<uint32_t>(::geteuid()));
}

TEST(HostNetnsProblem, EaccesAsRootWithCapabilitiesPointsAtPidNamespaceOrSandbox) {
  const std::string why = hostNetnsProblem(kHost, EACCES, root(kAll), "/host/proc");
  EXPECT_TRUE(contains(why, "cannot read " + kHost + " (Permission denied)")) << why;
  EXPECT_TRUE(contains(why, "cannot be told from a pod's")) << why;
  EXPECT_TRUE(contains(why, "hostPID: true")) << why;
  EXPECT_TRUE(contains(why, "--host-root")) << why;
  EXPECT_TRUE(contains(why, "sandboxing runtime")) << why;
  EXPECT_FALSE(contains(why, "run it as root")) << why;
  EXPECT_FALSE(contains(why, "lacks")) << why;
}

TEST(HostNetnsProblem, EaccesWithoutRootSaysRunAsRoot) {
  const std::string why = hostNetnsProblem(kHost, EACCES, Privileges{true, 1000, 0}, "/host/proc");
  EXPECT_TRUE(contains(why, "uid 1000, not root")) << why;
  EXPECT_TRUE(contains(why, "run it as root")) << why;
  EXPECT_FALSE(contains(why, "hostPID")) << why;
}

TEST(HostNetnsProblem, RootMissingPtraceNamesTheCapability) {
  const uint64_t no_ptrace = kAll & ~(1ull << kCapSysPtrace);
  const std::string why = hostNetnsProblem(kHost, EACCES, root(no_ptrace), "/host/proc");
  EXPECT_TRUE(contains(why, "lacks CAP_SYS_PTRACE")) << why;
  EXPECT_FALSE(contains(why, "CAP_SYS_ADMIN")) << why;
  EXPECT_TRUE(contains(why, "(SYS_PTRACE)")) << why;
  EXPECT_FALSE(contains(why, "run it as root")) << why;

  const std::string both = hostNetnsProblem(kHost, EPERM, root(kDockerDefault), "/host/proc");
  EXPECT_TRUE(contains(both, "(Operation not permitted)")) << both;
  EXPECT_TRUE(contains(both, "lacks CAP_SYS_PTRACE and CAP_SYS_ADMIN")) << both;
  EXPECT_TRUE(contains(both, "(SYS_PTRACE, SYS_ADMIN)")) << both;
}

TEST(HostNetnsProblem, EnoentSaysTheProcIsNotTheHosts) {
  const std::string why = hostNetnsProblem(kHost, ENOENT, Privileges{}, "/host/proc");
  EXPECT_TRUE(contains(why, kHost + " does not exist")) << why;
  EXPECT_TRUE(contains(why, "/host/proc is not the host's /proc")) << why;
  EXPECT_TRUE(contains(why, "--host-root")) << why;
  EXPECT_TRUE(contains(why, "hostPID: true")) << why;
}

TEST(HostNetnsProblem, UnknownPrivilegesStillGiveTheWholeRemedy) {
  const std::string why = hostNetnsProblem(kHost, EACCES, Privileges{}, "/host/proc");
  EXPECT_TRUE(contains(why, "root")) << why;
  EXPECT_TRUE(contains(why, "CAP_SYS_PTRACE")) << why;
  EXPECT_TRUE(contains(why, "hostPID: true")) << why;
}
