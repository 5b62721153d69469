// VIRTIO_F_IN_ORDER on the driver side of a split ring: descriptors go out in ring order
// (chain links x → x+1, wrapping at the table's end), and a device may return a batch of
// chains with one used entry naming the batch's last chain while used->idx moves by the
// batch's size; every chain before it is then used, counted at its full writable size.
// A used entry that names a chain out of order, beyond what the device's index covers, or
// never published breaks the queue, and entries already resolved cannot be changed by the
// device rewriting the shared ring afterwards.
#include <cstdint>
#include <memory>
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

// A fixture whose driver negotiated IN_ORDER.
std::unique_ptr<RingFixture> InOrder(uint32_t queue_size) {
  auto f = std::make_unique<RingFixture>(queue_size, false);
  f->driver = std::make_unique<DriverQueue>(f->view, false, true);
  return f;
}

// Adds and publishes one chain of `n` device-writable buffers of 16 bytes; returns its head.
int Publish(RingFixture& f, uint32_t n) {
  const int head = f.AddChain(n, 0, 16);
  f.driver->Publish();
  return head;
}

// An in-order queue of 8 with `chains` single-buffer chains published: heads 0, 1, ...
std::unique_ptr<RingFixture> WithChains(uint32_t chains) {
  auto f = InOrder(8);
  for (uint32_t i = 0; i < chains; ++i) Publish(*f, 1);
  return f;
}

// The device writes one used entry, at the first slot, naming `id`, and moves used->idx.
void DeviceUses(RingFixture& f, uint32_t id, uint32_t len, uint16_t used_idx) {
  f.SetUsed(0, id, len);
  f.SetUsedIdx(used_idx);
}

UsedChain Pop(RingFixture& f) {
  UsedChain u{};
  EXPECT(f.driver->PopUsed(&u));
  return u;
}

}  // namespace

TEST(in_order_driver_hands_out_descriptors_in_ring_order_across_the_table_end) {
  auto f = InOrder(8);
  std::vector<int> heads;
  // Chains of 3, each returned before the next is added: 0-2, 3-5, 6-7-0, 1-3, ...
  for (int round = 0; round < 6; ++round) {
    const int head = Publish(*f, 3);
    heads.push_back(head);
    const uint16_t used = f->used_idx();
    f->SetUsed(used, static_cast<uint32_t>(head), 0);
    f->SetUsedIdx(static_cast<uint16_t>(used + 1));
    EXPECT_EQ(Pop(*f).head, head);
  }
  EXPECT(heads == (std::vector<int>{0, 3, 6, 1, 4, 7}));
  // The last chain, at 7, continued at 0 and then at 1, as IN_ORDER requires.
  EXPECT_EQ(LoadDesc(&f->view.descs()[7]).next, 0);
  EXPECT_EQ(LoadDesc(&f->view.descs()[0]).next, 1);
  EXPECT_EQ(f->driver->num_free(), 8u);
}

TEST(in_order_driver_takes_one_used_entry_for_a_batch_of_chains) {
  auto f = InOrder(8);
  const int a = Publish(*f, 1);
  const int b = Publish(*f, 2);
  const int c = Publish(*f, 1);
  const int d = Publish(*f, 1);
  EXPECT(a == 0 && b == 1 && c == 3 && d == 4);
  // One entry at the batch's first slot names its last chain, c; the index moves by 3.
  f->SetUsed(0, 3, 9);
  f->SetUsed(1, 0xdead, 0xffffffff);  // slots the batch skips are never read
  f->SetUsedIdx(3);
  EXPECT_EQ(f->driver->UsedPending(), 3u);
  EXPECT_EQ(f->driver->PeekUsed(1).head, 1);
  UsedChain u = Pop(*f);
  EXPECT(u.head == 0 && u.len == 16 && u.chain_len == 1);
  u = Pop(*f);
  EXPECT(u.head == 1 && u.len == 32 && u.chain_len == 2);
  u = Pop(*f);
  EXPECT(u.head == 3 && u.len == 9 && u.chain_len == 1);
  // The next entry is an ordinary one again.
  f->SetUsed(3, 4, 7);
  f->SetUsedIdx(4);
  u = Pop(*f);
  EXPECT(u.head == 4 && u.len == 7);
  EXPECT_EQ(f->driver->num_free(), 8u);
  EXPECT(!f->driver->broken());
}

TEST(in_order_driver_works_with_a_device_that_writes_every_used_entry) {
  auto f = InOrder(4);
  // Across several wraps of the table and of the 16-bit indices' low bits.
  for (uint32_t i = 0; i < 40; ++i) {
    const int head = Publish(*f, 1 + i % 2);
    Chain chain;
    EXPECT(f->device->Pop(&chain));
    EXPECT_EQ(chain.head, head);
    f->device->PushUsed(chain.head, 5);
    f->device->PublishUsed();
    const UsedChain u = Pop(*f);
    EXPECT(u.head == head && u.len == 5);
  }
  EXPECT_EQ(f->driver->num_free(), 4u);
}

TEST(in_order_driver_rejects_a_used_id_beyond_what_the_device_index_covers) {
  auto f = WithChains(4);
  // Names chain 2 as the end of a batch, but the index says only 2 chains are used.
  DeviceUses(*f, 2, 0, 2);
  EXPECT_BAD_RING(f->driver->UsedPending(), "used-id-out-of-order");
  EXPECT(f->driver->broken());
  UsedChain u;
  EXPECT_THROWS_CODE(f->driver->PopUsed(&u), ErrorCode::kQueueBroken);
}

TEST(in_order_driver_rejects_a_used_id_out_of_order_or_never_published) {
  {
    // Chain 1 returned before chain 0, one entry each.
    auto f = WithChains(2);
    DeviceUses(*f, 1, 0, 1);
    UsedChain u;
    EXPECT_BAD_RING(f->driver->PopUsed(&u), "used-id-out-of-order");
  }
  {
    // A batch ending in a chain that was added but never published.
    auto f = WithChains(2);
    f->AddChain(1, 0, 16);  // head 2, not published
    DeviceUses(*f, 2, 0, 2);
    EXPECT_BAD_RING(f->driver->UsedPending(), "used-id-out-of-order");
  }
  {
    // Ids that are no chain at all: free descriptors, out of range.
    for (uint32_t id : {6u, 8u, 0xffffffffu}) {
      auto f = WithChains(1);
      DeviceUses(*f, id, 0, 1);
      EXPECT_BAD_RING(f->driver->UsedPending(), "used-id-out-of-order");
    }
  }
}

TEST(in_order_driver_reads_each_used_entry_once) {
  auto f = WithChains(2);
  DeviceUses(*f, 1, 3, 2);
  EXPECT_EQ(f->driver->UsedPending(), 2u);
  // The device rewrites the entry after the driver read it: too late to change anything.
  f->SetUsed(0, 0, 0xffffffff);
  EXPECT_EQ(Pop(*f).head, 0);
  const UsedChain u = Pop(*f);
  EXPECT(u.head == 1 && u.len == 3);
}
