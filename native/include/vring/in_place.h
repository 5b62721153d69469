// Messages read where they lie and written where they will be read: the types both ends
// of a queue pair share for it. What an "area" is differs by end: the driver lends its own
// receive buffers (area 0) and transmit buffers (area 1); the device lends each region of
// the driver's memory it mapped (area i = region i of its memory table).
#pragma once

#include <cstdint>
#include <memory>

#include "vring/shared_region.h"

namespace vring {

// A stretch of shared memory JavaScript may read (and, for transmit areas, write) in place.
// The mapping is held for as long as anything still points into it.
struct LentArea {
  uint8_t* data = nullptr;
  uint64_t size = 0;
  std::shared_ptr<Mapping> mapping;
};

// `area` of a message copied into the caller's scratch buffer instead (offset into it).
inline constexpr uint32_t kInScratch = 0xffffffffu;

// Where a received message lies.
struct MessageLocation {
  uint32_t area = kInScratch;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Room in a transmit area to write the next message's payload into.
struct SendReservation {
  uint32_t area = 0;
  uint64_t offset = 0;    // where the payload starts
  uint64_t capacity = 0;  // payload bytes that fit
};

}  // namespace vring
