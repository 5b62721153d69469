#include "vring/spin_wait.h"

#include <sched.h>
#include <time.h>

namespace vring {

uint64_t MonotonicNanos() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void YieldCpu() { ::sched_yield(); }

}  // namespace vring
