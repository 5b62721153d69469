// DriverQueue and DeviceQueue on one split ring, driven from one thread: chains travel
// driver → device → driver with their exact contents, indices run free across the 16-bit
// wrap, notification suppression follows VIRTIO (flags, or EVENT_IDX), and every class of
// hostile ring input (from a driver or from a device) is refused with kBadRing
// and its reason, leaves the queue broken, and never touches memory outside the region
// (the fixture's guard pages turn any stray access into a crash).
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "harness.h"
#include "ring_fixture.h"
#include "vring/device_queue.h"
#include "vring/driver_queue.h"
#include "vring/error.h"
#include "vring/split_ring.h"

using namespace vring;
using ringtest::RingFixture;

namespace {

constexpr uint64_t kMaxU64 = ~uint64_t{0};

void Fill(uint8_t* p, uint32_t len, uint32_t seed) {
  for (uint32_t i = 0; i < len; ++i) p[i] = static_cast<uint8_t>(seed * 131 + i * 7 + 1);
}

bool Matches(const uint8_t* p, uint32_t len, uint32_t seed) {
  for (uint32_t i = 0; i < len; ++i) {
    if (p[i] != static_cast<uint8_t>(seed * 131 + i * 7 + 1)) return false;
  }
  return true;
}

// A broken device queue refuses every operation with kQueueBroken, whatever the peer
// writes afterwards.
void ExpectDeviceBroken(RingFixture& f) {
  DeviceQueue& d = *f.device;
  EXPECT(d.broken());
  const uint16_t used_before = f.used_idx();
  Chain c;
  EXPECT_THROWS_CODE(d.Pop(&c), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.AvailPending(), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.PushUsed(0, 0), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.EnableNotifications(), ErrorCode::kQueueBroken);
  // A now perfectly valid ring does not revive it.
  f.SetDesc(0, f.G(0), 8, 0, 0);
  f.SetAvailIdx(static_cast<uint16_t>(d.last_avail_idx()));
  f.MakeAvail(0);
  EXPECT_THROWS_CODE(d.Pop(&c), ErrorCode::kQueueBroken);
  EXPECT(d.broken());
  // Nothing was ever returned through the used ring.
  EXPECT_EQ(f.used_idx(), used_before);
}

void ExpectDriverBroken(RingFixture& f) {
  DriverQueue& d = *f.driver;
  EXPECT(d.broken());
  const uint32_t free_before = d.num_free();
  const uint16_t avail_before = f.avail_idx();
  UsedChain u;
  EXPECT_THROWS_CODE(f.AddChain(1, 1, 8), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.Publish(), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.UsedPending(), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.PopUsed(&u), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.PeekUsed(0), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(d.EnableInterrupts(), ErrorCode::kQueueBroken);
  EXPECT_EQ(d.num_free(), free_before);
  EXPECT_EQ(f.avail_idx(), avail_before);
}

// Publishes one single-descriptor chain per entry of `writable_lens` (at data offset
// id * 64): a writable buffer of that many bytes, or for 0 a readable 8-byte one.
// Returns the heads.
std::vector<int> PublishChains(RingFixture& f, const std::vector<uint32_t>& writable_lens) {
  std::vector<int> heads;
  for (uint32_t len : writable_lens) {
    heads.push_back(f.driver->AddChain(1, [&](uint32_t, uint16_t id) {
      return ChainBuffer{f.G(uint64_t{id} * 64), len == 0 ? 8u : len, len != 0};
    }));
  }
  f.driver->Publish();
  return heads;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

TEST(queue_chain_round_trip_delivers_exact_bytes_and_used_length) {
  for (bool evidx : {false, true}) {
    RingFixture f(8, evidx);
    // Two readable 64-byte buffers, then one writable one.
    const int head = f.driver->AddChain(3, [&](uint32_t i, uint16_t id) {
      if (i < 2) Fill(f.H(uint64_t{id} * 64), 64, 10 + i);
      return ChainBuffer{f.G(uint64_t{id} * 64), 64, i == 2};
    });
    EXPECT_EQ(head, 0);
    EXPECT_EQ(f.driver->num_free(), 5u);
    // Not visible before Publish.
    EXPECT_EQ(f.device->AvailPending(), 0u);
    f.driver->Publish();
    EXPECT_EQ(f.driver->outstanding(), 1u);
    EXPECT_EQ(f.device->AvailPending(), 1u);

    Chain c;
    EXPECT(f.device->Pop(&c));
    EXPECT_EQ(c.head, 0);
    EXPECT_EQ(c.segments.size(), 3u);
    EXPECT_EQ(c.num_readable, 2u);
    EXPECT_EQ(c.readable_bytes, 128u);
    EXPECT_EQ(c.writable_bytes, 64u);
    for (uint32_t i = 0; i < 3; ++i) {
      EXPECT(c.segments[i].data == f.H(uint64_t{i} * 64));
      EXPECT_EQ(c.segments[i].len, 64u);
    }
    EXPECT(Matches(c.segments[0].data, 64, 10));
    EXPECT(Matches(c.segments[1].data, 64, 11));
    EXPECT(!f.device->Pop(&c));

    Fill(c.segments[2].data, 40, 99);
    f.device->PushUsed(c.head, 40);
    EXPECT_EQ(f.driver->UsedPending(), 0u);  // not visible before PublishUsed
    f.device->PublishUsed();

    UsedChain u;
    EXPECT_EQ(f.driver->UsedPending(), 1u);
    EXPECT(f.driver->PopUsed(&u));
    EXPECT_EQ(u.head, 0);
    EXPECT_EQ(u.len, 40u);
    EXPECT_EQ(u.chain_len, 3u);
    EXPECT(Matches(f.H(128), 40, 99));
    EXPECT_EQ(f.driver->num_free(), 8u);
    EXPECT_EQ(f.driver->outstanding(), 0u);
    EXPECT(!f.driver->PopUsed(&u));
  }
}

TEST(queue_chain_descriptors_are_written_in_virtio_layout) {
  RingFixture f(8, false);
  const int head = f.AddChain(2, 1, 32);
  f.driver->Publish();
  const RingDesc d0 = LoadDesc(&f.view.descs()[head]);
  EXPECT_EQ(d0.addr, f.G(0));
  EXPECT_EQ(d0.len, 32u);
  EXPECT_EQ(d0.flags, kDescFlagNext);
  const RingDesc d1 = LoadDesc(&f.view.descs()[d0.next]);
  EXPECT_EQ(d1.addr, f.G(uint64_t{d0.next} * 32));
  EXPECT_EQ(d1.flags, kDescFlagWrite);
  EXPECT_EQ(LoadRelaxed(f.view.avail_ring(0)), head);
  EXPECT_EQ(f.avail_idx(), 1);
}

TEST(queue_out_of_order_completion_returns_every_descriptor_to_the_free_list) {
  RingFixture f(8, false);
  const int a = f.AddChain(1, 1, 16);
  const int b = f.AddChain(3, 1, 16);
  const int c = f.AddChain(2, 0, 16);
  EXPECT(a >= 0 && b >= 0 && c >= 0);
  EXPECT_EQ(f.driver->num_free(), 2u);
  EXPECT_EQ(f.AddChain(3, 1, 16), -1);  // does not fit
  EXPECT_EQ(f.driver->AddChain(0, [&](uint32_t, uint16_t) { return ChainBuffer{f.G(0), 1, false}; }), -1);
  f.driver->Publish();

  Chain chains[3];
  for (auto& ch : chains) EXPECT(f.device->Pop(&ch));
  EXPECT_EQ(chains[0].head, a);
  EXPECT_EQ(chains[1].head, b);
  EXPECT_EQ(chains[2].head, c);
  EXPECT_EQ(chains[1].segments.size(), 3u);
  // Completed in the order c, a, b.
  f.device->PushUsed(chains[2].head, 32);
  f.device->PushUsed(chains[0].head, 0);
  f.device->PushUsed(chains[1].head, 16);
  f.device->PublishUsed();

  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.head, c);
  EXPECT_EQ(u.chain_len, 2u);
  EXPECT_EQ(u.len, 32u);
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.head, a);
  EXPECT_EQ(u.chain_len, 1u);
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.head, b);
  EXPECT_EQ(u.chain_len, 3u);
  EXPECT_EQ(f.driver->num_free(), 8u);

