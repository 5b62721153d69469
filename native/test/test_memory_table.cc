// MemoryTable: which driver addresses map to which bytes here. Regions are checked when
// added (overlap, wrap-around, size against the mapping, at most 8), and every
// translation requires the whole range [addr, addr+len) to lie inside one region.
#include <cstdint>
#include <memory>

#include "harness.h"
#include "ring_fixture.h"
#include "vring/error.h"
#include "vring/memory_table.h"
#include "vring/shared_region.h"

using namespace vring;

namespace {

constexpr uint64_t kMaxU64 = ~uint64_t{0};

// A fresh memfd mapping of `size` bytes (between guard pages: a translation that let a
// range run past the end would fault when the test touches it).
struct Backing {
  SharedRegion region;
  std::shared_ptr<Mapping> mapping;
  explicit Backing(uint64_t size)
      : region(SharedRegion::Create(size, "memory-table-test")),
        mapping(ringtest::GuardedMap(region.fd(), region.size())) {}
  uint64_t size() const { return mapping->size(); }
  uint8_t* host() const { return mapping->data(); }
};

uint64_t Page() { return ringtest::Page(); }

}  // namespace

TEST(memory_table_starts_empty_and_translates_nothing) {
  MemoryTable t;
  EXPECT_EQ(t.region_count(), 0u);
  EXPECT(t.TranslateGuest(0, 1) == nullptr);
  EXPECT(t.TranslateUser(0x1000, 16) == nullptr);
}

TEST(memory_table_translates_guest_and_user_addresses_to_the_same_host_bytes) {
  Backing b(4 * Page());
  MemoryTable t;
  const uint64_t gpa = 0x100000000ull, uva = 0x7f0000000000ull;
  t.Add(gpa, uva, b.size(), b.mapping);
  EXPECT_EQ(t.region_count(), 1u);
  EXPECT(t.TranslateGuest(gpa, 1) == b.host());
  EXPECT(t.TranslateUser(uva, 1) == b.host());
  EXPECT(t.TranslateGuest(gpa + 100, 28) == b.host() + 100);
  EXPECT(t.TranslateUser(uva + 100, 28) == b.host() + 100);
  // The whole region in one range, and the very last byte alone.
  EXPECT(t.TranslateGuest(gpa, b.size()) == b.host());
  EXPECT(t.TranslateGuest(gpa + b.size() - 1, 1) == b.host() + b.size() - 1);
  EXPECT(t.TranslateUser(uva + b.size() - 1, 1) == b.host() + b.size() - 1);
  // The bytes really are the same memory through either space.
  uint8_t* p = t.TranslateGuest(gpa + b.size() - 1, 1);
  *p = 0x5a;
  EXPECT_EQ(*t.TranslateUser(uva + b.size() - 1, 1), 0x5a);
}

TEST(memory_table_guest_and_user_address_spaces_are_separate) {
  Backing b(Page());
  MemoryTable t;
  const uint64_t gpa = 0x100000000ull, uva = 0x7f0000000000ull;
  t.Add(gpa, uva, b.size(), b.mapping);
  EXPECT(t.TranslateUser(gpa, 1) == nullptr);
  EXPECT(t.TranslateGuest(uva, 1) == nullptr);
}

TEST(memory_table_rejects_a_range_straddling_the_region_end) {
  Backing b(2 * Page());
  MemoryTable t;
  const uint64_t gpa = 0x200000ull, uva = 0x900000ull;
  t.Add(gpa, uva, b.size(), b.mapping);
  const uint64_t end_g = gpa + b.size(), end_u = uva + b.size();
  EXPECT(t.TranslateGuest(end_g - 8, 9) == nullptr);
  EXPECT(t.TranslateUser(end_u - 8, 9) == nullptr);
  EXPECT(t.TranslateGuest(gpa, b.size() + 1) == nullptr);
  EXPECT(t.TranslateUser(uva, b.size() + 1) == nullptr);
  // One byte past the end, and far past it.
  EXPECT(t.TranslateGuest(end_g, 1) == nullptr);
  EXPECT(t.TranslateUser(end_u, 1) == nullptr);
  EXPECT(t.TranslateGuest(end_g + Page(), 16) == nullptr);
  // The longest range that still fits is accepted.
  EXPECT(t.TranslateGuest(end_g - 8, 8) == b.host() + b.size() - 8);
  EXPECT(t.TranslateUser(end_u - 8, 8) == b.host() + b.size() - 8);
}

TEST(memory_table_rejects_an_address_before_the_first_region) {
  Backing b(Page());
  MemoryTable t;
  const uint64_t gpa = 0x200000ull, uva = 0x900000ull;
  t.Add(gpa, uva, b.size(), b.mapping);
  EXPECT(t.TranslateGuest(gpa - 1, 1) == nullptr);
  EXPECT(t.TranslateGuest(gpa - 1, 2) == nullptr);  // starts before, ends inside
  EXPECT(t.TranslateUser(uva - 1, 2) == nullptr);
  EXPECT(t.TranslateGuest(0, 1) == nullptr);
  EXPECT(t.TranslateUser(0, 1) == nullptr);
}

