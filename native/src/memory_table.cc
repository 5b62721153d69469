#include "vring/memory_table.h"

#include <string>

#include "vring/error.h"

namespace vring {

namespace {

bool Overlaps(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
  // Both ranges are known not to wrap, so end addresses are safe to compute.
  return a < b + b_size && b < a + a_size;
}

}  // namespace

void MemoryTable::Add(uint64_t guest_phys_addr, uint64_t user_addr, uint64_t size,
                      std::shared_ptr<Mapping> mapping) {
  if (regions_.size() >= kMaxRegions) {
    throw Error(ErrorCode::kInvalidArgument, "a memory table holds at most 8 regions");
  }
  if (!mapping || size == 0 || size > mapping->size()) {
    throw Error(ErrorCode::kRegionBounds, "region size " + std::to_string(size) + " is zero or exceeds its mapping");
  }
  if (guest_phys_addr + size < guest_phys_addr || user_addr + size < user_addr) {
    throw Error(ErrorCode::kRegionBounds, "region address range wraps around 2^64");
  }
  for (const auto& r : regions_) {
    if (Overlaps(guest_phys_addr, size, r.guest_phys_addr, r.size) || Overlaps(user_addr, size, r.user_addr, r.size)) {
      throw Error(ErrorCode::kRegionBounds, "memory regions overlap");
    }
  }
  regions_.push_back({guest_phys_addr, user_addr, size, mapping->data()});
  mappings_.push_back(std::move(mapping));
}

}  // namespace vring
