// Split ring layout, the event-index arithmetic, and the queue pair layout rules.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "harness.h"
#include "vring/error.h"
#include "vring/queue_pair_layout.h"
#include "vring/split_ring.h"

using namespace vring;

namespace {

// The definition from the spec, written independently: has event_idx been crossed going
// from old to new, i.e. is event_idx in the half-open window [old, new) modulo 2^16?
bool InWindow(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  for (uint16_t i = old_idx; i != new_idx; ++i) {
    if (i == event_idx) return true;
  }
  return false;
}

}  // namespace

TEST(split_ring_structure_sizes_match_virtio) {
  EXPECT_EQ(sizeof(RingDesc), 16u);
  EXPECT_EQ(sizeof(UsedElem), 8u);
  EXPECT_EQ(DescTableBytes(1), 16u);
  EXPECT_EQ(DescTableBytes(256), 4096u);
  EXPECT_EQ(AvailRingBytes(256), 518u);
  EXPECT_EQ(UsedRingBytes(256), 2054u);
  EXPECT_EQ(DescTableBytes(32768), 524288u);
  EXPECT_EQ(AvailRingBytes(32768), 65542u);
  EXPECT_EQ(UsedRingBytes(32768), 262150u);
}

TEST(split_ring_view_field_offsets_follow_the_spec) {
  alignas(64) static uint8_t mem[4096];
  SplitRingView v;
  v.size = 8;
  v.desc = mem;
  v.avail = mem + 128;
  v.used = mem + 256;
  auto off = [&](const void* p) { return static_cast<long>(static_cast<const uint8_t*>(p) - mem); };
  EXPECT_EQ(off(v.avail_flags()), 128);
  EXPECT_EQ(off(v.avail_idx()), 130);
  EXPECT_EQ(off(v.avail_ring(0)), 132);
  EXPECT_EQ(off(v.avail_ring(7)), 146);
  EXPECT_EQ(off(v.used_event()), 148);  // avail->ring[Q]
  EXPECT_EQ(off(v.used_flags()), 256);
  EXPECT_EQ(off(v.used_idx()), 258);
  EXPECT_EQ(off(v.used_ring(0)), 260);
  EXPECT_EQ(off(v.used_ring(7)), 316);
  EXPECT_EQ(off(v.avail_event()), 324);  // (le16*)&used->ring[Q]
  EXPECT_EQ(off(v.descs() + 3), 48);
  EXPECT(v.aligned());
  v.desc = mem + 8;  // 8 is not 16-aligned
  EXPECT(!v.aligned());
  v.desc = mem;
  v.avail = mem + 129;
  EXPECT(!v.aligned());
  v.avail = mem + 130;  // 2-aligned is enough
  EXPECT(v.aligned());
  v.used = mem + 258;
  EXPECT(!v.aligned());
  v.used = mem + 260;  // 4-aligned is enough
  EXPECT(v.aligned());
}

TEST(split_ring_desc_load_store_round_trip_fields) {
  RingDesc d{};
  StoreDesc(&d, RingDesc{0x1122334455667788ull, 0xdeadbeef, 0x0007, 0xfffe});
  const RingDesc r = LoadDesc(&d);
  EXPECT_EQ(r.addr, 0x1122334455667788ull);
  EXPECT_EQ(r.len, 0xdeadbeefu);
  EXPECT_EQ(r.flags, 7);
  EXPECT_EQ(r.next, 0xfffe);
  // Little-endian wire layout: addr at 0, len at 8, flags at 12, next at 14.
  const uint8_t* b = reinterpret_cast<const uint8_t*>(&d);
  EXPECT_EQ(b[0], 0x88);
  EXPECT_EQ(b[8], 0xef);
  EXPECT_EQ(b[12], 0x07);
  EXPECT_EQ(b[14], 0xfe);
  EXPECT_EQ(b[15], 0xff);
}

TEST(split_ring_is_valid_queue_size) {
  EXPECT(!IsValidQueueSize(0));
  EXPECT(IsValidQueueSize(1));
  EXPECT(IsValidQueueSize(2));
  EXPECT(!IsValidQueueSize(3));
  EXPECT(!IsValidQueueSize(6));
  EXPECT(IsValidQueueSize(256));
  EXPECT(!IsValidQueueSize(255));
  EXPECT(!IsValidQueueSize(32767));
  EXPECT(IsValidQueueSize(32768));
  EXPECT(!IsValidQueueSize(32769));
  EXPECT(!IsValidQueueSize(65536));
  EXPECT(!IsValidQueueSize(0x80000000u));
  EXPECT(!IsValidQueueSize(0xffffffffu));
  int valid = 0;
  for (uint32_t q = 0; q <= 70000; ++q) valid += IsValidQueueSize(q);
  EXPECT_EQ(valid, 16);  // 2^0 .. 2^15
}

