#pragma once

#include <cstdint>

namespace vring {

// Counters of one queue pair end, for observability and for tests of the notification
// policy (how many wakeups a run cost).
struct PortStats {
  uint64_t messages_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
  uint64_t notifications_sent = 0;  // eventfd writes (kicks or calls) we issued
  uint64_t dropped = 0;             // messages that could not be delivered (non-mergeable, too big)
};

}  // namespace vring
