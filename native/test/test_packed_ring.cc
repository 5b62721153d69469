// Packed virtqueues: layout, wrap counters, chains, indirect tables, event suppression,
// and many laps of traffic between our driver and our device.
#include <cstring>
#include <vector>

#include "packed_ring_fixture.h"

using namespace vring;
using ringtest::PackedRingFixture;

namespace {

void Fill(uint8_t* p, uint32_t len, uint32_t seed) {
  for (uint32_t i = 0; i < len; ++i) p[i] = static_cast<uint8_t>(seed * 131 + i * 7 + 1);
}

bool Matches(const uint8_t* p, uint32_t len, uint32_t seed) {
  for (uint32_t i = 0; i < len; ++i) {
    if (p[i] != static_cast<uint8_t>(seed * 131 + i * 7 + 1)) return false;
  }
  return true;
}

// The definition written independently: walking position by position (with wrap
// counters) from old to new, is the event position among those passed?
bool EventPassed(RingPosition event, RingPosition old_pos, RingPosition new_pos, uint32_t size) {
  for (RingPosition p = old_pos; p != new_pos; p.Advance(1, size)) {
    if (p == event) return true;
  }
  return false;
}

}  // namespace

TEST(packed_ring_structures_match_virtio) {
  EXPECT_EQ(sizeof(PackedDesc), 16u);
  EXPECT_EQ(offsetof(PackedDesc, addr), 0u);
  EXPECT_EQ(offsetof(PackedDesc, len), 8u);
  EXPECT_EQ(offsetof(PackedDesc, id), 12u);
  EXPECT_EQ(offsetof(PackedDesc, flags), 14u);
  EXPECT_EQ(sizeof(EventSuppress), 4u);
  EXPECT_EQ(offsetof(EventSuppress, flags), 2u);
  EXPECT_EQ(kPackedDescFlagAvail, 0x80);
  EXPECT_EQ(kPackedDescFlagUsed, 0x8000);
  EXPECT(IsValidPackedQueueSize(1) && IsValidPackedQueueSize(3) && IsValidPackedQueueSize(32768));
  EXPECT(!IsValidPackedQueueSize(0) && !IsValidPackedQueueSize(32769));
}

TEST(packed_ring_availability_bits_depend_on_the_wrap_counter) {
  for (bool w : {false, true}) {
    EXPECT(IsAvailable(AvailBits(w), w));
    EXPECT(!IsUsed(AvailBits(w), w));
    EXPECT(IsUsed(UsedBits(w), w));
    EXPECT(!IsAvailable(UsedBits(w), w));
    // What belongs to the other lap is neither.
    EXPECT(!IsAvailable(AvailBits(!w), w));
    EXPECT(!IsUsed(UsedBits(!w), w));
  }
  EXPECT(!IsAvailable(0, true) && !IsUsed(0, true));  // a zeroed ring holds nothing
}

TEST(packed_ring_position_wraps_and_encodes_as_a_vhost_user_ring_base) {
  RingPosition p;
  EXPECT_EQ(p.Encoded(), 0x8000);  // a fresh ring: slot 0, wrap counter 1
  p.Advance(5, 6);
  EXPECT_EQ(p.Encoded(), 0x8005);
  p.Advance(2, 6);
  EXPECT_EQ(p.index, 1);
  EXPECT(!p.wrap);
  EXPECT_EQ(p.Encoded(), 0x0001);
  p.Retreat(2, 6);
  EXPECT_EQ(p.Encoded(), 0x8005);
  p.Advance(6, 6);  // a whole lap flips the counter only
  EXPECT_EQ(p.Encoded(), 0x0005);
  EXPECT(RingPosition::Decode(0x803c) == (RingPosition{0x3c, true}));
  EXPECT(RingPosition::Decode(0x0070) == (RingPosition{0x70, false}));
}

