// What a hostile peer may write into a packed ring, and what each side does about it: the
// first invalid value breaks the queue with a stable reason, nothing outside the memory
// table is ever touched, and a broken queue stays broken.
#include "packed_ring_fixture.h"

using namespace vring;
using ringtest::PackedRingFixture;

namespace {

void ExpectDeviceBroken(PackedRingFixture& f) {
  Chain c;
  EXPECT(f.device->broken());
  EXPECT_THROWS_CODE(f.device->Pop(&c), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(f.device->AvailPending(), ErrorCode::kQueueBroken);
}

void ExpectDriverBroken(PackedRingFixture& f) {
  UsedChain u;
  EXPECT(f.driver->broken());
  EXPECT_THROWS_CODE(f.driver->PopUsed(&u), ErrorCode::kQueueBroken);
  EXPECT_THROWS_CODE(f.driver->AddChain(1, [&](uint32_t, uint16_t) { return ChainBuffer{f.G(0), 1, false}; }),
                     ErrorCode::kQueueBroken);
}

}  // namespace

// --- a hostile driver ---------------------------------------------------------------

TEST(packed_device_rejects_a_buffer_id_out_of_range) {
  PackedRingFixture f(4, false, false);
  f.OfferAt(0, true, f.G(0), 64, 4);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "buffer-id-out-of-range");
  ExpectDeviceBroken(f);
}

TEST(packed_device_rejects_a_buffer_id_already_in_use) {
  PackedRingFixture f(4, false, false);
  f.OfferAt(0, true, f.G(0), 64, 1);
  f.OfferAt(1, true, f.G(64), 64, 1);
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_BAD_RING(f.device->Pop(&c), "buffer-id-in-use");
}

TEST(packed_device_accepts_a_buffer_id_again_once_it_was_used) {
  PackedRingFixture f(4, false, false);
  f.OfferAt(0, true, f.G(0), 64, 1);
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(1, 0);
  f.device->PublishUsed();
  f.OfferAt(1, true, f.G(64), 64, 1);
  EXPECT(f.device->Pop(&c) && c.head == 1);
}

TEST(packed_device_rejects_a_chain_longer_than_the_ring) {
  // Every slot available and linked: the chain would come round to its own head.
  PackedRingFixture f(4, false, false);
  for (uint32_t i = 0; i < 4; ++i) f.OfferAt(i, true, f.G(i * 64), 64, 0, kDescFlagNext);
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "chain-too-long");
  ExpectDeviceBroken(f);
}

TEST(packed_device_rejects_a_chain_running_into_a_slot_that_is_not_available) {
  PackedRingFixture f(4, false, false);
  f.OfferAt(0, true, f.G(0), 64, 0, kDescFlagNext);
  f.OfferAt(1, false, f.G(64), 64, 0);  // wrap bit of the next lap
  Chain c;
  EXPECT_BAD_RING(f.device->Pop(&c), "chain-not-available");
}

TEST(packed_device_takes_nothing_with_wrong_wrap_bits) {
  PackedRingFixture f(4, false, false);
  Chain c;
  // The next lap's availability, a used descriptor of either lap, both bits set wrongly.
  for (uint16_t flags : {AvailBits(false), UsedBits(true), UsedBits(false), uint16_t{0}}) {
    f.SetDesc(0, f.G(0), 64, 0, flags);
    EXPECT_EQ(f.device->AvailPendingFresh(), 0u);
    EXPECT(!f.device->Pop(&c));
    EXPECT(!f.device->broken());
  }
}

TEST(packed_device_rejects_buffers_outside_shared_memory) {
  const uint64_t kMax = ~uint64_t{0};
  struct Case {
    uint64_t addr;
    uint32_t len;
  };
  PackedRingFixture probe(4, false, false);
  for (const Case& k : {Case{0, 64}, Case{probe.end_guest() - 10, 64}, Case{probe.end_guest(), 1},
                        Case{kMax - 10, 64}, Case{ringtest::kGuestBase - 1, 2}}) {
    PackedRingFixture f(4, false, false);
    f.OfferAt(0, true, k.addr, k.len, 0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "buffer-out-of-bounds");
  }
}

