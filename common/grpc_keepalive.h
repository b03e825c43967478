#pragma once
// HTTP/2 keepalive between agents and the aggregator, one set of numbers for both ends.
//
// The agent pings its aggregator every kAgentKeepaliveTime and gives up on the connection
// when a ping is not answered within kAgentKeepaliveTimeout. The aggregator must accept
// pings that often: gRPC servers by default allow a ping only every 5 minutes while they
// send nothing, count each earlier one as a strike, and after two strikes end the
// connection with GOAWAY ENHANCE_YOUR_CALM ("too_many_pings"). An aggregator that sends
// nothing on a stream for a while (no membership change, and busy enough that its flow
// control updates lag) would otherwise drop healthy agents, which then reconnect with a
// whole report each. The timeout is gRPC's default, not shorter: a busy aggregator answers
// pings late, and declaring it dead then ends every stream of the connection.
#include <chrono>

namespace meshprobe {

inline constexpr std::chrono::milliseconds kAgentKeepaliveTime{10'000};
inline constexpr std::chrono::milliseconds kAgentKeepaliveTimeout{20'000};
// The shortest interval between pings the aggregator accepts from a connection it sends
// nothing on: half the agents' interval, so that timer jitter never makes a strike.
inline constexpr std::chrono::milliseconds kServerMinPingInterval{kAgentKeepaliveTime / 2};
static_assert(kServerMinPingInterval < kAgentKeepaliveTime, "the aggregator accepts the agents' pings");

}  // namespace meshprobe