TEST(split_ring_need_event_truth_table) {
  // No movement never needs an event.
  EXPECT(!NeedEvent(5, 5, 5));
  EXPECT(!NeedEvent(4, 5, 5));
  // The event index is in [old, new).
  EXPECT(NeedEvent(0, 1, 0));
  EXPECT(NeedEvent(3, 10, 3));
  EXPECT(NeedEvent(9, 10, 3));
  EXPECT(!NeedEvent(10, 10, 3));  // not reached yet
  EXPECT(!NeedEvent(2, 10, 3));   // already passed before this batch
  // Across the 16-bit wrap.
  EXPECT(NeedEvent(0xfffe, 0x0002, 0xfffe));
  EXPECT(NeedEvent(0xffff, 0x0002, 0xfffe));
  EXPECT(NeedEvent(0x0000, 0x0002, 0xfffe));
  EXPECT(NeedEvent(0x0001, 0x0002, 0xfffe));
  EXPECT(!NeedEvent(0x0002, 0x0002, 0xfffe));
  EXPECT(!NeedEvent(0xfffd, 0x0002, 0xfffe));
  EXPECT(!NeedEvent(0x8000, 0x0002, 0xfffe));
  // A full-window move crosses everything except new itself.
  EXPECT(NeedEvent(0x1234, 0x1233, 0x1234 + 0));
  // Exhaustive over windows near zero and the wrap, against the spec's definition.
  const uint16_t starts[] = {0, 1, 0x7ffe, 0x8000, 0xfff0, 0xfffe, 0xffff};
  for (uint16_t old_idx : starts) {
    for (uint16_t span = 0; span <= 40; ++span) {
      const uint16_t new_idx = static_cast<uint16_t>(old_idx + span);
      for (int d = -45; d <= 45; ++d) {
        const uint16_t ev = static_cast<uint16_t>(old_idx + d);
        if (NeedEvent(ev, new_idx, old_idx) != InWindow(ev, new_idx, old_idx)) {
          throw harness::Failure{"NeedEvent(" + std::to_string(ev) + ", " + std::to_string(new_idx) + ", " +
                                 std::to_string(old_idx) + ") disagrees with the spec"};
        }
      }
    }
  }
}

TEST(queue_pair_layout_rejects_bad_queue_sizes) {
  for (uint32_t q : {0u, 1u, 3u, 100u, 32769u, 65536u, 0x80000000u}) {
    QueuePairConfig c;
    c.queue_size = q;
    c.max_message = 1000;
    EXPECT_THROWS_CODE(ComputeQueuePairLayout(c), ErrorCode::kInvalidArgument);
  }
  QueuePairConfig c;
  c.queue_size = 32768;
  EXPECT(ComputeQueuePairLayout(c).total_bytes > 0);
  c.queue_size = 2;
  c.max_message = 100;
  EXPECT(ComputeQueuePairLayout(c).total_bytes > 0);
}

TEST(queue_pair_layout_rejects_bad_buffer_sizes) {
  for (uint32_t bs : {0u, 8u, 56u, 63u, 65u, 68u, 2049u, (1u << 20) + 8, 0xfffffff8u}) {
    QueuePairConfig c;
    c.buffer_size = bs;
    c.max_message = 100;
    EXPECT_THROWS_CODE(ComputeQueuePairLayout(c), ErrorCode::kInvalidArgument);
  }
  for (uint32_t bs : {64u, 72u, 4096u, 1u << 20}) {
    QueuePairConfig c;
    c.buffer_size = bs;
    c.max_message = 100;
    EXPECT(ComputeQueuePairLayout(c).total_bytes > 0);
  }
}

TEST(queue_pair_layout_rejects_bad_max_message) {
  QueuePairConfig c;
  c.max_message = 0;
  EXPECT_THROWS_CODE(ComputeQueuePairLayout(c), ErrorCode::kInvalidArgument);
  c.queue_size = 32768;
  c.buffer_size = 1u << 20;
  c.max_message = (1u << 30) + 1;
  EXPECT_THROWS_CODE(ComputeQueuePairLayout(c), ErrorCode::kInvalidArgument);
  c.max_message = 1u << 30;
  EXPECT(ComputeQueuePairLayout(c).total_bytes > 0);
}