TEST(packed_device_rejects_zero_lengths_and_readable_after_writable) {
  {
    PackedRingFixture f(4, false, false);
    f.OfferAt(0, true, f.G(0), 0, 0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "zero-length-descriptor");
  }
  {
    PackedRingFixture f(4, false, false);
    f.OfferAt(0, true, f.G(0), 64, 0, kDescFlagWrite | kDescFlagNext);
    f.OfferAt(1, true, f.G(64), 64, 0);
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), "readable-after-writable");
  }
}

TEST(packed_device_rejects_bad_indirect_descriptors) {
  struct Case {
    const char* reason;
    uint32_t slot_of_indirect;
    uint64_t table_off;
    uint32_t len;
    uint16_t extra_flags;
  };
  // Table entries at data offset 4096 are valid buffers unless a case says otherwise.
  for (const Case& k : {Case{"indirect-with-next", 0, 4096, 32, kDescFlagNext},
                        Case{"indirect-bad-length", 0, 4096, 0, 0}, Case{"indirect-bad-length", 0, 4096, 24, 0},
                        Case{"indirect-too-large", 0, 4096, 5 * 16, 0},
                        Case{"indirect-out-of-bounds", 0, (1 << 20) + 4096, 32, 0},
                        Case{"indirect-misaligned", 0, 4100, 32, 0}, Case{"indirect-in-chain", 1, 4096, 32, 0}}) {
    PackedRingFixture f(4, false, false);
    PackedDesc* table = reinterpret_cast<PackedDesc*>(f.H(4096));
    for (int i = 0; i < 2; ++i) {
      StorePackedDescBody(&table[i], f.G(i * 64), 64, 0);
      table[i].flags = 0;
    }
    if (k.slot_of_indirect == 1) f.OfferAt(0, true, f.G(512), 64, 0, kDescFlagNext);
    f.OfferAt(k.slot_of_indirect, true, f.G(k.table_off), k.len, 0,
              static_cast<uint16_t>(kDescFlagIndirect | k.extra_flags));
    Chain c;
    EXPECT_BAD_RING(f.device->Pop(&c), k.reason);
  }
}

TEST(packed_device_rejects_what_an_indirect_table_holds_that_it_may_not) {
  for (int which = 0; which < 3; ++which) {
    PackedRingFixture f(4, false, false);
    PackedDesc* table = reinterpret_cast<PackedDesc*>(f.H(4096));
    StorePackedDescBody(&table[0], f.G(0), 64, 0);
    table[0].flags = which == 0 ? kDescFlagIndirect : 0;
    StorePackedDescBody(&table[1], which == 1 ? f.end_guest() : f.G(64), 64, 0);
    table[1].flags = which == 2 ? kDescFlagWrite : 0;
    StorePackedDescBody(&table[2], f.G(128), 64, 0);
    table[2].flags = 0;  // readable after the writable entry when which == 2
    f.OfferAt(0, true, f.G(4096), 3 * 16, 0, kDescFlagIndirect);
    Chain c;
    const char* reason = which == 0 ? "nested-indirect" : which == 1 ? "buffer-out-of-bounds" : "readable-after-writable";
    EXPECT_BAD_RING(f.device->Pop(&c), reason);
  }
}

TEST(packed_device_chain_is_a_copy_so_later_rewrites_do_not_change_it) {
  PackedRingFixture f(4, false, false);
  f.OfferAt(0, true, f.G(0), 64, 2);
  Chain c;
  EXPECT(f.device->Pop(&c));
  f.SetDesc(0, 0xdead0000, 9999, 3, AvailBits(true));
  EXPECT_EQ(c.head, 2);
  EXPECT(c.segments[0].data == f.H(0));
  EXPECT_EQ(c.segments[0].len, 64u);
}

// --- a hostile device -----------------------------------------------------------------

TEST(packed_driver_rejects_a_used_id_out_of_range) {
  PackedRingFixture f(4, false);
  f.AddChain(1, 0, 64);
  f.driver->Publish();
  f.ReturnAt(0, true, 4, 0);
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-out-of-range");
  ExpectDriverBroken(f);
}

