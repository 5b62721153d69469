// The device side's view of the driver's memory: which driver addresses map to which
// bytes of ours. Every translation checks that the whole range lies inside one region.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "vring/shared_region.h"

namespace vring {

struct MemoryRegion {
  uint64_t guest_phys_addr;  // address space used inside descriptors
  uint64_t user_addr;        // address space used for ring addresses (vhost-user UVA)
  uint64_t size;
  uint8_t* host;             // where the region's first byte is mapped here
};

class MemoryTable {
 public:
  // The memory slots a vhost-user back-end of ours announces (GET_MAX_MEM_SLOTS): a
  // SET_MEM_TABLE carries at most 8 regions, ADD_MEM_REG adds up to this many.
  static constexpr size_t kMaxRegions = 32;

  // Adds a region backed by `mapping` (kept alive by the table). Rejects overlap in either
  // address space, address-range overflow, and a size larger than the mapping.
  void Add(uint64_t guest_phys_addr, uint64_t user_addr, uint64_t size, std::shared_ptr<Mapping> mapping);

  // Host pointer for [addr, addr+len) in descriptor address space, or nullptr when the range
  // is empty or not wholly inside one region.
  uint8_t* TranslateGuest(uint64_t addr, uint64_t len) const {
    if (len == 0) return nullptr;
    for (const auto& r : regions_) {
      if (addr >= r.guest_phys_addr && len <= r.size && addr - r.guest_phys_addr <= r.size - len) {
        return r.host + (addr - r.guest_phys_addr);
      }
    }
    return nullptr;
  }

  // Same, in ring (user) address space.
  uint8_t* TranslateUser(uint64_t addr, uint64_t len) const {
    if (len == 0) return nullptr;
    for (const auto& r : regions_) {
      if (addr >= r.user_addr && len <= r.size && addr - r.user_addr <= r.size - len) {
        return r.host + (addr - r.user_addr);
      }
    }
    return nullptr;
  }

  size_t region_count() const { return regions_.size(); }
  const MemoryRegion& region(size_t i) const { return regions_[i]; }
  const std::shared_ptr<Mapping>& mapping(size_t i) const { return mappings_[i]; }

  // Which region holds the host range [p, p+len) and where in it; false if none does.
  bool Locate(const uint8_t* p, uint64_t len, uint32_t* index, uint64_t* offset) const {
    for (size_t i = 0; i < regions_.size(); ++i) {
      const MemoryRegion& r = regions_[i];
      if (p >= r.host && len <= r.size && static_cast<uint64_t>(p - r.host) <= r.size - len) {
        *index = static_cast<uint32_t>(i);
        *offset = static_cast<uint64_t>(p - r.host);
        return true;
      }
    }
    return false;
  }

 private:
  std::vector<MemoryRegion> regions_;
  std::vector<std::shared_ptr<Mapping>> mappings_;
};

}  // namespace vring