  // The free list is intact: one chain can now take all eight descriptors, each exactly once.
  std::vector<int> seen(8, 0);
  const int all = f.driver->AddChain(8, [&](uint32_t, uint16_t id) {
    ++seen[id];
    return ChainBuffer{f.G(uint64_t{id} * 16), 16, false};
  });
  EXPECT(all >= 0);
  for (int s : seen) EXPECT_EQ(s, 1);
  f.driver->Publish();
  Chain whole;
  EXPECT(f.device->Pop(&whole));
  EXPECT_EQ(whole.segments.size(), 8u);
  EXPECT_EQ(whole.readable_bytes, 128u);
}

TEST(queue_chain_of_exactly_queue_size_descriptors_is_accepted) {
  RingFixture f(16, false);
  const int head = f.AddChain(16, 10, 8);
  EXPECT(head >= 0);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.segments.size(), 16u);
  EXPECT_EQ(c.num_readable, 10u);
  EXPECT_EQ(c.writable_bytes, 48u);
  f.device->PushUsed(c.head, 48);
  f.device->PublishUsed();
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.chain_len, 16u);
  EXPECT_EQ(u.len, 48u);
}

TEST(queue_indirect_chain_is_walked_by_next_links_in_its_table) {
  RingFixture f(8, false, /*with_driver=*/false);
  // Table at data offset 0x1000, chained 0 -> 2 -> 1; entries point at distinct buffers.
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.G(0x2000), 10, kDescFlagNext, 2});
  StoreDesc(&table[2], RingDesc{f.G(0x3000), 20, kDescFlagNext, 1});
  StoreDesc(&table[1], RingDesc{f.G(0x4000), 30, kDescFlagWrite, 0});
  StoreDesc(&table[3], RingDesc{0xdeadbeef, 0, 0xffff, 0xffff});  // unused entry: never read as part of the chain
  Fill(f.H(0x2000), 10, 1);
  Fill(f.H(0x3000), 20, 2);
  // WRITE on the indirect descriptor itself must be ignored (VIRTIO 1.x §2.7.5.3.2).
  f.SetDesc(5, f.G(0x1000), 4 * 16, kDescFlagIndirect | kDescFlagWrite, 0);
  f.MakeAvail(5);

  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.head, 5);
  EXPECT_EQ(c.segments.size(), 3u);
  EXPECT_EQ(c.num_readable, 2u);
  EXPECT(c.segments[0].data == f.H(0x2000));
  EXPECT_EQ(c.segments[0].len, 10u);
  EXPECT(c.segments[1].data == f.H(0x3000));
  EXPECT_EQ(c.segments[1].len, 20u);
  EXPECT(c.segments[2].data == f.H(0x4000));
  EXPECT_EQ(c.segments[2].len, 30u);
  EXPECT_EQ(c.readable_bytes, 30u);
  EXPECT_EQ(c.writable_bytes, 30u);
  EXPECT(Matches(c.segments[0].data, 10, 1));
  EXPECT(Matches(c.segments[1].data, 20, 2));

  f.device->PushUsed(c.head, 30);
  f.device->PublishUsed();
  EXPECT_EQ(f.used_idx(), 1);
  EXPECT_EQ(LoadRelaxed(&f.view.used_ring(0)->id), 5u);
  EXPECT_EQ(LoadRelaxed(&f.view.used_ring(0)->len), 30u);
}

