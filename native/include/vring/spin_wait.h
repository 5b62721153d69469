// Bounded busy-waiting on shared memory, for polling and adaptive notification modes.
#pragma once

#include <cstdint>

#include "vring/split_ring.h"

namespace vring {

uint64_t MonotonicNanos();

// Calls `ready()` until it returns true or `budget_ns` have passed; returns its last result.
// The clock is read only every few dozen checks: a ring check costs ~1 ns, a clock read ~20.
template <typename Ready>
bool SpinUntil(uint64_t budget_ns, Ready&& ready) {
  if (ready()) return true;
  if (budget_ns == 0) return false;
  const uint64_t deadline = MonotonicNanos() + budget_ns;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      CpuRelax();
      if (ready()) return true;
    }
    if (MonotonicNanos() >= deadline) return ready();
  }
}

}  // namespace vring