TEST(memory_table_rejects_zero_length_ranges) {
  // A zero-length range names no bytes; translating it would hand out a pointer that
  // nothing checked (CVE-2020-10725 is a zero-length descriptor with a bogus address).
  Backing b(Page());
  MemoryTable t;
  const uint64_t gpa = 0x200000ull, uva = 0x900000ull;
  t.Add(gpa, uva, b.size(), b.mapping);
  EXPECT(t.TranslateGuest(gpa, 0) == nullptr);
  EXPECT(t.TranslateUser(uva, 0) == nullptr);
  EXPECT(t.TranslateGuest(gpa + b.size(), 0) == nullptr);
  EXPECT(t.TranslateGuest(kMaxU64, 0) == nullptr);
}

TEST(memory_table_rejects_ranges_whose_end_overflows_u64) {
  Backing b(Page());
  MemoryTable t;
  const uint64_t gpa = 0x200000ull, uva = 0x900000ull;
  t.Add(gpa, uva, b.size(), b.mapping);
  // addr + len wraps to a small number that would land inside the region.
  EXPECT(t.TranslateGuest(gpa + 16, kMaxU64) == nullptr);
  EXPECT(t.TranslateGuest(gpa + 16, kMaxU64 - 15) == nullptr);
  EXPECT(t.TranslateUser(uva + 16, kMaxU64 - 15) == nullptr);
  EXPECT(t.TranslateGuest(kMaxU64 - 7, 16) == nullptr);
  EXPECT(t.TranslateUser(kMaxU64, 1) == nullptr);
  EXPECT(t.TranslateGuest(kMaxU64, kMaxU64) == nullptr);
}

TEST(memory_table_region_near_the_top_of_the_address_space_translates_its_last_byte) {
  Backing b(Page());
  MemoryTable t;
  const uint64_t gpa = kMaxU64 - b.size();  // last byte at 2^64 - 2, end at 2^64 - 1
  t.Add(gpa, 0x900000ull, b.size(), b.mapping);
  EXPECT(t.TranslateGuest(kMaxU64 - 1, 1) == b.host() + b.size() - 1);
  EXPECT(t.TranslateGuest(gpa, b.size()) == b.host());
  EXPECT(t.TranslateGuest(kMaxU64 - 1, 2) == nullptr);
  EXPECT(t.TranslateGuest(kMaxU64, 1) == nullptr);
  EXPECT(t.TranslateGuest(gpa - 1, 1) == nullptr);
}

TEST(memory_table_range_spanning_two_adjacent_regions_is_rejected) {
  // Contiguous in guest space but two regions with unrelated host memory: a range must
  // lie inside one region, or the host pointer would run off the first mapping.
  Backing a(Page()), b(Page());
  MemoryTable t;
  const uint64_t gpa = 0x200000ull, uva = 0x900000ull;
  t.Add(gpa, uva, a.size(), a.mapping);
  t.Add(gpa + a.size(), uva + a.size(), b.size(), b.mapping);
  EXPECT_EQ(t.region_count(), 2u);
  EXPECT(t.TranslateGuest(gpa + a.size() - 8, 16) == nullptr);
  EXPECT(t.TranslateUser(uva + a.size() - 8, 16) == nullptr);
  // Each side alone translates into its own mapping.
  EXPECT(t.TranslateGuest(gpa + a.size() - 8, 8) == a.host() + a.size() - 8);
  EXPECT(t.TranslateGuest(gpa + a.size(), 8) == b.host());
  EXPECT(t.TranslateUser(uva + a.size() + 8, 8) == b.host() + 8);
}

TEST(memory_table_translates_into_the_right_region_of_several) {
  Backing a(Page()), b(2 * Page()), c(Page());
  MemoryTable t;
  t.Add(0x10000000ull, 0x50000000ull, a.size(), a.mapping);
  t.Add(0x30000000ull, 0x10000000ull, b.size(), b.mapping);  // user order differs from guest order
  t.Add(0x20000000ull, 0x70000000ull, c.size(), c.mapping);
  EXPECT(t.TranslateGuest(0x10000010ull, 4) == a.host() + 0x10);
  EXPECT(t.TranslateGuest(0x30000000ull + Page(), 4) == b.host() + Page());
  EXPECT(t.TranslateGuest(0x20000020ull, 4) == c.host() + 0x20);
  EXPECT(t.TranslateUser(0x50000010ull, 4) == a.host() + 0x10);
  EXPECT(t.TranslateUser(0x10000000ull + Page(), 4) == b.host() + Page());
  EXPECT(t.TranslateUser(0x70000020ull, 4) == c.host() + 0x20);
  // A gap between regions belongs to none of them.
  EXPECT(t.TranslateGuest(0x10000000ull + a.size(), 1) == nullptr);
  EXPECT(t.TranslateUser(0x60000000ull, 1) == nullptr);
}