TEST(queue_direct_descriptors_followed_by_an_indirect_one_form_one_chain) {
  // VIRTIO 1.x: the device must handle "zero or more normal chained descriptors followed
  // by a single descriptor with INDIRECT".
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.G(0x3000), 16, kDescFlagWrite | kDescFlagNext, 1});
  StoreDesc(&table[1], RingDesc{f.G(0x3100), 16, kDescFlagWrite, 0});
  f.SetDesc(2, f.G(0x2000), 12, kDescFlagNext, 6);
  f.SetDesc(6, f.G(0x1000), 32, kDescFlagIndirect, 0);
  f.MakeAvail(2);
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.segments.size(), 3u);
  EXPECT_EQ(c.num_readable, 1u);
  EXPECT(c.segments[0].data == f.H(0x2000));
  EXPECT(c.segments[1].data == f.H(0x3000));
  EXPECT(c.segments[2].data == f.H(0x3100));
  EXPECT_EQ(c.writable_bytes, 32u);
}

TEST(queue_indirect_table_of_exactly_queue_size_entries_is_accepted) {
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  for (uint16_t i = 0; i < 8; ++i) {
    StoreDesc(&table[i], RingDesc{f.G(0x2000 + 8u * i), 8, static_cast<uint16_t>(i < 7 ? kDescFlagNext : 0),
                                  static_cast<uint16_t>(i + 1)});
  }
  f.SetDesc(0, f.G(0x1000), 8 * 16, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.segments.size(), 8u);
  EXPECT_EQ(c.readable_bytes, 64u);
}

TEST(queue_device_starts_at_its_base_and_crosses_the_index_wrap) {
  // vhost-user SET_VRING_BASE: the device resumes at a given avail index (here just below
  // the 16-bit wrap) and returns entries at the matching used slots.
  RingFixture f(4, false, false, 1 << 20, /*device_base=*/0xfffe);
  f.SetAvailIdx(0xfffe);
  StoreRelease(f.view.used_idx(), 0xfffe);
  for (uint16_t i = 0; i < 4; ++i) f.SetDesc(i, f.G(64u * i), 8, 0, 0);
  for (uint16_t i = 0; i < 4; ++i) f.MakeAvail(i);
  EXPECT_EQ(f.avail_idx(), 2);
  EXPECT_EQ(f.device->AvailPending(), 4u);
  Chain c;
  for (uint16_t i = 0; i < 4; ++i) {
    EXPECT(f.device->Pop(&c));
    EXPECT_EQ(c.head, i);
    EXPECT(c.segments[0].data == f.H(64u * i));
    f.device->PushUsed(c.head, 0);
  }
  EXPECT(!f.device->Pop(&c));
  EXPECT_EQ(f.device->last_avail_idx(), 2);
  f.device->PublishUsed();
  EXPECT_EQ(f.used_idx(), 2);
  // Slots 0xfffe & 3 = 2, 3, then 0, 1.
  EXPECT_EQ(LoadRelaxed(&f.view.used_ring(2)->id), 0u);
  EXPECT_EQ(LoadRelaxed(&f.view.used_ring(3)->id), 1u);
  EXPECT_EQ(LoadRelaxed(&f.view.used_ring(0)->id), 2u);
  EXPECT_EQ(LoadRelaxed(&f.view.used_ring(1)->id), 3u);
}