TEST(packed_need_event_matches_a_walk_over_positions_including_wrap_counters) {
  for (uint32_t size : {1u, 3u, 4u, 5u}) {
    const uint32_t laps2 = 2 * size;
    for (uint32_t o = 0; o < laps2; ++o) {
      for (uint32_t moved = 0; moved <= size; ++moved) {
        for (uint32_t e = 0; e < laps2; ++e) {
          RingPosition old_pos, event;
          old_pos.Advance(0, size);
          for (uint32_t i = 0; i < o; ++i) old_pos.Advance(1, size);
          for (uint32_t i = 0; i < e; ++i) event.Advance(1, size);
          RingPosition new_pos = old_pos;
          new_pos.Advance(moved, size);
          EXPECT_EQ(PackedNeedEvent(event.Encoded(), new_pos.Linear(size), old_pos.Linear(size), size),
                    EventPassed(event, old_pos, new_pos, size));
        }
      }
    }
  }
}

TEST(packed_chain_round_trip_delivers_exact_bytes_and_used_length) {
  for (bool evidx : {false, true}) {
    PackedRingFixture f(8, evidx);
    const int id = f.driver->AddChain(3, [&](uint32_t i, uint16_t) {
      if (i < 2) Fill(f.H(i * 64), 64, 10 + i);
      return ChainBuffer{f.G(i * 64), 64, i == 2};
    });
    EXPECT_EQ(id, 0);
    EXPECT_EQ(f.driver->num_free(), 5u);
    EXPECT_EQ(f.device->AvailPending(), 0u);  // nothing before Publish
    f.driver->Publish();
    EXPECT_EQ(f.driver->outstanding(), 1u);
    EXPECT_EQ(f.device->AvailPending(), 3u);
    // The driver wrote the chain in ring order with its wrap counter (1) in the AVAIL bit.
    EXPECT_EQ(f.Desc(0).flags, kPackedDescFlagAvail | kDescFlagNext);
    EXPECT_EQ(f.Desc(2).flags, kPackedDescFlagAvail | kDescFlagWrite);
    EXPECT_EQ(f.Desc(2).id, 0);

    Chain c;
    EXPECT(f.device->Pop(&c));
    EXPECT_EQ(c.head, 0);
    EXPECT_EQ(c.segments.size(), 3u);
    EXPECT_EQ(c.num_readable, 2u);
    EXPECT_EQ(c.readable_bytes, 128u);
    EXPECT_EQ(c.writable_bytes, 64u);
    EXPECT(Matches(c.segments[0].data, 64, 10));
    EXPECT(Matches(c.segments[1].data, 64, 11));
    EXPECT(!f.device->Pop(&c));

    Fill(c.segments[2].data, 40, 99);
    f.device->PushUsed(c.head, 40);
    EXPECT_EQ(f.driver->UsedPending(), 0u);  // nothing before PublishUsed
    f.device->PublishUsed();
    EXPECT_EQ(f.Desc(0).flags, kPackedDescFlagAvail | kPackedDescFlagUsed);  // one used descriptor per chain

    UsedChain u;
    EXPECT(f.driver->PopUsed(&u));
    EXPECT_EQ(u.head, 0);
    EXPECT_EQ(u.len, 40u);
    EXPECT_EQ(u.chain_len, 3u);
    EXPECT(Matches(f.H(128), 40, 99));
    EXPECT_EQ(f.driver->num_free(), 8u);
    EXPECT_EQ(f.driver->outstanding(), 0u);
    EXPECT(!f.driver->PopUsed(&u));
    // Both sides moved three slots on.
    EXPECT_EQ(f.driver->avail_idx(), 0x8003);
    EXPECT_EQ(f.driver->last_used_idx(), 0x8003);
    EXPECT_EQ(f.device->last_avail_idx(), 0x8003);
  }
}