TEST(memory_table_region_may_cover_part_of_its_mapping) {
  Backing b(4 * Page());
  MemoryTable t;
  t.Add(0x200000ull, 0x900000ull, Page(), b.mapping);
  EXPECT(t.TranslateGuest(0x200000ull + Page() - 1, 1) == b.host() + Page() - 1);
  EXPECT(t.TranslateGuest(0x200000ull + Page(), 1) == nullptr);  // mapped here, but not in the region
}

TEST(memory_table_rejects_overlapping_guest_ranges) {
  Backing a(2 * Page()), b(2 * Page());
  MemoryTable t;
  t.Add(0x200000ull, 0x900000ull, a.size(), a.mapping);
  // Overlap at the end, at the start, fully inside, fully around, and identical.
  EXPECT_THROWS_CODE(t.Add(0x200000ull + a.size() - 1, 0x1900000ull, b.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x200000ull - b.size() + 1, 0x1900000ull, b.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x200000ull + 16, 0x1900000ull, 32, b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x200000ull - 16, 0x1900000ull, a.size() + 32, b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x200000ull, 0x1900000ull, a.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_EQ(t.region_count(), 1u);
  // Touching is not overlapping.
  t.Add(0x200000ull + a.size(), 0x1900000ull, b.size(), b.mapping);
  EXPECT_EQ(t.region_count(), 2u);
}

TEST(memory_table_rejects_overlapping_user_ranges_even_when_guest_ranges_are_disjoint) {
  Backing a(2 * Page()), b(2 * Page());
  MemoryTable t;
  t.Add(0x200000ull, 0x900000ull, a.size(), a.mapping);
  EXPECT_THROWS_CODE(t.Add(0x5000000ull, 0x900000ull + Page(), b.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x5000000ull, 0x900000ull - Page(), b.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_EQ(t.region_count(), 1u);
  t.Add(0x5000000ull, 0x900000ull - b.size(), b.size(), b.mapping);
  EXPECT_EQ(t.region_count(), 2u);
}

TEST(memory_table_rejects_a_region_past_the_last_slot) {
  Backing b(Page());
  MemoryTable t;
  for (uint64_t i = 0; i < MemoryTable::kMaxRegions; ++i) {
    t.Add(0x1000000ull * (i + 1), 0x80000000ull + 0x1000000ull * i, b.size(), b.mapping);
  }
  EXPECT_EQ(t.region_count(), 32u);
  EXPECT_THROWS_CODE(t.Add(0x40000000ull, 0x40000000ull, b.size(), b.mapping), ErrorCode::kInvalidArgument);
  EXPECT_EQ(t.region_count(), 32u);
  // The regions that were accepted still translate, the last one too.
  EXPECT(t.TranslateGuest(0x8000000ull, 1) == b.host());
  EXPECT(t.TranslateUser(0x87000000ull, 1) == b.host());
  EXPECT(t.TranslateGuest(0x20000000ull, 1) == b.host());
}

TEST(memory_table_rejects_a_region_larger_than_its_mapping) {
  Backing b(Page());
  MemoryTable t;
  EXPECT_THROWS_CODE(t.Add(0x200000ull, 0x900000ull, b.size() + 1, b.mapping), ErrorCode::kRegionBounds);
  EXPECT_EQ(t.region_count(), 0u);
}

TEST(memory_table_rejects_zero_size_and_missing_mapping) {
  Backing b(Page());
  MemoryTable t;
  EXPECT_THROWS_CODE(t.Add(0x200000ull, 0x900000ull, 0, b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x200000ull, 0x900000ull, Page(), nullptr), ErrorCode::kRegionBounds);
  EXPECT_EQ(t.region_count(), 0u);
}

TEST(memory_table_rejects_regions_that_wrap_around_2_pow_64) {
  Backing b(2 * Page());
  MemoryTable t;
  EXPECT_THROWS_CODE(t.Add(kMaxU64 - Page() + 1, 0x900000ull, b.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_THROWS_CODE(t.Add(0x200000ull, kMaxU64 - Page() + 1, b.size(), b.mapping), ErrorCode::kRegionBounds);
  // A region ending exactly at 2^64 has no representable end address either.
  EXPECT_THROWS_CODE(t.Add(kMaxU64 - b.size() + 1, 0x900000ull, b.size(), b.mapping), ErrorCode::kRegionBounds);
  EXPECT_EQ(t.region_count(), 0u);
}

TEST(memory_table_keeps_its_mappings_alive) {
  MemoryTable t;
  uint8_t* host = nullptr;
  {
    Backing b(Page());
    host = b.host();
    t.Add(0x200000ull, 0x900000ull, b.size(), b.mapping);
  }
  // The Backing is gone; the table's reference keeps the memory mapped.
  uint8_t* p = t.TranslateGuest(0x200000ull + 64, 8);
  EXPECT(p == host + 64);
  p[0] = 1;
  p[7] = 2;
  EXPECT_EQ(p[0] + p[7], 3);
}