namespace {

// Runs `total` chains through a queue of size q with free-running 16-bit indices. Chains
// are one readable descriptor carrying the sequence number, plus (every other chain, when
// the queue has room) one writable descriptor the device answers in. Every third batch is
// completed in reverse order. Notification requests are checked at every batch.
void RunAcrossWrap(uint32_t q, bool evidx, uint32_t total) {
  RingFixture f(q, evidx, true, /*data_bytes=*/uint64_t{q} * 16 + 4096);
  DriverQueue& drv = *f.driver;
  DeviceQueue& dev = *f.device;
  std::vector<uint32_t> seq_of(q, 0);
  std::vector<uint8_t> has_reply(q, 0);
  std::vector<uint16_t> reply_id(q, 0);
  uint32_t sent = 0, completed = 0, batch = 0;
  std::vector<Chain> popped(q);
  while (completed < total) {
    // Driver: fill the ring.
    // The device starts out wanting kicks; from then on it declines every third batch.
    const bool device_wants_kick = batch == 0 || batch % 3 != 0;
    uint32_t added = 0;
    while (sent < total) {
      const uint32_t n = (q >= 2 && sent % 2 == 1) ? 2 : 1;
      if (drv.num_free() < n) break;
      const uint32_t seq = sent;
      uint16_t second = 0;
      const int head = drv.AddChain(n, [&](uint32_t i, uint16_t id) {
        if (i == 0) std::memcpy(f.H(uint64_t{id} * 8), &seq, 4);
        if (i == 1) second = id;
        return ChainBuffer{f.G(uint64_t{id} * 8), i == 0 ? 4u : 8u, i == 1};
      });
      if (head < 0) throw harness::Failure{"AddChain failed with descriptors free"};
      seq_of[head] = seq;
      has_reply[head] = n == 2;
      reply_id[head] = second;
      ++sent;
      ++added;
    }
    if (added == 0) throw harness::Failure{"driver made no progress"};
    drv.Publish();
    EXPECT_EQ(drv.NeedKick(), device_wants_kick);

    // Device: take everything, check order and content, complete.
    uint32_t got = 0;
    Chain c;
    while (dev.Pop(&c)) {
      uint32_t seq = 0;
      EXPECT(c.num_readable == 1 && c.segments[0].len == 4);
      std::memcpy(&seq, c.segments[0].data, 4);
      EXPECT_EQ(seq, completed + got);
      EXPECT_EQ(c.segments.size(), has_reply[c.head] ? 2u : 1u);
      popped[got++] = c;
    }
    EXPECT_EQ(got, added);
    const bool reverse = batch % 3 == 1;
    for (uint32_t k = 0; k < got; ++k) {
      Chain& pc = popped[reverse ? got - 1 - k : k];
      uint32_t reply_len = 0;
      if (pc.segments.size() == 2) {
        uint32_t seq = 0;
        std::memcpy(&seq, pc.segments[0].data, 4);
        const uint64_t answer = ~uint64_t{seq};
        std::memcpy(pc.segments[1].data, &answer, 8);
        reply_len = 8;
      }
      dev.PushUsed(pc.head, reply_len);
    }
    // Ask for the next kick (or not) before the driver's next batch.
    const bool driver_wants_call = batch % 4 != 0;
    if (driver_wants_call) {
      EXPECT(!drv.EnableInterrupts());
    } else {
      drv.DisableInterrupts();
    }
    dev.PublishUsed();
    EXPECT_EQ(dev.NeedCall(), driver_wants_call);
    if ((batch + 1) % 3 != 0) {
      EXPECT(!dev.EnableNotifications());
    } else {
      dev.DisableNotifications();
    }

    // Driver: reap and check the answers.
    EXPECT_EQ(drv.UsedPending(), got);
    UsedChain u;
    uint32_t reaped = 0;
    while (drv.PopUsed(&u)) {
      EXPECT_EQ(u.chain_len, has_reply[u.head] ? 2u : 1u);
      if (has_reply[u.head]) {
        EXPECT_EQ(u.len, 8u);
        uint64_t answer = 0;
        std::memcpy(&answer, f.H(uint64_t{reply_id[u.head]} * 8), 8);
        EXPECT_EQ(answer, ~uint64_t{seq_of[u.head]});
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
  EXPECT(total > 2 * 65536u);
  EXPECT_EQ(drv.avail_idx(), static_cast<uint16_t>(total));
  EXPECT_EQ(dev.last_avail_idx(), static_cast<uint16_t>(total));
  EXPECT_EQ(drv.last_used_idx(), static_cast<uint16_t>(total));
  EXPECT_EQ(f.avail_idx(), static_cast<uint16_t>(total));
  EXPECT_EQ(f.used_idx(), static_cast<uint16_t>(total));
}

}  // namespace

TEST(queue_free_running_indices_wrap_twice_on_a_queue_of_4) {
  RunAcrossWrap(4, false, 2 * 65536 + 1001);
  RunAcrossWrap(4, true, 2 * 65536 + 1001);
}

TEST(queue_free_running_indices_wrap_twice_on_a_queue_of_256) {
  RunAcrossWrap(256, false, 2 * 65536 + 777);
  RunAcrossWrap(256, true, 2 * 65536 + 777);
}

TEST(queue_free_running_indices_wrap_on_a_queue_of_1) {
  RunAcrossWrap(1, true, 2 * 65536 + 3);
}

TEST(queue_sizes_that_are_powers_of_two_up_to_32768_are_accepted) {
  // One layout big enough for the largest queue; smaller queues use its prefix.
  RingFixture big(32768, false, false, /*data_bytes=*/1 << 16);
  for (uint32_t q = 1; q <= 32768; q *= 2) {
    SplitRingView v = big.view;
    v.size = q;
    DriverQueue drv(v, true);
    DeviceQueue dev(v, big.memory.get(), true, 0);
    EXPECT_EQ(drv.size(), q);
    EXPECT_EQ(dev.size(), q);
    EXPECT_EQ(drv.num_free(), q);
    // One chain using every descriptor, there and back.
    const int head = drv.AddChain(q, [&](uint32_t i, uint16_t) { return ChainBuffer{big.G(i), 1, true}; });
    EXPECT_EQ(head, 0);
    drv.Publish();
    Chain c;
    EXPECT(dev.Pop(&c));
    EXPECT_EQ(c.segments.size(), q);
    EXPECT_EQ(c.writable_bytes, q);
    dev.PushUsed(c.head, q);
    dev.PublishUsed();
    UsedChain u;
    EXPECT(drv.PopUsed(&u));
    EXPECT_EQ(u.chain_len, q);
    EXPECT_EQ(u.len, q);
  }
}

TEST(queue_sizes_that_are_not_powers_of_two_or_too_big_are_rejected) {
  RingFixture big(32768, false, false, 1 << 16);
  for (uint32_t q : {0u, 3u, 5u, 6u, 12u, 100u, 255u, 1000u, 32767u, 32769u, 49152u, 65535u, 65536u, 131072u}) {
    SplitRingView v = big.view;
    v.size = q;
    EXPECT_THROWS_CODE(DriverQueue(v, false), ErrorCode::kInvalidArgument);
    EXPECT_THROWS_CODE(DeviceQueue(v, big.memory.get(), false, 0), ErrorCode::kInvalidArgument);
  }
}

TEST(queue_rejects_missing_or_misaligned_ring_parts) {
  RingFixture f(8, false, false);
  auto expect_rejected = [&](SplitRingView v) {
    EXPECT_THROWS_CODE(DriverQueue(v, false), ErrorCode::kInvalidArgument);
    EXPECT_THROWS_CODE(DeviceQueue(v, f.memory.get(), false, 0), ErrorCode::kInvalidArgument);
  };
  SplitRingView v = f.view;
  v.desc = f.view.desc + 8;
  expect_rejected(v);
  v = f.view;
  v.avail = f.view.avail + 1;
  expect_rejected(v);
  v = f.view;
  v.used = f.view.used + 2;
  expect_rejected(v);
  v = f.view;
  v.used = nullptr;
  expect_rejected(v);
  EXPECT_THROWS_CODE(DeviceQueue(f.view, nullptr, false, 0), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------
// Notification suppression
// ---------------------------------------------------------------------------------------

TEST(queue_without_event_idx_driver_kicks_unless_device_sets_no_notify) {
  RingFixture f(8, false);
  EXPECT(!f.driver->NeedKick());  // nothing published yet
  f.AddChain(1, 1, 8);
  f.driver->Publish();
  EXPECT(f.driver->NeedKick());
  EXPECT(!f.driver->NeedKick());  // nothing new since the last check

  f.device->DisableNotifications();
  EXPECT_EQ(LoadRelaxed(f.view.used_flags()) & kUsedFlagNoNotify, kUsedFlagNoNotify);
  f.AddChain(1, 1, 8);
  f.driver->Publish();
  EXPECT(!f.driver->NeedKick());

  // Re-enabling reports the chains already waiting, so the device does not sleep on them.
  EXPECT(f.device->EnableNotifications());
  EXPECT_EQ(LoadRelaxed(f.view.used_flags()) & kUsedFlagNoNotify, 0);
  f.AddChain(1, 1, 8);
  f.driver->Publish();
  EXPECT(f.driver->NeedKick());
}

TEST(queue_without_event_idx_device_calls_unless_driver_sets_no_interrupt) {
  RingFixture f(8, false);
  PublishChains(f, {0, 0, 0});
  Chain c;
  EXPECT(!f.device->NeedCall());
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 0);
  f.device->PublishUsed();
  EXPECT(f.device->NeedCall());
  EXPECT(!f.device->NeedCall());

  f.driver->DisableInterrupts();
  EXPECT_EQ(LoadRelaxed(f.view.avail_flags()) & kAvailFlagNoInterrupt, kAvailFlagNoInterrupt);
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 0);
  f.device->PublishUsed();
  EXPECT(!f.device->NeedCall());

  // One entry is already waiting: EnableInterrupts says so.
  EXPECT(f.driver->EnableInterrupts());
  EXPECT_EQ(LoadRelaxed(f.view.avail_flags()) & kAvailFlagNoInterrupt, 0);
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 0);
  f.device->PublishUsed();
  EXPECT(f.device->NeedCall());
}

TEST(queue_with_event_idx_driver_kicks_only_when_avail_event_is_crossed) {
  RingFixture f(16, true);
  // avail_event starts at 0: the first chain crosses it.
  PublishChains(f, {0});
  EXPECT(f.driver->NeedKick());
  PublishChains(f, {0, 0});
  EXPECT(!f.driver->NeedKick());  // the device has not asked again

  Chain c;
  while (f.device->Pop(&c)) {
  }
  EXPECT(!f.device->EnableNotifications());
  EXPECT_EQ(LoadRelaxed(f.view.avail_event()), 3);
  PublishChains(f, {0, 0});  // 3 -> 5 crosses 3
  EXPECT(f.driver->NeedKick());
  PublishChains(f, {0});  // 5 -> 6
  EXPECT(!f.driver->NeedKick());

  // The window is [old, new): event 8 is crossed by 6 -> 9; event 12 is not crossed by
  // 9 -> 12 (it asks for a kick once entry 12 is made available).
  StoreRelaxed(f.view.avail_event(), 8);
  PublishChains(f, {0, 0, 0});
  EXPECT(f.driver->NeedKick());
  StoreRelaxed(f.view.avail_event(), 12);
  PublishChains(f, {0, 0, 0});  // 9 -> 12
  EXPECT(!f.driver->NeedKick());
}

TEST(queue_with_event_idx_the_no_notify_flag_is_ignored) {
  RingFixture f(16, true);
  StoreRelaxed(f.view.used_flags(), kUsedFlagNoNotify);
  PublishChains(f, {0});
  EXPECT(f.driver->NeedKick());  // avail_event 0 crossed; the flag does not matter
  // And DisableNotifications uses avail_event, not the flag.
  StoreRelaxed(f.view.used_flags(), 0);
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.device->DisableNotifications();
  EXPECT_EQ(LoadRelaxed(f.view.used_flags()), 0);
  PublishChains(f, {0, 0, 0, 0});
  EXPECT(!f.driver->NeedKick());
  EXPECT(f.device->EnableNotifications());  // four already pending
  EXPECT_EQ(LoadRelaxed(f.view.avail_event()), 1);
}

TEST(queue_with_event_idx_device_calls_only_when_used_event_is_crossed) {
  RingFixture f(16, true);
  PublishChains(f, {0, 0, 0, 0, 0, 0});
  // "Wake me after 3 completions": used_event = last_used + 2.
  EXPECT(!f.driver->EnableInterruptsDelayed(3));
  EXPECT_EQ(LoadRelaxed(f.view.used_event()), 2);
  Chain c;
  auto complete = [&](uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      EXPECT(f.device->Pop(&c));
      f.device->PushUsed(c.head, 0);
    }
    f.device->PublishUsed();
  };
  complete(2);  // 0 -> 2
  EXPECT(!f.device->NeedCall());
  complete(1);  // 2 -> 3 crosses 2
  EXPECT(f.device->NeedCall());
  complete(1);  // 3 -> 4
  EXPECT(!f.device->NeedCall());

  // With used entries already waiting, EnableInterrupts reports it.
  EXPECT(f.driver->EnableInterrupts());
  UsedChain u;
  for (int i = 0; i < 4; ++i) EXPECT(f.driver->PopUsed(&u));
  // Asking for more completions than are outstanding waits for all of them (2 left),
  // never for a completion that cannot come.
  EXPECT(!f.driver->EnableInterruptsDelayed(10));
  EXPECT_EQ(LoadRelaxed(f.view.used_event()), 5);
  complete(1);
  EXPECT(!f.device->NeedCall());
  f.driver->DisableInterrupts();
  complete(1);
  EXPECT(!f.device->NeedCall());
}

TEST(queue_with_event_idx_the_no_interrupt_flag_is_ignored) {
  RingFixture f(8, true);
  PublishChains(f, {0});
  StoreRelaxed(f.view.avail_flags(), kAvailFlagNoInterrupt);  // meaningless with EVENT_IDX
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(c.head, 0);
  f.device->PublishUsed();
  EXPECT(f.device->NeedCall());  // used_event 0 crossed
}

// ---------------------------------------------------------------------------------------
// Hostile driver: the device must refuse every bad ring
// ---------------------------------------------------------------------------------------

TEST(device_rejects_avail_head_out_of_range) {
  for (uint16_t bad : {uint16_t{8}, uint16_t{9}, uint16_t{0xffff}}) {
    RingFixture f(8, false, false);
    f.SetDesc(0, f.G(0), 8, 0, 0);
    f.MakeAvail(bad);
    Chain c;
    const std::string msg = EXPECT_BAD_RING(f.device->Pop(&c), "head-out-of-range");
    EXPECT(msg.find(std::to_string(bad)) != std::string::npos);
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_next_out_of_range) {
  for (uint16_t bad : {uint16_t{8}, uint16_t{0x8000}, uint16_t{0xffff}}) {
    RingFixture f(8, false, false);
    f.SetDesc(0, f.G(0), 8, kDescFlagNext, bad);
    f.MakeAvail(0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "next-out-of-range");
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_a_descriptor_loop) {
  {
    RingFixture f(8, false, false);
    f.SetDesc(0, f.G(0), 8, kDescFlagNext, 1);
    f.SetDesc(1, f.G(8), 8, kDescFlagNext, 0);
    f.MakeAvail(0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "descriptor-loop");
    ExpectDeviceBroken(f);
  }
  {
    RingFixture f(8, false, false);
    f.SetDesc(3, f.G(0), 8, kDescFlagNext, 3);  // points at itself
    f.MakeAvail(3);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "descriptor-loop");
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_a_chain_longer_than_the_queue) {
  // 0 -> 1 -> 2 -> 3 -> 1 -> ...: every step is in range, but the chain never ends
  // within Q descriptors.
  RingFixture f(4, false, false);
  for (uint16_t i = 0; i < 4; ++i) f.SetDesc(i, f.G(8u * i), 8, kDescFlagNext, static_cast<uint16_t>(i == 3 ? 1 : i + 1));
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "descriptor-loop");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_a_zero_length_descriptor_with_a_bogus_address) {
  // CVE-2020-10725: zero length, invalid address.
  for (bool in_middle : {false, true}) {
    RingFixture f(8, false, false);
    if (in_middle) {
      f.SetDesc(0, f.G(0), 8, kDescFlagNext, 1);
      f.SetDesc(1, 0xdead0000ull, 0, kDescFlagNext, 2);
      f.SetDesc(2, f.G(8), 8, 0, 0);
    } else {
      f.SetDesc(0, 0xdead0000ull, 0, 0, 0);
    }
    f.MakeAvail(0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "zero-length-descriptor");
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_a_zero_length_descriptor_inside_the_region) {
  RingFixture f(8, false, false);
  f.SetDesc(0, f.G(0), 0, 0, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "zero-length-descriptor");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_buffers_outside_shared_memory) {
  struct Case {
    const char* what;
    uint64_t addr;
    uint32_t len;
  };
  RingFixture probe(8, false, false);
  const uint64_t end = probe.end_guest();
  const Case cases[] = {
      {"just past the end", end, 1},
      {"far past the end", end + (1ull << 30), 64},
      {"straddling the end", end - 8, 16},
      {"one byte before the region", ringtest::kGuestBase - 1, 2},
      {"address zero", 0, 16},
      {"addr + len overflows u64", kMaxU64 - 15, 32},
      {"last u64 address", kMaxU64, 1},
      {"huge len from inside", probe.G(0), 0xffffffffu},
      {"a host pointer instead of a guest address", reinterpret_cast<uint64_t>(probe.H(0)), 16},
  };
  for (const Case& k : cases) {
    for (bool writable : {false, true}) {
      RingFixture f(8, false, false);
      f.SetDesc(0, k.addr, k.len, writable ? kDescFlagWrite : 0, 0);
      f.MakeAvail(0);
      Chain c;
      try {
        EXPECT_BAD_RING(f.device->Pop(&c), "buffer-out-of-bounds");
      } catch (harness::Failure& fail) {
        fail.message += std::string(" [case: ") + k.what + "]";
        throw;
      }
      ExpectDeviceBroken(f);
    }
  }
}

TEST(device_rejects_an_out_of_bounds_buffer_later_in_a_chain) {
  RingFixture f(8, false, false);
  f.SetDesc(0, f.G(0), 8, kDescFlagNext, 1);
  f.SetDesc(1, f.end_guest() - 4, 8, kDescFlagWrite, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "buffer-out-of-bounds");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_a_readable_descriptor_after_a_writable_one) {
  RingFixture f(8, false, false);
  f.SetDesc(0, f.G(0), 8, kDescFlagNext, 1);
  f.SetDesc(1, f.G(8), 8, kDescFlagWrite | kDescFlagNext, 2);
  f.SetDesc(2, f.G(16), 8, 0, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "readable-after-writable");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_a_readable_descriptor_after_a_writable_one_inside_an_indirect_table) {
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.G(0x2000), 8, kDescFlagWrite | kDescFlagNext, 1});
  StoreDesc(&table[1], RingDesc{f.G(0x2008), 8, 0, 0});
  f.SetDesc(0, f.G(0x1000), 32, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "readable-after-writable");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_indirect_together_with_next) {
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.G(0x2000), 8, 0, 0});
  f.SetDesc(0, f.G(0x1000), 16, kDescFlagIndirect | kDescFlagNext, 1);
  f.SetDesc(1, f.G(0), 8, 0, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "indirect-with-next");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_indirect_table_lengths_that_are_zero_or_not_a_multiple_of_16) {
  for (uint32_t len : {0u, 1u, 8u, 15u, 17u, 24u, 127u}) {
    RingFixture f(8, false, false);
    RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
    StoreDesc(&table[0], RingDesc{f.G(0x2000), 8, 0, 0});
    f.SetDesc(0, f.G(0x1000), len, kDescFlagIndirect, 0);
    f.MakeAvail(0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "indirect-bad-length");
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_an_indirect_table_larger_than_the_queue) {
  for (uint32_t len : {9u * 16, 4096u * 16, 0xfffffff0u}) {
    RingFixture f(8, false, false);
    f.SetDesc(0, f.G(0x1000), len, kDescFlagIndirect, 0);
    f.MakeAvail(0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "indirect-too-large");
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_an_indirect_table_outside_shared_memory) {
  RingFixture probe(8, false, false);
  const uint64_t end = probe.end_guest();
  struct Case {
    uint64_t addr;
    uint32_t len;
  };
  for (const Case& k : {Case{end, 16}, Case{end - 16, 32}, Case{ringtest::kGuestBase - 16, 32},
                        Case{kMaxU64 - 15, 32}, Case{0, 16}}) {
    RingFixture f(8, false, false);
    f.SetDesc(0, k.addr, k.len, kDescFlagIndirect, 0);
    f.MakeAvail(0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "indirect-out-of-bounds");
    ExpectDeviceBroken(f);
  }
}

TEST(device_rejects_a_misaligned_indirect_table) {
  RingFixture f(8, false, false);
  f.SetDesc(0, f.G(0x1004), 16, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "indirect-misaligned");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_a_nested_indirect_descriptor) {
  RingFixture f(8, false, false);
  RingDesc* outer = reinterpret_cast<RingDesc*>(f.H(0x1000));
  RingDesc* inner = reinterpret_cast<RingDesc*>(f.H(0x1800));
  StoreDesc(&inner[0], RingDesc{f.G(0x2000), 8, 0, 0});
  StoreDesc(&outer[0], RingDesc{f.G(0x2100), 8, kDescFlagNext, 1});
  StoreDesc(&outer[1], RingDesc{f.G(0x1800), 16, kDescFlagIndirect, 0});
  f.SetDesc(0, f.G(0x1000), 32, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "nested-indirect");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_next_beyond_the_indirect_table) {
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.G(0x2000), 8, kDescFlagNext, 2});  // table has 2 entries
  StoreDesc(&table[1], RingDesc{f.G(0x2008), 8, 0, 0});
  StoreDesc(&table[2], RingDesc{f.G(0x2010), 8, 0, 0});  // in memory, but not in the table
  f.SetDesc(0, f.G(0x1000), 32, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "next-out-of-range");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_a_loop_inside_an_indirect_table) {
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.G(0x2000), 8, kDescFlagNext, 1});
  StoreDesc(&table[1], RingDesc{f.G(0x2008), 8, kDescFlagNext, 0});
  f.SetDesc(0, f.G(0x1000), 32, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "descriptor-loop");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_an_out_of_bounds_buffer_inside_an_indirect_table) {
  RingFixture f(8, false, false);
  RingDesc* table = reinterpret_cast<RingDesc*>(f.H(0x1000));
  StoreDesc(&table[0], RingDesc{f.end_guest() - 8, 64, 0, 0});
  f.SetDesc(0, f.G(0x1000), 16, kDescFlagIndirect, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "buffer-out-of-bounds");
  ExpectDeviceBroken(f);
}