TEST(packed_out_of_order_completion_frees_slots_and_ids) {
  PackedRingFixture f(4, true);
  const int a = f.AddChain(1, 1, 64);
  const int b = f.AddChain(2, 1, 64);
  const int c = f.AddChain(1, 0, 64);
  EXPECT(a >= 0 && b >= 0 && c >= 0 && a != b && b != c && a != c);
  EXPECT_EQ(f.driver->num_free(), 0u);
  EXPECT_EQ(f.driver->next_free(), -1);
  f.driver->Publish();
  Chain ca, cb, cc;
  EXPECT(f.device->Pop(&ca) && f.device->Pop(&cb) && f.device->Pop(&cc));
  EXPECT_EQ(ca.head, a);
  EXPECT_EQ(cb.head, b);
  EXPECT_EQ(cc.head, c);
  // Returned last first: the used descriptors fill slots 0, 1 (then skip the second slot
  // of b's chain) in the order the device returns them.
  f.device->PushUsed(cc.head, 64);
  f.device->PushUsed(cb.head, 64);
  f.device->PushUsed(ca.head, 0);
  f.device->PublishUsed();
  EXPECT_EQ(f.Desc(0).id, c);
  EXPECT_EQ(f.Desc(1).id, b);
  EXPECT_EQ(f.Desc(3).id, a);
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u) && u.head == c && u.chain_len == 1);
  EXPECT(f.driver->PopUsed(&u) && u.head == b && u.chain_len == 2);
  EXPECT(f.driver->PopUsed(&u) && u.head == a && u.len == 0);
  EXPECT_EQ(f.driver->num_free(), 4u);
  // The next lap starts with wrap counter 0.
  EXPECT_EQ(f.driver->avail_idx(), 0x0000);
  EXPECT(f.AddChain(4, 0, 64) >= 0);
  f.driver->Publish();
  EXPECT_EQ(f.Desc(0).flags & (kPackedDescFlagAvail | kPackedDescFlagUsed), kPackedDescFlagUsed);
  EXPECT(f.device->Pop(&ca));
  EXPECT_EQ(ca.segments.size(), 4u);
}

TEST(packed_chain_of_exactly_queue_size_descriptors_is_accepted) {
  PackedRingFixture f(16, false);
  EXPECT(f.AddChain(16, 8, 64) >= 0);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.segments.size(), 16u);
  EXPECT_EQ(c.num_readable, 8u);
  f.device->PushUsed(c.head, 8 * 64);
  f.device->PublishUsed();
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u) && u.len == 8 * 64 && u.chain_len == 16);
}

TEST(packed_indirect_table_is_used_whole_and_in_order) {
  PackedRingFixture f(4, false, false);
  PackedDesc* table = reinterpret_cast<PackedDesc*>(f.H(4096));
  StorePackedDescBody(&table[0], f.G(0), 32, 0);
  table[0].flags = 0;
  StorePackedDescBody(&table[1], f.G(64), 48, 0);
  table[1].flags = kDescFlagNext;  // ignored: a packed indirect table has no links
  StorePackedDescBody(&table[2], f.G(128), 100, 0);
  table[2].flags = kDescFlagWrite;
  f.OfferAt(0, true, f.G(4096), 3 * 16, 2, kDescFlagIndirect);
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.head, 2);
  EXPECT_EQ(c.segments.size(), 3u);
  EXPECT_EQ(c.num_readable, 2u);
  EXPECT(c.segments[1].data == f.H(64));
  EXPECT_EQ(c.writable_bytes, 100u);
  // The indirect chain takes one slot of the ring.
  EXPECT_EQ(f.device->last_avail_idx(), 0x8001);
}

