// VIRTIO_F_IN_ORDER on packed rings, driver side: one used descriptor, written over a
// batch's first slot and naming its last chain, completes every chain of the batch; the
// earlier chains count their full writable length. And resumption on a new device: the
// chains the old device had not returned are made available again from the resume base.
#include <vector>

#include "packed_ring_fixture.h"

using namespace vring;
using ringtest::PackedRingFixture;

namespace {

PackedRingFixture InOrder(uint32_t q) { return PackedRingFixture(q, false, true, 0x8000, true); }

// A chain of `n` descriptors of 16 bytes each, the first `readable` of them readable.
int Publish(PackedRingFixture& f, uint32_t n, uint32_t readable) {
  const int id = f.AddChain(n, readable, 16);
  f.driver->Publish();
  return id;
}

UsedChain Pop(PackedRingFixture& f) {
  UsedChain u{};
  EXPECT(f.driver->PopUsed(&u));
  return u;
}

void ExpectBroken(PackedRingFixture& f, const char* reason) {
  UsedChain u;
  EXPECT_BAD_RING(f.driver->UsedPending(), reason);
  EXPECT(f.driver->broken());
  EXPECT_THROWS_CODE(f.driver->PopUsed(&u), ErrorCode::kQueueBroken);
}

}  // namespace

TEST(packed_in_order_driver_takes_one_used_descriptor_for_a_batch) {
  auto f = InOrder(8);
  const int a = Publish(f, 1, 0);  // slot 0, writable
  const int b = Publish(f, 2, 1);  // slots 1-2, one readable and one writable descriptor
  const int c = Publish(f, 1, 1);  // slot 3, read only
  const int d = Publish(f, 1, 0);  // slot 4, writable
  // One used descriptor at the batch's first slot names its last chain, d.
  f.ReturnAt(0, true, static_cast<uint16_t>(d), 9);
  EXPECT_EQ(f.driver->UsedPending(), 4u);
  UsedChain u = Pop(f);
  EXPECT(u.head == a && u.len == 16 && u.chain_len == 1);
  u = Pop(f);
  EXPECT(u.head == b && u.len == 16 && u.chain_len == 2);
  u = Pop(f);
  EXPECT(u.head == c && u.len == 0 && u.chain_len == 1);
  u = Pop(f);
  EXPECT(u.head == d && u.len == 9 && u.chain_len == 1);
  EXPECT_EQ(f.driver->num_free(), 8u);
  // The next used descriptor is expected after the batch's five slots.
  const int e = Publish(f, 1, 0);
  f.ReturnAt(5, true, static_cast<uint16_t>(e), 3);
  u = Pop(f);
  EXPECT(u.head == e && u.len == 3);
  EXPECT(!f.driver->broken());
}

TEST(packed_in_order_driver_takes_batches_of_every_size_across_many_laps) {
  for (uint32_t q : {1u, 5u, 8u}) {
    auto f = InOrder(q);
    RingPosition used{0, true};
    uint32_t next = 0;  // the id expected next, in order
    std::vector<int> ids;
    for (uint32_t round = 0; round < 200; ++round) {
      // Fill what is free with one- and two-descriptor chains, then return them in batches
      // of 1..3 chains.
      while (f.driver->num_free() > 0) {
        const uint32_t n = (round + ids.size()) % 2 == 0 || f.driver->num_free() < 2 ? 1 : 2;
        ids.push_back(Publish(f, n, n - 1));
      }
      size_t taken = 0;
      while (taken < ids.size()) {
        const size_t batch = std::min<size_t>(1 + (round + taken) % 3, ids.size() - taken);
        const int last = ids[taken + batch - 1];
        f.ReturnAt(used.index, used.wrap, static_cast<uint16_t>(last), 5);
        EXPECT_EQ(f.driver->UsedPending(), batch);
        for (size_t i = 0; i < batch; ++i) {
          const UsedChain u = Pop(f);
          EXPECT_EQ(u.head, ids[taken + i]);
          EXPECT_EQ(u.len, i + 1 == batch ? 5u : 16u);
          used.Advance(u.chain_len, q);
          ++next;
        }
        taken += batch;
      }
      ids.clear();
      EXPECT_EQ(f.driver->num_free(), q);
    }
    EXPECT(next >= 200);
    EXPECT(!f.driver->broken());
  }
}