TEST(device_rejects_an_avail_index_jump_larger_than_the_queue) {
  for (uint16_t jump : {uint16_t{9}, uint16_t{0x100}, uint16_t{0x8000}, uint16_t{0xffff}}) {
    RingFixture f(8, false, false);
    for (uint16_t i = 0; i < 8; ++i) f.SetDesc(i, f.G(8u * i), 8, 0, 0);
    f.SetAvailIdx(jump);
    const std::string msg = EXPECT_BAD_RING(f.device->AvailPending(), "avail-index-jump");
    EXPECT(msg.find(std::to_string(jump)) != std::string::npos);
    ExpectDeviceBroken(f);
  }
  {
    // Pop checks the index too.
    RingFixture f(8, false, false);
    f.SetAvailIdx(9);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "avail-index-jump");
    ExpectDeviceBroken(f);
  }
  {
    // Notification re-arming reads the index with the same check.
    RingFixture f(8, false, false);
    f.SetAvailIdx(100);
    EXPECT_BAD_RING(f.device->EnableNotifications(), "avail-index-jump");
    ExpectDeviceBroken(f);
  }
}

TEST(device_accepts_an_avail_index_exactly_one_queue_ahead) {
  RingFixture f(8, false, false);
  for (uint16_t i = 0; i < 8; ++i) {
    f.SetDesc(i, f.G(8u * i), 8, 0, 0);
    f.MakeAvail(i);
  }
  EXPECT_EQ(f.device->AvailPending(), 8u);
  Chain c;
  for (uint16_t i = 0; i < 8; ++i) {
    EXPECT(f.device->Pop(&c));
    EXPECT_EQ(c.head, i);
  }
  EXPECT(!f.device->broken());
}