TEST(packed_device_starts_at_its_ring_base) {
  PackedRingFixture f(4, false, false, /*device_base=*/0x0002);  // slot 2 of a lap with wrap counter 0
  f.OfferAt(2, false, f.G(0), 64, 3, kDescFlagWrite);
  f.OfferAt(3, false, f.G(64), 64, 1, kDescFlagWrite);
  f.OfferAt(0, true, f.G(128), 64, 0, kDescFlagWrite);  // the slot after the last flips the counter
  EXPECT_EQ(f.device->AvailPending(), 3u);
  Chain c;
  EXPECT(f.device->Pop(&c) && c.head == 3);
  EXPECT(f.device->Pop(&c) && c.head == 1);
  EXPECT(f.device->Pop(&c) && c.head == 0);
  EXPECT_EQ(f.device->last_avail_idx(), 0x8001);
  f.device->PushUsed(3, 1);
  f.device->PushUsed(1, 2);
  f.device->PushUsed(0, 3);
  f.device->PublishUsed();
  EXPECT_EQ(f.Desc(2).flags, 0);  // used in a lap with wrap counter 0: both bits clear
  EXPECT_EQ(f.Desc(3).len, 2u);
  EXPECT_EQ(f.Desc(0).flags, kPackedDescFlagAvail | kPackedDescFlagUsed);
}

TEST(packed_device_rejects_a_ring_base_outside_the_queue) {
  PackedRingFixture f(4, false, false);
  EXPECT_THROWS_CODE(PackedDeviceQueue(f.view, f.memory.get(), false, 0x8004), ErrorCode::kInvalidArgument);
}

TEST(packed_unpop_puts_chains_back_for_the_next_pop) {
  PackedRingFixture f(8, true);
  f.AddChain(2, 1, 64);
  f.AddChain(1, 0, 64);
  f.AddChain(1, 0, 64);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c));
  const uint16_t first = c.head;
  EXPECT(f.device->Pop(&c) && f.device->Pop(&c));
  f.device->Unpop(2);
  EXPECT_EQ(f.device->last_avail_idx(), 0x8002);
  EXPECT_EQ(f.device->AvailPending(), 2u);
  EXPECT(f.device->Pop(&c) && f.device->Pop(&c) && !f.device->Pop(&c));
  f.device->Unpop(3);
  EXPECT_EQ(f.device->last_avail_idx(), 0x8000);
  EXPECT(f.device->Pop(&c) && c.head == first && c.segments.size() == 2);
}

TEST(packed_queues_accept_sizes_that_are_not_powers_of_two) {
  for (uint32_t q : {3u, 5u, 100u, 32768u}) {
    PackedRingFixture f(q, true);
    EXPECT_EQ(f.driver->size(), q);
    EXPECT_EQ(f.device->size(), q);
  }
}

TEST(packed_queues_reject_missing_or_misaligned_parts_and_bad_sizes) {
  PackedRingFixture f(4, false);
  PackedRingView v = f.view;
  v.size = 0;
  EXPECT_THROWS_CODE(PackedDriverQueue(v, false), ErrorCode::kInvalidArgument);
  v = f.view;
  v.size = 32769;
  EXPECT_THROWS_CODE(PackedDeviceQueue(v, f.memory.get(), false, 0x8000), ErrorCode::kInvalidArgument);
  v = f.view;
  v.desc += 8;
  EXPECT_THROWS_CODE(PackedDriverQueue(v, false), ErrorCode::kInvalidArgument);
  v = f.view;
  v.driver_event += 2;
  EXPECT_THROWS_CODE(PackedDeviceQueue(v, f.memory.get(), false, 0x8000), ErrorCode::kInvalidArgument);
  v = f.view;
  v.device_event = nullptr;
  EXPECT_THROWS_CODE(PackedDriverQueue(v, false), ErrorCode::kInvalidArgument);
}

TEST(packed_without_event_idx_driver_kicks_unless_device_disables) {
  PackedRingFixture f(8, false);
  f.AddChain(1, 1, 64);
  f.driver->Publish();
  EXPECT(f.driver->NeedKick());
  EXPECT(!f.driver->NeedKick());  // nothing new since
  f.device->DisableNotifications();
  EXPECT_EQ(LoadRelaxed(&f.view.device()->flags), kEventFlagsDisable);
  f.AddChain(1, 1, 64);
  f.driver->Publish();
  EXPECT(!f.driver->NeedKick());
  EXPECT(f.device->EnableNotifications());  // two are already available
  EXPECT_EQ(LoadRelaxed(&f.view.device()->flags), kEventFlagsEnable);
  f.AddChain(1, 1, 64);
  f.driver->Publish();
  EXPECT(f.driver->NeedKick());
}