TEST(packed_in_order_driver_works_with_our_device_writing_one_used_descriptor_per_chain) {
  auto f = InOrder(5);
  for (uint32_t i = 0; i < 50; ++i) {
    const int id = Publish(f, 1 + i % 2, i % 2);
    Chain c;
    EXPECT(f.device->Pop(&c));
    EXPECT_EQ(c.head, id);
    f.device->PushUsed(c.head, 7);
    f.device->PublishUsed();
    const UsedChain u = Pop(f);
    EXPECT(u.head == id && u.len == 7);
  }
}

TEST(packed_in_order_driver_rejects_a_batch_naming_a_chain_that_is_not_outstanding) {
  {
    // Free: never handed out.
    auto f = InOrder(8);
    Publish(f, 1, 0);
    f.ReturnAt(0, true, 5, 0);
    ExpectBroken(f, "used-id-not-outstanding");
  }
  {
    // Added but not yet published.
    auto f = InOrder(8);
    Publish(f, 1, 0);
    const int hidden = f.AddChain(1, 0, 16);
    f.ReturnAt(0, true, static_cast<uint16_t>(hidden), 0);
    ExpectBroken(f, "used-id-not-outstanding");
  }
  {
    // Returned already: a second batch naming it again.
    auto f = InOrder(8);
    const int a = Publish(f, 1, 0);
    Publish(f, 1, 0);
    f.ReturnAt(0, true, static_cast<uint16_t>(a), 0);
    EXPECT_EQ(f.driver->UsedPending(), 1u);
    f.ReturnAt(1, true, static_cast<uint16_t>(a), 0);
    EXPECT_BAD_RING(f.driver->UsedPendingFresh(), "used-id-not-outstanding");
  }
}

TEST(packed_in_order_driver_rejects_a_batch_id_past_the_ring) {
  for (uint16_t id : {uint16_t{4}, uint16_t{0x7fff}, uint16_t{0xffff}}) {
    auto g = InOrder(4);
    Publish(g, 1, 0);
    g.ReturnAt(0, true, id, 0);
    ExpectBroken(g, "used-id-out-of-range");
  }
}

TEST(packed_in_order_driver_bounds_the_last_chains_length_only) {
  auto f = InOrder(8);
  Publish(f, 1, 0);
  const int b = Publish(f, 1, 0);
  f.ReturnAt(0, true, static_cast<uint16_t>(b), 17);  // 16 writable bytes
  ExpectBroken(f, "used-len-too-large");
}

TEST(packed_driver_without_in_order_takes_a_used_descriptor_for_its_own_chain_only) {
  // Out-of-order use: the descriptor names the second chain and stands for it alone.
  PackedRingFixture f(8, false);
  const int a = Publish(f, 1, 0);
  const int b = Publish(f, 2, 1);
  f.ReturnAt(0, true, static_cast<uint16_t>(b), 4);
  EXPECT_EQ(f.driver->UsedPending(), 1u);
  const UsedChain u = Pop(f);
  EXPECT(u.head == b && u.len == 4 && u.chain_len == 2);
  EXPECT_EQ(f.driver->outstanding(), 1u);
  f.ReturnAt(2, true, static_cast<uint16_t>(a), 1);
  EXPECT(Pop(f).head == a);
}

// --- resumption on a new device -------------------------------------------------------