TEST(device_chain_is_a_copy_so_later_descriptor_rewrites_do_not_change_it) {
  // The chain handed out is a copy: a peer rewriting the descriptor table after Pop
  // cannot redirect segments that were already validated.
  RingFixture f(8, false, false);
  f.SetDesc(0, f.G(0x100), 16, 0, 0);
  f.MakeAvail(0);
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.SetDesc(0, f.end_guest() + 4096, 0xffffffffu, kDescFlagNext, 0xffff);
  EXPECT(c.segments[0].data == f.H(0x100));
  EXPECT_EQ(c.segments[0].len, 16u);
}

// ---------------------------------------------------------------------------------------
// Hostile device: the driver must refuse every bad used ring
// ---------------------------------------------------------------------------------------

TEST(driver_rejects_a_used_index_jump_beyond_what_is_outstanding) {
  for (uint16_t used : {uint16_t{3}, uint16_t{8}, uint16_t{0x8000}, uint16_t{0xffff}}) {
    RingFixture f(8, false);
    PublishChains(f, {0, 0});
    f.SetUsed(0, 0, 0);
    f.SetUsed(1, 1, 0);
    f.SetUsedIdx(used);
    const std::string msg = EXPECT_BAD_RING(f.driver->UsedPending(), "used-index-jump");
    EXPECT(msg.find(std::to_string(used)) != std::string::npos);
    ExpectDriverBroken(f);
  }
  {
    // With nothing outstanding, any movement is a jump; PopUsed checks it too.
    RingFixture f(8, false);
    f.SetUsedIdx(1);
    UsedChain u;
    EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-index-jump");
    ExpectDriverBroken(f);
  }
  {
    // And so does re-arming interrupts.
    RingFixture f(8, true);
    PublishChains(f, {0});
    f.SetUsedIdx(2);
    EXPECT_BAD_RING(f.driver->EnableInterrupts(), "used-index-jump");
    ExpectDriverBroken(f);
  }
}