TEST(packed_driver_rejects_a_used_id_never_handed_out_or_returned_twice) {
  {
    PackedRingFixture f(4, false);
    f.AddChain(1, 0, 64);
    f.driver->Publish();
    f.ReturnAt(0, true, 3, 0);
    UsedChain u;
    EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-not-outstanding");
  }
  {
    PackedRingFixture f(4, false);
    const int a = f.AddChain(1, 0, 64);
    f.AddChain(1, 0, 64);
    f.driver->Publish();
    f.ReturnAt(0, true, static_cast<uint16_t>(a), 0);
    f.ReturnAt(1, true, static_cast<uint16_t>(a), 0);
    EXPECT_BAD_RING(f.driver->UsedPendingFresh(), "used-id-not-outstanding");
  }
}

TEST(packed_driver_rejects_a_used_id_of_a_chain_not_yet_published) {
  PackedRingFixture f(4, false);
  f.AddChain(1, 0, 64);
  f.driver->Publish();
  const int b = f.AddChain(1, 0, 64);  // added, not published
  f.ReturnAt(0, true, static_cast<uint16_t>(b), 0);
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-id-not-outstanding");
}

TEST(packed_driver_rejects_a_used_length_beyond_the_writable_buffers) {
  PackedRingFixture f(4, false);
  const int id = f.AddChain(3, 1, 64);  // 128 writable bytes
  f.driver->Publish();
  f.ReturnAt(0, true, static_cast<uint16_t>(id), 129);
  UsedChain u;
  EXPECT_BAD_RING(f.driver->PopUsed(&u), "used-len-too-large");
}

TEST(packed_driver_ignores_the_length_of_a_used_chain_it_only_gave_to_read) {
  // DPDK's back-end leaves the descriptor's original length in a used transmit descriptor.
  PackedRingFixture f(4, false);
  const int id = f.AddChain(2, 2, 64);
  f.driver->Publish();
  f.ReturnAt(0, true, static_cast<uint16_t>(id), 128);
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.len, 0u);
  EXPECT(!f.driver->broken());
}

TEST(packed_driver_takes_nothing_with_wrong_wrap_bits) {
  PackedRingFixture f(4, false);
  const int id = f.AddChain(1, 0, 64);
  f.driver->Publish();
  UsedChain u;
  for (uint16_t flags : {UsedBits(false), AvailBits(true), AvailBits(false)}) {
    f.SetDesc(0, 0, 0, static_cast<uint16_t>(id), flags);
    EXPECT_EQ(f.driver->UsedPendingFresh(), 0u);
    EXPECT(!f.driver->PopUsed(&u));
    EXPECT(!f.driver->broken());
  }
  f.ReturnAt(0, true, static_cast<uint16_t>(id), 0);
  EXPECT(f.driver->PopUsed(&u) && u.head == id);
}

TEST(packed_driver_looks_for_no_more_used_descriptors_than_are_outstanding) {
  // A device that marks every slot used only returns what was handed out; the rest of the
  // ring is not read, so it cannot be taken for further completions.
  PackedRingFixture f(4, false);
  const int id = f.AddChain(1, 0, 64);
  f.driver->Publish();
  for (uint32_t i = 0; i < 4; ++i) f.ReturnAt(i, true, static_cast<uint16_t>(i == 0 ? id : 3), 0);
  EXPECT_EQ(f.driver->UsedPendingFresh(), 1u);
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT(!f.driver->PopUsed(&u));
  EXPECT(!f.driver->broken());
}

TEST(packed_driver_used_entry_is_a_copy_so_later_rewrites_do_not_change_it) {
  PackedRingFixture f(4, false);
  const int id = f.AddChain(2, 1, 64);
  f.driver->Publish();
  f.ReturnAt(0, true, static_cast<uint16_t>(id), 10);
  EXPECT_EQ(f.driver->UsedPending(), 1u);
  f.ReturnAt(0, true, 3, 9999);  // rewritten after it was seen
  UsedChain u;
  EXPECT(f.driver->PopUsed(&u));
  EXPECT_EQ(u.head, id);
  EXPECT_EQ(u.len, 10u);
}
