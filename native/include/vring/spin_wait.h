// Bounded busy-waiting on shared memory, for polling and adaptive notification modes.
#pragma once

#include <cstdint>

#include "vring/split_ring.h"

namespace vring {

uint64_t MonotonicNanos();

// Gives the CPU to another runnable thread of this core, if there is one (sched_yield).
void YieldCpu();

// A spin that has waited this long without success yields the CPU (YieldCpu) this often.
inline constexpr uint64_t kSpinYieldNs = 20000;

// Calls `ready()` until it returns true or `budget_ns` have passed; returns its last result.
// The clock is read only every few dozen checks: a ring check costs ~1 ns, a clock read ~20.
//
// A wait longer than kSpinYieldNs yields the CPU every kSpinYieldNs. Alone on its core that
// costs one cheap system call per 20 µs and changes nothing. On a shared core it is what keeps
// polling from being slower than sleeping: a spinner never sleeps, so without it the scheduler
// charges every microsecond of spinning to its fair share and then runs the other task in
// the middle of our next burst of work (while the peer waits), instead of while we were idle.
template <typename Ready>
bool SpinUntil(uint64_t budget_ns, Ready&& ready) {
  if (ready()) return true;
  if (budget_ns == 0) return false;
  const uint64_t start = MonotonicNanos();
  const uint64_t deadline = start + budget_ns;
  uint64_t next_yield = start + kSpinYieldNs;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      CpuRelax();
      if (ready()) return true;
    }
    const uint64_t now = MonotonicNanos();
    if (now >= deadline) return ready();
    if (now >= next_yield) {
      YieldCpu();
      next_yield = now + kSpinYieldNs;
    }
  }
}

}  // namespace vring