TEST(driver_rejects_a_used_id_out_of_range) {
  for (uint32_t id : {8u, 9u, 0xffffu, 0x10000u, 0xffffffffu}) {
    RingFixture f(8, false);
    PublishChains(f, {0});
    f.ReturnUsed(id, 0);
    UsedChain u;
    EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-out-of-range");
    ExpectDriverBroken(f);
  }
  {
    RingFixture f(8, false);
    PublishChains(f, {0});
    f.ReturnUsed(8, 0);
    EXPECT_BAD_RING(f.driver->PeekUsed(0), "used-id-out-of-range");
    ExpectDriverBroken(f);
  }
}

TEST(driver_rejects_a_used_id_that_was_never_handed_out) {
  RingFixture f(8, false);
  PublishChains(f, {0});  // head 0
  f.ReturnUsed(5, 0);     // descriptor 5 is free
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-not-outstanding");
  ExpectDriverBroken(f);
}

TEST(driver_rejects_a_used_id_naming_the_middle_of_a_chain) {
  RingFixture f(8, false);
  const int head = f.AddChain(3, 3, 8);  // descriptors 0, 1, 2
  EXPECT_EQ(head, 0);
  f.driver->Publish();
  f.ReturnUsed(1, 0);
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-not-outstanding");
  ExpectDriverBroken(f);
}