TEST(packed_resume_makes_every_unreturned_chain_available_again_in_order) {
  // The old device returns b before a (writing b's used descriptor over a's slot); the
  // driver then fills the freed slots, wrapping onto slot 0 of the next lap.
  PackedRingFixture f(4, false);
  const int a = f.AddChain(1, 0, 16);
  const int b = f.AddChain(1, 0, 16);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c) && c.head == a);
  EXPECT(f.device->Pop(&c) && c.head == b);
  f.device->PushUsed(static_cast<uint16_t>(b), 2);
  f.device->PublishUsed();
  EXPECT(Pop(f).head == b);
  const int d = f.AddChain(2, 1, 16);  // slots 2-3
  const int e = f.AddChain(1, 0, 16);  // slot 0 of the second lap
  f.driver->Publish();
  EXPECT_EQ(f.driver->num_free(), 0u);

  const uint16_t base = f.driver->PrepareResume();
  EXPECT_EQ(base, 0x8001);  // slot 1, first lap
  PackedDeviceQueue fresh(f.view, f.memory.get(), false, base);
  EXPECT_EQ(fresh.AvailPending(), 4u);  // descriptors: a, both of d, e
  const int order[] = {a, d, e};
  for (int id : order) {
    EXPECT(fresh.Pop(&c));
    EXPECT_EQ(c.head, id);
    EXPECT_EQ(c.segments.size(), id == d ? 2u : 1u);
    // The same buffers as first given: the fixture's address for (id, descriptor 0).
    EXPECT_EQ(c.segments[0].len, 16u);
  }
  EXPECT(!fresh.Pop(&c));
  // The new device returns them; the driver takes them from the base on.
  for (int id : order) fresh.PushUsed(static_cast<uint16_t>(id), 1);
  fresh.PublishUsed();
  for (int id : order) EXPECT_EQ(Pop(f).head, id);
  EXPECT_EQ(f.driver->num_free(), 4u);
  EXPECT(!f.driver->broken());
}

TEST(packed_resume_takes_what_the_old_device_returned_but_the_driver_had_not_seen) {
  for (bool in_order : {false, true}) {
    PackedRingFixture f(8, false, true, 0x8000, in_order);
    const int a = Publish(f, 1, 0);
    const int b = Publish(f, 1, 0);
    const int c = Publish(f, 1, 0);
    // The old device returns a before it goes; the driver never looked.
    f.ReturnAt(0, true, static_cast<uint16_t>(a), 3);
    const uint16_t base = f.driver->PrepareResume();
    EXPECT_EQ(base, 0x8001);
    EXPECT_EQ(f.driver->UsedPending(), 1u);
    EXPECT(Pop(f).head == a);
    PackedDeviceQueue fresh(f.view, f.memory.get(), false, base);
    Chain ch;
    EXPECT(fresh.Pop(&ch) && ch.head == b);
    EXPECT(fresh.Pop(&ch) && ch.head == c);
    EXPECT(!fresh.Pop(&ch));
  }
}

TEST(packed_resume_on_an_in_order_batch_the_old_device_half_returned) {
  // DPDK returns a batch with one used descriptor over its first slot; the chains after
  // the batch keep their descriptors, the batch's slots are the driver's again.
  auto f = InOrder(4);
  const int a = Publish(f, 1, 0);
  const int b = Publish(f, 1, 0);
  const int c = Publish(f, 2, 1);
  f.ReturnAt(0, true, static_cast<uint16_t>(b), 0);
  EXPECT(Pop(f).head == a && Pop(f).head == b);
  const int d = Publish(f, 1, 0);  // slot 0, second lap
  const uint16_t base = f.driver->PrepareResume();
  EXPECT_EQ(base, 0x8002);
  PackedDeviceQueue fresh(f.view, f.memory.get(), false, base);
  Chain ch;
  EXPECT(fresh.Pop(&ch) && ch.head == c && ch.segments.size() == 2u);
  EXPECT(fresh.Pop(&ch) && ch.head == d);
  EXPECT(!fresh.Pop(&ch));
  // One used descriptor for both, at the base.
  f.ReturnAt(2, true, static_cast<uint16_t>(d), 4);
  EXPECT(Pop(f).head == c);
  const UsedChain last = Pop(f);
  EXPECT(last.head == d && last.len == 4);
}