TEST(queue_pair_layout_rejects_messages_needing_more_buffers_than_the_queue) {
  QueuePairConfig c;
  c.queue_size = 4;
  c.buffer_size = 64;
  c.max_message = 4 * 64 - 12;  // header + payload fill exactly 4 buffers
  EXPECT(ComputeQueuePairLayout(c).total_bytes > 0);
  c.max_message += 1;  // needs a fifth buffer
  EXPECT_THROWS_CODE(ComputeQueuePairLayout(c), ErrorCode::kInvalidArgument);
  // The default config (256 x 2048, 64 KiB) fits.
  EXPECT(ComputeQueuePairLayout(QueuePairConfig{}).total_bytes > 0);
}

TEST(queue_pair_layout_non_mergeable_needs_whole_message_buffers) {
  QueuePairConfig c;
  c.mergeable = false;
  c.buffer_size = 2048;
  c.max_message = 2048 - 12;
  EXPECT(ComputeQueuePairLayout(c).total_bytes > 0);
  c.max_message = 2048 - 11;
  EXPECT_THROWS_CODE(ComputeQueuePairLayout(c), ErrorCode::kInvalidArgument);
}

TEST(buffers_for_message_counts_the_header) {
  EXPECT_EQ(BuffersForMessage(0, 64), 1u);
  EXPECT_EQ(BuffersForMessage(52, 64), 1u);
  EXPECT_EQ(BuffersForMessage(53, 64), 2u);
  EXPECT_EQ(BuffersForMessage(116, 64), 2u);
  EXPECT_EQ(BuffersForMessage(117, 64), 3u);
  EXPECT_EQ(BuffersForMessage(1u << 30, 1u << 20), 1025u);
}

TEST(queue_pair_layout_parts_are_aligned_and_disjoint) {
  const uint32_t sizes[] = {2, 4, 8, 256, 1024, 32768};
  for (uint32_t q : sizes) {
    for (uint32_t bs : {64u, 2048u}) {
      QueuePairConfig c;
      c.queue_size = q;
      c.buffer_size = bs;
      c.max_message = 40;
      const QueuePairLayout l = ComputeQueuePairLayout(c);
      std::vector<std::pair<uint64_t, uint64_t>> parts;  // [begin, end)
      for (const RingAddresses* r : {&l.rx, &l.tx}) {
        EXPECT_EQ(r->desc % 16, 0u);
        EXPECT_EQ(r->avail % 2, 0u);
        EXPECT_EQ(r->used % 4, 0u);
        // Driver-written (desc, avail) and device-written (used) parts start on their own
        // cache lines.
        EXPECT_EQ(r->avail % 64, 0u);
        EXPECT_EQ(r->used % 64, 0u);
        parts.push_back({r->desc, r->desc + DescTableBytes(q)});
        parts.push_back({r->avail, r->avail + AvailRingBytes(q)});
        parts.push_back({r->used, r->used + UsedRingBytes(q)});
      }
      EXPECT_EQ(l.rx_buffers % 64, 0u);
      parts.push_back({l.rx_buffers, l.rx_buffers + uint64_t{q} * bs});
      parts.push_back({l.tx_buffers, l.tx_buffers + uint64_t{q} * bs});
      std::sort(parts.begin(), parts.end());
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        EXPECT(parts[i].second <= parts[i + 1].first);
        // Every part starts on its own cache line: no line holds bytes of two parts.
        EXPECT_EQ(parts[i + 1].first % 64, 0u);
      }
      EXPECT(parts.front().first == 0);
      EXPECT_EQ(parts.back().second, l.total_bytes);
    }
  }
}

TEST(error_carries_reason_and_code) {
  Error e(ErrorCode::kBadRing, "msg", 0, nullptr, "descriptor-loop");
  EXPECT(e.code() == ErrorCode::kBadRing);
  EXPECT(std::string(e.reason()) == "descriptor-loop");
  EXPECT(std::string(e.what()) == "msg");
  EXPECT(std::string(ErrorCodeName(ErrorCode::kBadRing)) == "ERR_VRING_BAD_RING");
  EXPECT(std::string(ErrorCodeName(ErrorCode::kQueueBroken)) == "ERR_VRING_QUEUE_BROKEN");
  Error plain(ErrorCode::kInvalidArgument, "x");
  EXPECT(plain.reason() == nullptr);
}