TEST(driver_rejects_a_used_id_returned_twice) {
  RingFixture f(8, false);
  PublishChains(f, {0, 0});  // heads 0 and 1
  f.ReturnUsed(0, 0);
  f.ReturnUsed(0, 0);
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.head, 0);
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-not-outstanding");
  ExpectDriverBroken(f);
}

TEST(driver_rejects_a_used_id_of_a_chain_not_yet_published) {
  // A chain that is added but not yet published was never given to the device, so the
  // device cannot have used it: accepting it would let the device complete a buffer the
  // driver is still filling, and later hand the same descriptors out twice.
  RingFixture f(8, false);
  PublishChains(f, {0});           // head 0: outstanding
  const int b = f.AddChain(1, 1, 8);  // head 1: added, not published
  EXPECT_EQ(b, 1);
  f.ReturnUsed(1, 0);
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-not-outstanding");
  ExpectDriverBroken(f);
}

TEST(driver_rejects_a_used_length_larger_than_the_writable_buffers) {
  struct Case {
    uint32_t writable;  // 0 = a device-readable chain
    uint32_t used_len;
  };
  for (const Case& k : {Case{64, 65}, Case{64, 0xffffffffu}, Case{0, 1}, Case{0, 8}}) {
    RingFixture f(8, false);
    const std::vector<int> heads = PublishChains(f, {k.writable});
    f.ReturnUsed(static_cast<uint32_t>(heads[0]), k.used_len);
    UsedChain u;
    EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-len-too-large");
    ExpectDriverBroken(f);
  }
}

TEST(driver_counts_only_the_writable_part_of_a_mixed_chain) {
  // Readable bytes are not room for the device's answer.
  RingFixture f(8, false);
  const int head = f.AddChain(3, 2, 32);  // 64 readable, 32 writable
  f.driver->Publish();
  f.ReturnUsed(static_cast<uint32_t>(head), 33);
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-len-too-large");
  ExpectDriverBroken(f);
}

TEST(driver_accepts_a_used_length_equal_to_the_writable_size) {
  RingFixture f(8, false);
  const int head = f.AddChain(3, 1, 32);  // 64 writable
  f.driver->Publish();
  f.ReturnUsed(static_cast<uint32_t>(head), 64);
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.len, 64u);
  EXPECT_EQ(f.driver->num_free(), 8u);
  EXPECT(!f.driver->broken());
}

TEST(driver_keeps_private_chain_links_when_the_device_scribbles_over_the_table) {
  // The device may overwrite descriptors it was given; the driver frees chains through
  // its own links, so the free list stays exact.
  RingFixture f(8, false);
  const int head = f.AddChain(4, 2, 8);
  f.driver->Publish();
  for (uint16_t i = 0; i < 8; ++i) f.SetDesc(i, kMaxU64, 0xffffffffu, 0xffff, 0xffff);
  f.ReturnUsed(static_cast<uint32_t>(head), 16);
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.chain_len, 4u);
  EXPECT_EQ(f.driver->num_free(), 8u);
  std::vector<int> seen(8, 0);
  EXPECT(f.driver->AddChain(8, [&](uint32_t, uint16_t id) {
    ++seen[id];
    return ChainBuffer{f.G(0), 8, false};
  }) >= 0);
  for (int s : seen) EXPECT_EQ(s, 1);
}