TEST(packed_without_event_idx_device_calls_unless_driver_disables) {
  PackedRingFixture f(8, false);
  f.AddChain(1, 0, 64);
  f.AddChain(1, 0, 64);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 1);
  f.device->PublishUsed();
  EXPECT(f.device->NeedCall());
  EXPECT(!f.device->NeedCall());
  f.driver->DisableInterrupts();
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 1);
  f.device->PublishUsed();
  EXPECT(!f.device->NeedCall());
  EXPECT(f.driver->EnableInterrupts());  // both are used already
}

TEST(packed_with_event_idx_driver_kicks_only_when_the_device_event_position_is_passed) {
  PackedRingFixture f(8, true);
  // The device asks to be kicked once 3 more descriptors are available: at slot 2.
  EXPECT(!f.device->EnableNotificationsDelayed(3));
  EXPECT_EQ(LoadRelaxed(&f.view.device()->flags), kEventFlagsDesc);
  EXPECT_EQ(LoadRelaxed(&f.view.device()->off_wrap), 0x8002);
  f.AddChain(1, 1, 64);
  f.driver->Publish();
  EXPECT(!f.driver->NeedKick());
  f.AddChain(2, 1, 64);  // slots 1 and 2
  f.driver->Publish();
  EXPECT(f.driver->NeedKick());
  f.AddChain(1, 1, 64);
  f.driver->Publish();
  EXPECT(!f.driver->NeedKick());  // the event position is behind us now
  // DISABLE wins over a stale event position.
  f.device->DisableNotifications();
  EXPECT(f.device->EnableNotificationsDelayed(4));  // four descriptors are available already
}

TEST(packed_with_event_idx_device_calls_only_when_the_driver_event_position_is_passed) {
  PackedRingFixture f(4, true);
  for (int i = 0; i < 4; ++i) f.AddChain(1, 0, 64);
  f.driver->Publish();
  // Notify me when the second used chain is written (slot 1).
  EXPECT(!f.driver->EnableInterruptsDelayed(2));
  EXPECT_EQ(LoadRelaxed(&f.view.driver()->off_wrap), 0x8001);
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 1);
  f.device->PublishUsed();
  EXPECT(!f.device->NeedCall());
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 1);
  f.device->PublishUsed();
  EXPECT(f.device->NeedCall());
  UsedChain u;
  while (f.driver->PopUsed(&u)) {
  }
  // The last two chains: notify at the second of them (slot 3).
  EXPECT(!f.driver->EnableInterruptsDelayed(2));
  EXPECT_EQ(LoadRelaxed(&f.view.driver()->off_wrap), 0x8003);
  for (int i = 0; i < 2; ++i) {
    EXPECT(f.device->Pop(&c));
    f.device->PushUsed(c.head, 1);
    f.device->PublishUsed();
    EXPECT_EQ(f.device->NeedCall(), i == 1);
  }
  while (f.driver->PopUsed(&u)) {
  }
  // Across the lap boundary: the next lap has wrap counter 0.
  for (int i = 0; i < 2; ++i) f.AddChain(1, 0, 64);
  f.driver->Publish();
  EXPECT(!f.driver->EnableInterruptsDelayed(2));
  EXPECT_EQ(LoadRelaxed(&f.view.driver()->off_wrap), 0x0001);
  for (int i = 0; i < 2; ++i) {
    EXPECT(f.device->Pop(&c));
    f.device->PushUsed(c.head, 1);
    f.device->PublishUsed();
    EXPECT_EQ(f.device->NeedCall(), i == 1);
  }
}

namespace {

// Drives `total` chains of 1-3 descriptors through a queue of `q` with out-of-order
// completion and changing notification requests, checking every byte and every decision
// to notify against what was asked for.
void RunManyLaps(uint32_t q, bool evidx, uint32_t total) {
  PackedRingFixture f(q, evidx);
  PackedDriverQueue& drv = *f.driver;
  PackedDeviceQueue& dev = *f.device;
  std::vector<uint32_t> seq_of(q), chain_len(q);
  std::vector<Chain> popped(q);
  uint32_t sent = 0, completed = 0, batch = 0;
  const uint32_t len = 16;
  bool device_wants_kick = true;  // a new device starts with notifications enabled
  while (completed < total) {
    // Driver: add as many chains as fit, each naming its sequence number.
    uint32_t added = 0;
    while (sent < total) {
      const uint32_t n = std::min<uint32_t>(1 + (sent % 3), q);
      if (drv.num_free() < n) break;
      const int id = drv.AddChain(n, [&](uint32_t i, uint16_t bid) {
        const uint64_t at = (uint64_t{bid} * 4 + i) * len;
        if (i == 0) std::memcpy(f.H(at), &sent, 4);
        return ChainBuffer{f.G(at), len, i != 0};
      });
      EXPECT(id >= 0);
      seq_of[id] = sent;
      chain_len[id] = n;
      ++sent;
      ++added;
    }
    drv.Publish();
    EXPECT(added > 0);
    EXPECT_EQ(drv.NeedKick(), device_wants_kick);
    // Device: take everything, answer in an order that changes from batch to batch.
    uint32_t got = 0;
    while (dev.Pop(&popped[got])) ++got;
    EXPECT_EQ(got, added);
    const bool reverse = batch % 2 == 1;
    for (uint32_t k = 0; k < got; ++k) {
      Chain& c = popped[reverse ? got - 1 - k : k];
      uint32_t seq = 0;
      std::memcpy(&seq, c.segments[0].data, 4);
      if (c.segments.size() > 1) {
        const uint32_t answer = ~seq;
        std::memcpy(c.segments[1].data, &answer, 4);
      }
      dev.PushUsed(c.head, c.segments.size() > 1 ? 4 : 0);
    }
    const bool driver_wants_call = batch % 4 != 0;
    if (driver_wants_call) {
      EXPECT(!drv.EnableInterrupts());
    } else {
      drv.DisableInterrupts();
    }
    dev.PublishUsed();
    EXPECT_EQ(dev.NeedCall(), driver_wants_call);
    // The device's wish for the next batch.
    device_wants_kick = batch % 3 != 2;
    if (device_wants_kick) {
      EXPECT(!dev.EnableNotifications());
    } else {
      dev.DisableNotifications();
    }
    // Driver: reap and check the answers.
    UsedChain u;
    uint32_t reaped = 0;
    while (drv.PopUsed(&u)) {
      EXPECT_EQ(u.chain_len, chain_len[u.head]);
      if (u.chain_len > 1) {
        EXPECT_EQ(u.len, 4u);
        uint32_t answer = 0;
        std::memcpy(&answer, f.H((uint64_t{u.head} * 4 + 1) * len), 4);
        EXPECT_EQ(answer, ~seq_of[u.head]);
      } else {
        EXPECT_EQ(u.len, 0u);
      }
      ++reaped;
    }
    EXPECT_EQ(reaped, got);
    EXPECT_EQ(drv.num_free(), q);
    completed += got;
    ++batch;
  }
  EXPECT_EQ(drv.avail_idx(), dev.last_avail_idx());
  EXPECT_EQ(drv.last_used_idx(), drv.avail_idx());
}

}  // namespace

TEST(packed_many_laps_on_a_queue_of_4) {
  RunManyLaps(4, false, 70000);
  RunManyLaps(4, true, 70000);
}

TEST(packed_many_laps_on_a_queue_of_256) {
  RunManyLaps(256, false, 70000);
  RunManyLaps(256, true, 70000);
}

TEST(packed_many_laps_on_queues_of_1_and_of_5) {
  RunManyLaps(1, true, 5000);
  RunManyLaps(5, true, 20000);
  RunManyLaps(5, false, 20000);
}
