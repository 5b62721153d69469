// DriverQueuePair and DeviceQueuePair in one process over one shared region described by
// a MemoryTable: messages of every edge size cross both ways byte for byte, large
// messages are split over (and reassembled from) several receive buffers, oversized
// messages are refused without harm, a full ring pushes back with a partial count, the
// notification policy and the counters follow the rules, and bad payload-level input
// from either peer breaks the queue with kBadRing.
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"
#include "ring_fixture.h"
#include "vring/device_queue_pair.h"
#include "vring/driver_queue_pair.h"
#include "vring/error.h"
#include "vring/event_fd.h"
#include "vring/memory_table.h"
#include "vring/net_header.h"
#include "vring/queue_pair_layout.h"
#include "vring/shared_region.h"
#include "vring/split_ring.h"

using namespace vring;

namespace {

// The region's first byte in descriptor and ring addresses (as virtio-user, one value for
// both spaces); deliberately not the host address.
constexpr uint64_t kGuestBase = 0x100000000ull;

// Set while the behaviour tests run again on packed rings (see the last test).
bool g_packed = false;

QueuePairConfig Config(uint32_t q, uint32_t bs, uint32_t max_message, bool event_idx = true,
                       bool mergeable = true) {
  QueuePairConfig c;
  c.queue_size = q;
  c.buffer_size = bs;
  c.max_message = max_message;
  c.event_idx = event_idx;
  c.mergeable = mergeable;
  c.packed = g_packed;
  return c;
}

struct Fds {
  int rx_kick = -1, tx_kick = -1, rx_call = -1, tx_call = -1;
};

// A new ring's base: index 0, or for a packed ring slot 0 with wrap counter 1.
uint16_t Base(const QueuePairConfig& c) { return c.packed ? 0x8000 : 0; }

// Both ends over one guard-paged memfd. `device_config` defaults to the driver's.
struct Pair {
  QueuePairConfig cfg;
  QueuePairLayout layout;
  SharedRegion region;
  std::shared_ptr<Mapping> mapping;
  std::shared_ptr<MemoryTable> memory;
  std::unique_ptr<DriverQueuePair> drv;
  std::unique_ptr<DeviceQueuePair> dev;

  explicit Pair(const QueuePairConfig& c, const Fds& fds = {}, const QueuePairConfig* device_config = nullptr)
      : cfg(c),
        layout(ComputeQueuePairLayout(c)),
        region(SharedRegion::Create(layout.total_bytes + 65536, "queue-pair-test")),
        mapping(ringtest::GuardedMap(region.fd(), region.size())),
        memory(std::make_shared<MemoryTable>()) {
    memory->Add(kGuestBase, kGuestBase, mapping->size(), mapping);
    drv = std::make_unique<DriverQueuePair>(mapping, 0, kGuestBase, c, fds.rx_kick, fds.tx_kick);
    dev = std::make_unique<DeviceQueuePair>(memory, drv->rx_addresses(), drv->tx_addresses(),
                                            device_config ? *device_config : c, Base(c), Base(c), fds.rx_call,
                                            fds.tx_call);
  }

  uint8_t* At(uint64_t off) const { return mapping->data() + off; }
  SplitRingView Ring(const RingAddresses& r) const {
    SplitRingView v;
    v.desc = At(r.desc);
    v.avail = At(r.avail);
    v.used = At(r.used);
    v.size = cfg.queue_size;
    return v;
  }
  SplitRingView rx() const { return Ring(layout.rx); }
  SplitRingView tx() const { return Ring(layout.tx); }
  uint8_t* RxBuffer(uint32_t id) const { return At(layout.rx_buffers + uint64_t{id} * cfg.buffer_size); }
};

uint8_t PatternByte(uint32_t seed, uint64_t i) { return static_cast<uint8_t>((seed * 2654435761u) >> 24 ^ (i * 31 + seed)); }

std::vector<uint8_t> Message(uint32_t size, uint32_t seed) {
  std::vector<uint8_t> m(size);
  for (uint32_t i = 0; i < size; ++i) m[i] = PatternByte(seed, i);
  return m;
}

// A batch of messages packed back to back, as Send wants them.
struct Batch {
  std::vector<uint8_t> data;
  std::vector<uint32_t> lengths;
  void Add(uint32_t size, uint32_t seed) {
    const std::vector<uint8_t> m = Message(size, seed);
    data.insert(data.end(), m.begin(), m.end());
    lengths.push_back(size);
  }
  // Messages [from, end) only.
  Batch Tail(uint32_t from) const {
    Batch b;
    uint64_t off = 0;
    for (uint32_t i = 0; i < from; ++i) off += lengths[i];
    b.data.assign(data.begin() + static_cast<long>(off), data.end());
    b.lengths.assign(lengths.begin() + from, lengths.end());
    return b;
  }
  const uint8_t* ptr() const { return data.empty() ? nullptr : data.data(); }
  uint32_t count() const { return static_cast<uint32_t>(lengths.size()); }
};

// What one Receive call returned.
struct Received {
  std::vector<uint8_t> data;
  std::vector<uint32_t> lengths;
  uint32_t count = 0;
  // Message i's bytes match Message(size, seed)?
  bool Is(uint32_t i, uint32_t size, uint32_t seed) const {
    if (i >= count || lengths[i] != size) return false;
    const uint64_t off = std::accumulate(lengths.begin(), lengths.begin() + i, uint64_t{0});
    for (uint32_t k = 0; k < size; ++k) {
      if (data[off + k] != PatternByte(seed, k)) return false;
    }
    return true;
  }
};

template <typename End>
Received ReceiveFrom(End& end, uint32_t max_count, uint64_t capacity) {
  Received r;
  r.data.assign(capacity, 0xee);
  r.lengths.assign(max_count == 0 ? 1 : max_count, 0);
  r.count = end.Receive(r.data.data(), capacity, r.lengths.data(), max_count);
  return r;
}

template <typename End>
Received ReceiveAll(End& end, uint32_t max_count = 1024) {
  return ReceiveFrom(end, max_count, uint64_t{end.config().max_message} * 3 + 16384);
}

uint16_t UsedIdx(const SplitRingView& v) { return LoadAcquire(v.used_idx()); }
uint16_t AvailIdx(const SplitRingView& v) { return LoadAcquire(v.avail_idx()); }

}  // namespace

// ---------------------------------------------------------------------------------------
// Exact delivery
// ---------------------------------------------------------------------------------------

TEST(queue_pair_messages_of_edge_sizes_cross_driver_to_device_intact) {
  const uint32_t bs = 2048;
  Pair p(Config(256, bs, 65536));
  const uint32_t sizes[] = {0, 1, 64, bs - 12, bs - 11, bs, bs + 1, 2 * bs - 12, 65535, 65536};
  uint32_t seed = 1;
  for (uint32_t size : sizes) {
    Batch b;
    b.Add(size, seed);
    EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 1), 1u);
    Received r = ReceiveAll(*p.dev);
    EXPECT_EQ(r.count, 1u);
    EXPECT(r.Is(0, size, seed));
    ++seed;
  }
  EXPECT(!p.drv->broken() && !p.dev->broken());
}

TEST(queue_pair_messages_of_edge_sizes_cross_device_to_driver_intact) {
  const uint32_t bs = 2048;
  Pair p(Config(256, bs, 65536));
  const uint32_t sizes[] = {0, 1, 64, bs - 12, bs - 11, bs, bs + 1, 2 * bs - 12, 65535, 65536};
  uint32_t seed = 100;
  for (uint32_t size : sizes) {
    Batch b;
    b.Add(size, seed);
    EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 1), 1u);
    Received r = ReceiveAll(*p.drv);
    EXPECT_EQ(r.count, 1u);
    EXPECT(r.Is(0, size, seed));
    ++seed;
  }
  EXPECT(!p.drv->broken() && !p.dev->broken());
}

TEST(queue_pair_a_batch_of_mixed_sizes_arrives_in_order_both_ways) {
  const uint32_t bs = 2048;
  Pair p(Config(256, bs, 65536));
  Batch b;
  const uint32_t sizes[] = {65536, 0, 1, bs - 12, 64, bs, 0, 65536, bs + 1};
  for (uint32_t i = 0; i < 9; ++i) b.Add(sizes[i], 7 + i);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), b.count()), 9u);
  Received r = ReceiveAll(*p.dev);
  EXPECT_EQ(r.count, 9u);
  for (uint32_t i = 0; i < 9; ++i) EXPECT(r.Is(i, sizes[i], 7 + i));

  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), b.count()), 9u);
  Received back = ReceiveAll(*p.drv);
  EXPECT_EQ(back.count, 9u);
  for (uint32_t i = 0; i < 9; ++i) EXPECT(back.Is(i, sizes[i], 7 + i));
}

TEST(queue_pair_transmitted_message_is_one_descriptor_a_zeroed_net_header_then_the_payload) {
  // One span of the transmit area per message, whatever its size: the device reads it where
  // it lies, and a message costs one descriptor, not one per buffer.
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(300, 5);  // 312 bytes: more than one buffer's worth
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 1), 1u);
  const SplitRingView tx = p.tx();
  const uint16_t head = LoadRelaxed(tx.avail_ring(0));
  const RingDesc d0 = LoadDesc(&tx.descs()[head]);
  EXPECT_EQ(d0.len, 312u);
  EXPECT_EQ(d0.flags, 0);
  EXPECT_EQ(d0.addr, kGuestBase + p.layout.tx_buffers);
  const uint8_t* hdr = p.At(d0.addr - kGuestBase);
  for (uint32_t i = 0; i < kNetHeaderSize; ++i) EXPECT_EQ(hdr[i], 0);
  for (uint32_t i = 0; i < 300; ++i) EXPECT_EQ(hdr[kNetHeaderSize + i], PatternByte(5, i));
}

// ---------------------------------------------------------------------------------------
// Mergeable receive buffers
// ---------------------------------------------------------------------------------------

TEST(queue_pair_mergeable_message_spans_receive_buffers_and_is_reassembled) {
  const uint32_t bs = 2048;
  Pair p(Config(256, bs, 65536));
  const SplitRingView rx = p.rx();
  EXPECT_EQ(AvailIdx(rx), 256);  // every receive buffer posted
  Batch b;
  b.Add(65536, 42);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 1), 1u);
  // 12 + 65536 bytes in 2048-byte buffers: 33 of them, the last holding 12 bytes.
  EXPECT_EQ(UsedIdx(rx), 33);
  const UsedElem first = *rx.used_ring(0);
  EXPECT_EQ(first.len, bs);
  uint16_t num_buffers = 0;
  std::memcpy(&num_buffers, p.RxBuffer(first.id) + kNetHeaderNumBuffersOffset, 2);
  EXPECT_EQ(num_buffers, 33);
  EXPECT_EQ(rx.used_ring(32)->len, 12u);
  for (uint32_t i = 1; i < 32; ++i) EXPECT_EQ(rx.used_ring(i)->len, bs);

  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 1u);
  EXPECT(r.Is(0, 65536, 42));
  // The 33 buffers went straight back to the device.
  EXPECT_EQ(AvailIdx(rx), 256 + 33);
}

TEST(queue_pair_message_filling_one_buffer_exactly_takes_one_buffer) {
  const uint32_t bs = 256;
  Pair p(Config(16, bs, 1024));
  const SplitRingView rx = p.rx();
  Batch b;
  b.Add(bs - 12, 1);  // header + payload = one full buffer
  b.Add(bs - 11, 2);  // one byte more: two buffers
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 2), 2u);
  EXPECT_EQ(UsedIdx(rx), 3);
  EXPECT_EQ(rx.used_ring(0)->len, bs);
  EXPECT_EQ(rx.used_ring(1)->len, bs);
  EXPECT_EQ(rx.used_ring(2)->len, 1u);
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 2u);
  EXPECT(r.Is(0, bs - 12, 1));
  EXPECT(r.Is(1, bs - 11, 2));
}

TEST(queue_pair_driver_waits_until_every_buffer_of_a_mergeable_message_is_used) {
  Pair p(Config(16, 256, 1024));
  const SplitRingView rx = p.rx();
  Batch b;
  b.Add(700, 3);  // 712 bytes: 3 buffers
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 1), 1u);
  EXPECT_EQ(UsedIdx(rx), 3);
  // Pretend the device has published only two of the three buffers so far.
  StoreRelease(rx.used_idx(), 2);
  EXPECT(p.drv->WaitReceivable(0));  // something is there...
  Received none = ReceiveAll(*p.drv);
  EXPECT_EQ(none.count, 0u);  // ...but not a whole message
  EXPECT(!p.drv->broken());
  StoreRelease(rx.used_idx(), 3);
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 1u);
  EXPECT(r.Is(0, 700, 3));
}

// ---------------------------------------------------------------------------------------
// Oversized messages
// ---------------------------------------------------------------------------------------

TEST(queue_pair_driver_refuses_an_oversized_message_and_sends_nothing_of_the_batch) {
  Pair p(Config(64, 2048, 65536));
  Batch b;
  b.Add(10, 1);
  b.Add(65537, 2);
  EXPECT_THROWS_CODE(p.drv->Send(b.ptr(), b.lengths.data(), 2), ErrorCode::kOversizedMessage);
  EXPECT(!p.drv->broken());
  EXPECT_EQ(p.drv->stats().messages_sent, 0u);
  EXPECT_EQ(AvailIdx(p.tx()), 0);
  EXPECT(!p.dev->WaitReceivable(0));
  // The queue still works.
  Batch ok;
  ok.Add(65536, 3);
  EXPECT_EQ(p.drv->Send(ok.ptr(), ok.lengths.data(), 1), 1u);
  Received r = ReceiveAll(*p.dev);
  EXPECT_EQ(r.count, 1u);
  EXPECT(r.Is(0, 65536, 3));
}

TEST(queue_pair_device_refuses_an_oversized_message_and_sends_nothing_of_the_batch) {
  Pair p(Config(64, 2048, 65536));
  Batch b;
  b.Add(10, 1);
  b.Add(10, 2);
  b.lengths[1] = 0xffffffffu;  // only the lengths are looked at before refusing
  EXPECT_THROWS_CODE(p.dev->Send(b.ptr(), b.lengths.data(), 2), ErrorCode::kOversizedMessage);
  EXPECT(!p.dev->broken());
  EXPECT_EQ(p.dev->stats().messages_sent, 0u);
  EXPECT_EQ(UsedIdx(p.rx()), 0);
  Batch ok;
  ok.Add(65536, 4);
  EXPECT_EQ(p.dev->Send(ok.ptr(), ok.lengths.data(), 1), 1u);
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 1u);
  EXPECT(r.Is(0, 65536, 4));
}

// ---------------------------------------------------------------------------------------
// Non-mergeable mode
// ---------------------------------------------------------------------------------------

TEST(queue_pair_non_mergeable_delivers_each_message_in_one_buffer) {
  const uint32_t bs = 2048;
  Pair p(Config(16, bs, bs - 12, true, /*mergeable=*/false));
  const SplitRingView rx = p.rx();
  Batch b;
  b.Add(0, 1);
  b.Add(bs - 12, 2);
  b.Add(100, 3);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 3), 3u);
  EXPECT_EQ(UsedIdx(rx), 3);
  for (uint16_t i = 0; i < 3; ++i) {
    uint16_t num_buffers = 0;
    std::memcpy(&num_buffers, p.RxBuffer(rx.used_ring(i)->id) + kNetHeaderNumBuffersOffset, 2);
    EXPECT_EQ(num_buffers, 1);
  }
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 3u);
  EXPECT(r.Is(0, 0, 1));
  EXPECT(r.Is(1, bs - 12, 2));
  EXPECT(r.Is(2, 100, 3));

  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 3), 3u);
  Received t = ReceiveAll(*p.dev);
  EXPECT_EQ(t.count, 3u);
  EXPECT(t.Is(1, bs - 12, 2));

  Batch big;
  big.Add(bs - 11, 4);
  EXPECT_THROWS_CODE(p.dev->Send(big.ptr(), big.lengths.data(), 1), ErrorCode::kOversizedMessage);
  EXPECT_THROWS_CODE(p.drv->Send(big.ptr(), big.lengths.data(), 1), ErrorCode::kOversizedMessage);
}

TEST(queue_pair_non_mergeable_device_drops_a_message_larger_than_one_receive_buffer) {
  // The driver posts 64-byte receive buffers; a device without mergeable buffers cannot
  // split a message over them, so (like a NIC) it drops it, counts it, and moves on.
  const QueuePairConfig driver_cfg = Config(32, 64, 1024, true, true);
  const QueuePairConfig device_cfg = Config(32, 2048, 1024, true, false);
  Pair p(driver_cfg, {}, &device_cfg);
  Batch b;
  b.Add(100, 1);  // 112 bytes: does not fit
  b.Add(52, 2);   // 64 bytes: fits exactly
  b.Add(53, 3);   // 65 bytes: does not fit
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 3), 3u);  // all handled
  EXPECT_EQ(p.dev->stats().dropped, 2u);
  EXPECT_EQ(p.dev->stats().messages_sent, 1u);
  EXPECT_EQ(p.dev->stats().bytes_sent, 52u);
  EXPECT_EQ(UsedIdx(p.rx()), 1);  // dropped messages consumed no receive buffer
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 1u);
  EXPECT(r.Is(0, 52, 2));
  EXPECT(!p.dev->broken() && !p.drv->broken());
}

// ---------------------------------------------------------------------------------------
// Backpressure and receive limits
// ---------------------------------------------------------------------------------------

TEST(queue_pair_driver_send_returns_a_partial_count_when_the_ring_is_full) {
  Pair p(Config(16, 256, 1024));
  Batch b;
  for (uint32_t i = 0; i < 20; ++i) b.Add(100, i);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 20), 16u);
  EXPECT(!p.drv->WaitSendable(0));
  Batch rest = b.Tail(16);
  EXPECT_EQ(p.drv->Send(rest.ptr(), rest.lengths.data(), 4), 0u);  // still full

  Received r = ReceiveAll(*p.dev);
  EXPECT_EQ(r.count, 16u);
  for (uint32_t i = 0; i < 16; ++i) EXPECT(r.Is(i, 100, i));
  EXPECT(p.drv->WaitSendable(0));
  EXPECT_EQ(p.drv->Send(rest.ptr(), rest.lengths.data(), 4), 4u);
  Received r2 = ReceiveAll(*p.dev);
  EXPECT_EQ(r2.count, 4u);
  for (uint32_t i = 0; i < 4; ++i) EXPECT(r2.Is(i, 100, 16 + i));
}

TEST(queue_pair_driver_send_stops_at_the_first_message_that_does_not_fit) {
  // Messages are never reordered: a small one behind a big one that does not fit waits.
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(1000, 1);  // 1012 bytes: 4 buffers
  b.Add(1000, 2);
  b.Add(1000, 3);
  b.Add(500, 4);   // 512 bytes: 2 buffers, 14 in use
  b.Add(1000, 5);  // needs 4, only 2 free
  b.Add(1, 6);     // would fit, but must not overtake
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 6), 4u);
  Received r = ReceiveAll(*p.dev);
  EXPECT_EQ(r.count, 4u);
  EXPECT(r.Is(3, 500, 4));
  Batch rest = b.Tail(4);
  EXPECT_EQ(p.drv->Send(rest.ptr(), rest.lengths.data(), 2), 2u);
  Received r2 = ReceiveAll(*p.dev);
  EXPECT_EQ(r2.count, 2u);
  EXPECT(r2.Is(0, 1000, 5));
  EXPECT(r2.Is(1, 1, 6));
}

TEST(queue_pair_device_send_returns_a_partial_count_when_receive_buffers_run_out) {
  Pair p(Config(16, 256, 1024));
  Batch b;
  for (uint32_t i = 0; i < 20; ++i) b.Add(100, i);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 20), 16u);
  EXPECT(!p.dev->WaitSendable(0));
  Batch rest = b.Tail(16);
  EXPECT_EQ(p.dev->Send(rest.ptr(), rest.lengths.data(), 4), 0u);
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 16u);
  for (uint32_t i = 0; i < 16; ++i) EXPECT(r.Is(i, 100, i));
  EXPECT(p.dev->WaitSendable(0));
  EXPECT_EQ(p.dev->Send(rest.ptr(), rest.lengths.data(), 4), 4u);
  Received r2 = ReceiveAll(*p.drv);
  EXPECT_EQ(r2.count, 4u);
  for (uint32_t i = 0; i < 4; ++i) EXPECT(r2.Is(i, 100, 16 + i));
}

TEST(queue_pair_device_never_starts_a_message_it_cannot_finish) {
  // 16 receive buffers of 256 bytes: 700 + 3 * 1000 bytes take 3 + 4 + 4 + 4 = 15. The
  // fifth message needs 4 buffers and 1 is left: the device takes that one, finds it is not
  // enough, and puts it back; the message waits whole.
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(700, 0);
  for (uint32_t i = 1; i < 5; ++i) b.Add(1000, i);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 5), 4u);
  EXPECT_EQ(UsedIdx(p.rx()), 15);
  EXPECT_EQ(p.dev->rx_last_avail(), 15);
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 4u);
  EXPECT(r.Is(0, 700, 0));
  Batch rest = b.Tail(4);
  EXPECT_EQ(p.dev->Send(rest.ptr(), rest.lengths.data(), 1), 1u);
  Received r2 = ReceiveAll(*p.drv);
  EXPECT_EQ(r2.count, 1u);
  EXPECT(r2.Is(0, 1000, 4));
}

TEST(queue_pair_device_sends_one_message_joined_from_parts_each_copied_once) {
  // 16 receive buffers of 256 bytes: a head of 20 and a body of 1500 bytes take 6 of them.
  Pair p(Config(16, 256, 3800));
  Batch whole;
  whole.Add(1520, 7);
  const ByteSpan parts[2] = {{whole.ptr(), 20}, {whole.ptr() + 20, 1500}};
  EXPECT(p.dev->SendJoined(parts, 2));
  EXPECT_EQ(p.dev->stats().messages_sent, 1u);
  EXPECT_EQ(p.dev->stats().bytes_sent, 1520u);
  Received r = ReceiveAll(*p.drv);
  EXPECT_EQ(r.count, 1u);
  EXPECT(r.Is(0, 1520, 7));
  // A message of 3000 + 700 bytes takes 15 buffers; with 10 of 16 in use nothing is taken,
  // and it goes whole once the driver has posted them again.
  Batch big;
  big.Add(3700, 8);
  const ByteSpan halves[2] = {{big.ptr(), 3000}, {big.ptr() + 3000, 700}};
  Batch filler;
  for (uint32_t i = 0; i < 10; ++i) filler.Add(200, 20 + i);
  EXPECT_EQ(p.dev->Send(filler.ptr(), filler.lengths.data(), 10), 10u);
  EXPECT(!p.dev->SendJoined(halves, 2));
  EXPECT_EQ(UsedIdx(p.rx()), 16);
  Received f = ReceiveAll(*p.drv);
  EXPECT_EQ(f.count, 10u);
  EXPECT(p.dev->SendJoined(halves, 2));
  Received r2 = ReceiveAll(*p.drv);
  EXPECT_EQ(r2.count, 1u);
  EXPECT(r2.Is(0, 3700, 8));
  // Parts adding up to more than max_message are refused whole.
  const ByteSpan over[2] = {{big.ptr(), 3700}, {big.ptr(), 200}};
  EXPECT_THROWS_CODE(p.dev->SendJoined(over, 2), ErrorCode::kOversizedMessage);
  EXPECT_EQ(p.dev->stats().messages_sent, 12u);
  EXPECT(!p.drv->broken() && !p.dev->broken());
}

namespace {

// The end of the two tests below: `sender` cannot place an 8000-byte message (seed 99) yet;
// once `receiver` has taken `more` messages it can, and the message arrives after the `left`
// messages of 100 bytes still queued (seeds `first` on).
template <typename Sender, typename Receiver>
void ExpectBigMessageGoesOnceRoomIsMade(Sender& sender, Receiver& receiver, uint32_t more, uint32_t left,
                                        uint32_t first) {
  Batch big;
  big.Add(8000, 99);
  EXPECT_EQ(sender.Send(big.ptr(), big.lengths.data(), 1), 0u);
  EXPECT_EQ(ReceiveFrom(receiver, more, 1 << 20).count, more);
  EXPECT(sender.WaitSendable(0, 8000));
  EXPECT_EQ(sender.Send(big.ptr(), big.lengths.data(), 1), 1u);
  const Received rest = ReceiveFrom(receiver, left, 1 << 20);
  EXPECT_EQ(rest.count, left);
  EXPECT(rest.Is(0, 100, first) && rest.Is(left - 1, 100, first + left - 1));
  const Received last = ReceiveFrom(receiver, 64, 1 << 20);
  EXPECT_EQ(last.count, 1u);
  EXPECT(last.Is(0, 8000, 99));
}

}  // namespace

TEST(queue_pair_device_waits_for_buffers_for_the_next_message_not_just_any) {
  // 64 receive buffers of 256 bytes; a message of 8000 bytes takes 32 of them. Reporting
  // "sendable" when Send cannot place the next message made a polling sender spin through
  // Send (take chains, find too few, put them back) at full speed until the driver caught up.
  Pair p(Config(64, 256, 8192));
  Batch small;
  for (uint32_t i = 0; i < 64; ++i) small.Add(100, i);  // one buffer each
  EXPECT_EQ(p.dev->Send(small.ptr(), small.lengths.data(), 64), 64u);
  EXPECT(!p.dev->WaitSendable(0));
  EXPECT_EQ(ReceiveFrom(*p.drv, 16, 1 << 20).count, 16u);  // 16 buffers posted again
  EXPECT(p.dev->WaitSendable(0));
  EXPECT(p.dev->WaitSendable(0, 100));
  EXPECT(!p.dev->WaitSendable(0, 8000));
  ExpectBigMessageGoesOnceRoomIsMade(*p.dev, *p.drv, 16, 32, 32);  // 32 posted
}

TEST(queue_pair_driver_waits_for_room_for_the_next_message_not_just_any) {
  // A 16 KiB transmit area: 14 messages of 1012 bytes take 14 KiB, and an 8000-byte message
  // needs one contiguous run of 8012.
  Pair p(Config(64, 256, 8192));
  Batch small;
  for (uint32_t i = 0; i < 14; ++i) small.Add(1000, i);
  EXPECT_EQ(p.drv->Send(small.ptr(), small.lengths.data(), 14), 14u);
  EXPECT(p.drv->WaitSendable(0));  // a small message fits after them
  EXPECT(!p.drv->WaitSendable(0, 8000));
  // Five completed: 5 KiB free at the start and 2 KiB at the end, neither run big enough.
  EXPECT_EQ(ReceiveFrom(*p.dev, 5, 1 << 20).count, 5u);
  EXPECT(!p.drv->WaitSendable(0, 8000));
  Batch big;
  big.Add(8000, 99);
  EXPECT_EQ(p.drv->Send(big.ptr(), big.lengths.data(), 1), 0u);
  // Three more: 8 KiB free at the start, where the message goes (the end stays unused).
  EXPECT_EQ(ReceiveFrom(*p.dev, 3, 1 << 20).count, 3u);
  EXPECT(p.drv->WaitSendable(0, 8000));
  EXPECT_EQ(p.drv->Send(big.ptr(), big.lengths.data(), 1), 1u);
  const Received rest = ReceiveFrom(*p.dev, 64, 1 << 20);
  EXPECT_EQ(rest.count, 7u);
  for (uint32_t i = 0; i < 6; ++i) EXPECT(rest.Is(i, 1000, 8 + i));
  EXPECT(rest.Is(6, 8000, 99));
}

TEST(queue_pair_receive_honours_max_count_and_capacity_and_keeps_the_rest) {
  Pair p(Config(64, 256, 1024));
  Batch b;
  for (uint32_t i = 0; i < 6; ++i) b.Add(600, i);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 6), 6u);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 6), 6u);
  for (int side = 0; side < 2; ++side) {
    auto take = [&](uint32_t max_count, uint64_t capacity) {
      return side == 0 ? ReceiveFrom(*p.dev, max_count, capacity) : ReceiveFrom(*p.drv, max_count, capacity);
    };
    Received a = take(2, 1 << 20);
    EXPECT_EQ(a.count, 2u);
    EXPECT(a.Is(1, 600, 1));
    // Capacity for one maxMessage (1024) holds one 600-byte message, not two.
    Received c = take(10, 1024);
    EXPECT_EQ(c.count, 1u);
    EXPECT(c.Is(0, 600, 2));
    Received zero = take(0, 1 << 20);
    EXPECT_EQ(zero.count, 0u);
    Received d = take(10, 1 << 20);
    EXPECT_EQ(d.count, 3u);
    EXPECT(d.Is(0, 600, 3));
    EXPECT(d.Is(2, 600, 5));
  }
  uint8_t small[1023];
  uint32_t len = 0;
  EXPECT_THROWS_CODE(p.drv->Receive(small, sizeof small, &len, 1), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(p.dev->Receive(small, sizeof small, &len, 1), ErrorCode::kInvalidArgument);
}

TEST(queue_pair_wait_with_zero_budget_reports_readiness_without_spinning) {
  Pair p(Config(16, 256, 1024));
  EXPECT(!p.drv->WaitReceivable(0));
  EXPECT(!p.dev->WaitReceivable(0));
  EXPECT(p.drv->WaitSendable(0));  // empty transmit ring
  EXPECT(p.dev->WaitSendable(0));  // receive buffers posted
  Batch b;
  b.Add(5, 1);
  p.drv->Send(b.ptr(), b.lengths.data(), 1);
  p.dev->Send(b.ptr(), b.lengths.data(), 1);
  EXPECT(p.drv->WaitReceivable(0));
  EXPECT(p.dev->WaitReceivable(0));
}

TEST(queue_pair_many_messages_run_across_the_index_wrap) {
  // 70 000 messages each way through 8-entry rings: every 16-bit index wraps.
  Pair p(Config(8, 64, 256, true, true));
  uint32_t sent_d = 0, got_d = 0, sent_v = 0, got_v = 0;
  const uint32_t total = 70000;
  while (got_d < total || got_v < total) {
    Batch bd, bv;
    for (uint32_t i = sent_d; i < total && i < sent_d + 8; ++i) bd.Add(i % 97, i);
    for (uint32_t i = sent_v; i < total && i < sent_v + 8; ++i) bv.Add((i * 7) % 200, i);
    uint32_t progress = 0;
    if (bd.count()) progress += p.drv->Send(bd.ptr(), bd.lengths.data(), bd.count());
    sent_d += progress;
    if (bv.count()) {
      const uint32_t n = p.dev->Send(bv.ptr(), bv.lengths.data(), bv.count());
      sent_v += n;
      progress += n;
    }
    Received at_dev = ReceiveAll(*p.dev);
    for (uint32_t k = 0; k < at_dev.count; ++k, ++got_d) {
      if (!at_dev.Is(k, got_d % 97, got_d)) throw harness::Failure{"driver→device message " + std::to_string(got_d)};
    }
    Received at_drv = ReceiveAll(*p.drv);
    for (uint32_t k = 0; k < at_drv.count; ++k, ++got_v) {
      if (!at_drv.Is(k, (got_v * 7) % 200, got_v)) throw harness::Failure{"device→driver message " + std::to_string(got_v)};
    }
    if (progress + at_dev.count + at_drv.count == 0) break;  // stuck: the checks below fail
  }
  EXPECT_EQ(got_d, total);
  EXPECT_EQ(got_v, total);
  EXPECT(p.drv->stats().messages_sent == total && p.dev->stats().messages_received == total);
  EXPECT(p.dev->stats().messages_sent == total && p.drv->stats().messages_received == total);
}

// ---------------------------------------------------------------------------------------
// Notifications and counters
// ---------------------------------------------------------------------------------------

namespace {

void CheckKickAndCallPolicy(bool event_idx) {
  EventFd rx_kick = EventFd::Create(), tx_kick = EventFd::Create();
  EventFd rx_call = EventFd::Create(), tx_call = EventFd::Create();
  Fds fds{rx_kick.fd(), tx_kick.fd(), rx_call.fd(), tx_call.fd()};
  Pair p(Config(16, 256, 1024, event_idx), fds);
  Batch one;
  one.Add(10, 1);

  // Transmit: the device polls, so it declines kicks.
  p.dev->DisarmReceive();
  EXPECT_EQ(p.drv->Send(one.ptr(), one.lengths.data(), 1), 1u);
  EXPECT_EQ(tx_kick.Drain(), 0u);
  EXPECT_EQ(p.drv->stats().notifications_sent, 0u);
  // Re-arming reports the waiting message (do not sleep), and after draining it the next
  // send kicks exactly once.
  EXPECT(p.dev->ArmReceive());
  EXPECT_EQ(ReceiveAll(*p.dev).count, 1u);
  EXPECT(!p.dev->ArmReceive());
  EXPECT_EQ(p.drv->Send(one.ptr(), one.lengths.data(), 1), 1u);
  EXPECT_EQ(tx_kick.Drain(), 1u);
  EXPECT_EQ(p.drv->stats().notifications_sent, 1u);
  if (event_idx) {
    // The device asked for one kick; until it re-arms, more sends stay silent.
    EXPECT_EQ(p.drv->Send(one.ptr(), one.lengths.data(), 1), 1u);
    EXPECT_EQ(tx_kick.Drain(), 0u);
  }
  ReceiveAll(*p.dev);

  // Receive: the driver polls, so it declines calls.
  p.drv->DisarmReceive();
  EXPECT_EQ(p.dev->Send(one.ptr(), one.lengths.data(), 1), 1u);
  EXPECT_EQ(rx_call.Drain(), 0u);
  EXPECT(p.drv->ArmReceive());
  EXPECT_EQ(ReceiveAll(*p.drv).count, 1u);
  EXPECT(!p.drv->ArmReceive());
  const uint64_t calls_before = p.dev->stats().notifications_sent;
  EXPECT_EQ(p.dev->Send(one.ptr(), one.lengths.data(), 1), 1u);
  EXPECT_EQ(rx_call.Drain(), 1u);
  EXPECT_EQ(p.dev->stats().notifications_sent, calls_before + 1);
  // Transmit completions never wake the driver unless it arms for send space.
  EXPECT_EQ(tx_call.Drain(), 0u);
}

}  // namespace

TEST(queue_pair_kicks_and_calls_only_when_the_peer_asked_with_event_idx) { CheckKickAndCallPolicy(true); }

TEST(queue_pair_kicks_and_calls_only_when_the_peer_asked_without_event_idx) { CheckKickAndCallPolicy(false); }

TEST(queue_pair_driver_armed_for_send_space_is_called_when_half_the_ring_completes) {
  EventFd tx_call = EventFd::Create();
  Fds fds;
  fds.tx_call = tx_call.fd();
  Pair p(Config(32, 256, 1024, true), fds);
  Batch b;
  for (uint32_t i = 0; i < 32; ++i) b.Add(100, i);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 32), 32u);
  EXPECT(!p.drv->ArmSend(100));  // no descriptor free: wake after 16 of the 32 complete
  Received r = ReceiveFrom(*p.dev, 15, 1 << 20);
  EXPECT_EQ(r.count, 15u);
  EXPECT_EQ(tx_call.Drain(), 0u);
  r = ReceiveFrom(*p.dev, 1, 1 << 20);
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(tx_call.Drain(), 1u);
  EXPECT(p.drv->ArmSend(100));  // room now: no need to sleep
}

TEST(queue_pair_large_batches_are_handed_over_in_slices_both_ways) {
  // Without EVENT_IDX an end that asked for notifications gets one per publication, so the
  // counts show how often each side published. A quarter of this ring is 16 KiB: 8 messages
  // of 8000 bytes (8012 with the header, 32 buffers each, the whole ring) go out in three
  // slices (3 + 3 + 2 messages), so the peer can copy the first while the rest goes in.
  EventFd rx_kick = EventFd::Create(), tx_kick = EventFd::Create();
  EventFd rx_call = EventFd::Create(), tx_call = EventFd::Create();
  Fds fds{rx_kick.fd(), tx_kick.fd(), rx_call.fd(), tx_call.fd()};
  Pair p(Config(256, 256, 8192, /*event_idx=*/false), fds);
  Batch b;
  for (uint32_t i = 0; i < 8; ++i) b.Add(8000, i);

  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 8), 8u);
  EXPECT_EQ(tx_kick.Drain(), 3u);
  EXPECT(!p.drv->ArmSend(8000));  // asks for a call on every completion publication
  Received r = ReceiveFrom(*p.dev, 64, 1 << 20);
  EXPECT_EQ(r.count, 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT(r.Is(i, 8000, i));
  EXPECT_EQ(tx_call.Drain(), 3u);

  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 8), 8u);
  EXPECT_EQ(rx_call.Drain(), 3u);
  EXPECT(!p.dev->ArmSend(8000));  // asks for a kick on every receive buffer publication
  Received back = ReceiveFrom(*p.drv, 64, 1 << 20);
  EXPECT_EQ(back.count, 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT(back.Is(i, 8000, i));
  EXPECT_EQ(rx_kick.Drain(), 3u);
  EXPECT(!p.drv->broken() && !p.dev->broken());
}

TEST(queue_pair_stats_count_messages_and_payload_bytes_each_way) {
  Pair p(Config(64, 256, 4096));
  Batch b;
  b.Add(0, 1);
  b.Add(1, 2);
  b.Add(4096, 3);
  b.Add(300, 4);
  const uint64_t bytes = 0 + 1 + 4096 + 300;
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 4), 4u);
  EXPECT_EQ(ReceiveAll(*p.dev).count, 4u);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 3), 3u);
  EXPECT_EQ(ReceiveAll(*p.drv).count, 3u);
  EXPECT_EQ(p.drv->stats().messages_sent, 4u);
  EXPECT_EQ(p.drv->stats().bytes_sent, bytes);
  EXPECT_EQ(p.dev->stats().messages_received, 4u);
  EXPECT_EQ(p.dev->stats().bytes_received, bytes);
  EXPECT_EQ(p.dev->stats().messages_sent, 3u);
  EXPECT_EQ(p.dev->stats().bytes_sent, 4097u);
  EXPECT_EQ(p.drv->stats().messages_received, 3u);
  EXPECT_EQ(p.drv->stats().bytes_received, 4097u);
  EXPECT_EQ(p.drv->stats().dropped, 0u);
  EXPECT_EQ(p.dev->stats().dropped, 0u);
  // Without fds there is nobody to notify: nothing is counted.
  EXPECT_EQ(p.drv->stats().notifications_sent, 0u);
  EXPECT_EQ(p.dev->stats().notifications_sent, 0u);
}

// ---------------------------------------------------------------------------------------
// Device construction and payload-level bad input
// ---------------------------------------------------------------------------------------

TEST(queue_pair_device_refuses_rings_outside_the_memory_table_or_misaligned) {
  Pair p(Config(16, 256, 1024));
  const QueuePairConfig cfg = p.cfg;
  RingAddresses outside = p.drv->rx_addresses();
  outside.used = kGuestBase + p.mapping->size() - 8;  // straddles the region end
  EXPECT_THROWS_CODE(DeviceQueuePair(p.memory, outside, p.drv->tx_addresses(), cfg, 0, 0, -1, -1),
                     ErrorCode::kRegionBounds);
  RingAddresses before = p.drv->tx_addresses();
  before.desc = kGuestBase - 4096;
  EXPECT_THROWS_CODE(DeviceQueuePair(p.memory, p.drv->rx_addresses(), before, cfg, 0, 0, -1, -1),
                     ErrorCode::kRegionBounds);
  RingAddresses misaligned = p.drv->rx_addresses();
  misaligned.avail += 1;
  EXPECT_THROWS_CODE(DeviceQueuePair(p.memory, misaligned, p.drv->tx_addresses(), cfg, 0, 0, -1, -1),
                     ErrorCode::kInvalidArgument);
  QueuePairConfig bad = cfg;
  bad.queue_size = 24;
  EXPECT_THROWS_CODE(DeviceQueuePair(p.memory, p.drv->rx_addresses(), p.drv->tx_addresses(), bad, 0, 0, -1, -1),
                     ErrorCode::kInvalidArgument);
}

TEST(queue_pair_driver_rejects_num_buffers_zero_or_beyond_the_queue) {
  for (uint16_t bad : {uint16_t{0}, uint16_t{17}, uint16_t{0xffff}}) {
    Pair p(Config(16, 256, 1024));
    Batch b;
    b.Add(10, 1);
    EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 1), 1u);
    std::memcpy(p.RxBuffer(p.rx().used_ring(0)->id) + kNetHeaderNumBuffersOffset, &bad, 2);
    EXPECT_BAD_RING(ReceiveAll(*p.drv), "bad-num-buffers");
    EXPECT(p.drv->broken());
    EXPECT_THROWS_CODE(ReceiveAll(*p.drv), ErrorCode::kQueueBroken);
  }
}

TEST(queue_pair_driver_rejects_a_receive_buffer_returned_twice_within_one_message) {
  // The device names the same buffer for the first and second part of a merged message.
  // By the time the driver reaches the second entry it has already re-posted that buffer
  // (added, not yet published): accepting it would put one buffer on the ring twice.
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(700, 1);  // 3 buffers
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 1), 1u);
  const SplitRingView rx = p.rx();
  StoreRelaxed(&rx.used_ring(1)->id, LoadRelaxed(&rx.used_ring(0)->id));
  EXPECT_BAD_RING(ReceiveAll(*p.drv), "used-id-not-outstanding");
  EXPECT(p.drv->broken());
  EXPECT_THROWS_CODE(ReceiveAll(*p.drv), ErrorCode::kQueueBroken);
}

TEST(queue_pair_driver_rejects_a_receive_buffer_shorter_than_the_header) {
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(10, 1);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 1), 1u);
  StoreRelaxed(&p.rx().used_ring(0)->len, 11u);
  EXPECT_BAD_RING(ReceiveAll(*p.drv), "shorter-than-header");
  EXPECT(p.drv->broken());
  EXPECT_THROWS_CODE(ReceiveAll(*p.drv), ErrorCode::kQueueBroken);
}

TEST(queue_pair_driver_rejects_a_merged_message_larger_than_max_message) {
  // Five one-buffer messages, then the first header claims all five buffers:
  // 244 + 4 * 256 bytes > maxMessage 1024.
  Pair p(Config(16, 256, 1024));
  Batch b;
  for (uint32_t i = 0; i < 5; ++i) b.Add(244, i);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 5), 5u);
  const uint16_t five = 5;
  std::memcpy(p.RxBuffer(p.rx().used_ring(0)->id) + kNetHeaderNumBuffersOffset, &five, 2);
  EXPECT_BAD_RING(ReceiveAll(*p.drv), "message-too-large");
  EXPECT(p.drv->broken());
}

TEST(queue_pair_device_rejects_a_transmit_chain_shorter_than_the_header) {
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(10, 1);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 1), 1u);
  const SplitRingView tx = p.tx();
  RingDesc* d = &tx.descs()[LoadRelaxed(tx.avail_ring(0))];
  StoreRelaxed(&d->len, 11u);
  EXPECT_BAD_RING(ReceiveAll(*p.dev), "shorter-than-header");
  EXPECT(p.dev->broken());
  EXPECT_THROWS_CODE(ReceiveAll(*p.dev), ErrorCode::kQueueBroken);
}

TEST(queue_pair_device_rejects_a_transmit_chain_larger_than_max_message) {
  Pair p(Config(16, 256, 1024));
  Batch b;
  b.Add(1000, 1);  // 4 descriptors of (256, 256, 256, 244)
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 1), 1u);
  const SplitRingView tx = p.tx();
  RingDesc* d = &tx.descs()[LoadRelaxed(tx.avail_ring(0))];
  StoreRelaxed(&d->len, 2048u);  // still inside shared memory, but the message grows past 1024
  EXPECT_BAD_RING(ReceiveAll(*p.dev), "message-too-large");
  EXPECT(p.dev->broken());
}

TEST(queue_pair_device_rejects_a_receive_chain_with_no_writable_buffer) {
  Pair p(Config(16, 256, 1024));
  const SplitRingView rx = p.rx();
  // The driver posted writable buffers; a hostile one flips the first to device-readable.
  RingDesc* d = &rx.descs()[LoadRelaxed(rx.avail_ring(0))];
  StoreRelaxed(&d->flags, uint16_t{0});
  Batch b;
  b.Add(10, 1);
  EXPECT_BAD_RING(p.dev->Send(b.ptr(), b.lengths.data(), 1), "receive-buffer-not-writable");
  EXPECT(p.dev->broken());
  EXPECT_THROWS_CODE(p.dev->Send(b.ptr(), b.lengths.data(), 1), ErrorCode::kQueueBroken);
}

// ---------------------------------------------------------------------------------------
// Reading in place and writing in place
// ---------------------------------------------------------------------------------------

namespace {

struct InPlace {
  std::vector<MessageLocation> at = std::vector<MessageLocation>(64);
  std::vector<uint8_t> scratch = std::vector<uint8_t>(1 << 16);
  uint32_t count = 0;
  template <typename End>
  uint32_t From(End& end, uint64_t in_place_min = 64) {
    count = end.ReceiveInPlace(at.data(), 64, scratch.data(), scratch.size(), in_place_min);
    return count;
  }
  // Message i's bytes (wherever they lie) match Message(size, seed)?
  template <typename End>
  bool Is(End& end, uint32_t i, uint32_t size, uint32_t seed) const {
    if (i >= count || at[i].length != size) return false;
    const uint8_t* p = at[i].area == kInScratch ? scratch.data() + at[i].offset
                                                : end.Area(at[i].area).data + at[i].offset;
    for (uint32_t k = 0; k < size; ++k) {
      if (p[k] != PatternByte(seed, k)) return false;
    }
    return true;
  }
};

uint32_t SendOneMessage(DeviceQueuePair& dev, uint32_t size, uint32_t seed) {
  Batch b;
  b.Add(size, seed);
  return dev.Send(b.ptr(), b.lengths.data(), 1);
}

}  // namespace

TEST(queue_pair_driver_reads_a_large_message_in_place_and_holds_its_buffers_until_released) {
  Pair p(Config(16, 256, 2048));  // 16 receive buffers; 1000 bytes + header take 4
  EXPECT_EQ(SendOneMessage(*p.dev, 1000, 1), 1u);
  InPlace r;
  EXPECT_EQ(r.From(*p.drv), 1u);
  EXPECT_EQ(r.at[0].area, 0u);
  EXPECT_EQ(r.at[0].offset, uint64_t{kNetHeaderSize});
  EXPECT(r.Is(*p.drv, 0, 1000, 1));
  EXPECT_EQ(p.drv->held(), 1u);
  for (uint32_t i = 2; i <= 4; ++i) EXPECT_EQ(SendOneMessage(*p.dev, 1000, i), 1u);
  EXPECT_EQ(r.From(*p.drv), 3u);
  EXPECT(r.Is(*p.drv, 2, 1000, 4));
  // Every buffer is held: the device has nowhere to write.
  EXPECT_EQ(SendOneMessage(*p.dev, 1000, 5), 0u);
  p.drv->Release(1);
  EXPECT_EQ(SendOneMessage(*p.dev, 1000, 5), 1u);
  EXPECT_THROWS_CODE(p.drv->Release(5), ErrorCode::kInvalidArgument);
  p.drv->Release(3);
  EXPECT_EQ(r.From(*p.drv), 1u);
  EXPECT(r.Is(*p.drv, 0, 1000, 5));
  EXPECT_EQ(r.at[0].offset, uint64_t{kNetHeaderSize});  // posted again in order: buffers 0..3
}

TEST(queue_pair_driver_copies_a_message_that_crosses_the_end_of_the_receive_area) {
  Pair p(Config(16, 256, 2048));
  InPlace r;
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(SendOneMessage(*p.dev, 1000, i), 1u);  // buffers 0-11
  EXPECT_EQ(r.From(*p.drv), 3u);
  p.drv->Release(3);
  EXPECT_EQ(SendOneMessage(*p.dev, 500, 10), 1u);  // buffers 12-13
  EXPECT_EQ(r.From(*p.drv), 1u);
  p.drv->Release(1);
  EXPECT_EQ(SendOneMessage(*p.dev, 1000, 11), 1u);  // buffers 14, 15, 0, 1
  EXPECT_EQ(r.From(*p.drv), 1u);
  EXPECT_EQ(r.at[0].area, kInScratch);
  EXPECT(r.Is(*p.drv, 0, 1000, 11));
  EXPECT_EQ(p.drv->held(), 0u);  // a copy holds nothing
}

TEST(queue_pair_small_messages_are_copied_and_never_held) {
  Pair p(Config(16, 256, 2048));
  Batch b;
  b.Add(10, 1);
  b.Add(1000, 2);
  b.Add(20, 3);
  EXPECT_EQ(p.dev->Send(b.ptr(), b.lengths.data(), 3), 3u);
  InPlace r;
  EXPECT_EQ(r.From(*p.drv, 64), 3u);
  EXPECT_EQ(r.at[0].area, kInScratch);
  EXPECT_EQ(r.at[1].area, 0u);
  EXPECT_EQ(r.at[2].area, kInScratch);
  for (uint32_t i = 0; i < 3; ++i) EXPECT(r.Is(*p.drv, i, b.lengths[i], i + 1));
  EXPECT_EQ(p.drv->held(), 1u);
}

TEST(queue_pair_device_reads_a_transmitted_message_in_place_and_returns_it_only_when_released) {
  Pair p(Config(16, 256, 2048));
  Batch b;
  b.Add(1500, 7);
  b.Add(8, 8);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 2), 2u);
  InPlace r;
  EXPECT_EQ(r.From(*p.dev), 2u);
  EXPECT_EQ(r.at[0].area, 0u);  // region 0 of the device's memory table
  EXPECT_EQ(r.at[0].offset, p.layout.tx_buffers + kNetHeaderSize);
  EXPECT(r.Is(*p.dev, 0, 1500, 7));
  EXPECT_EQ(r.at[1].area, kInScratch);
  EXPECT(r.Is(*p.dev, 1, 8, 8));
  EXPECT_EQ(UsedIdx(p.tx()), 1u);  // the copied one is back, the one read in place is not
  EXPECT_EQ(p.dev->held(), 1u);
  p.dev->Release(1);
  EXPECT_EQ(UsedIdx(p.tx()), 2u);
  EXPECT_THROWS_CODE(p.dev->Release(1), ErrorCode::kInvalidArgument);
}

TEST(queue_pair_driver_writes_a_message_in_place_and_commits_it) {
  Pair p(Config(16, 256, 2048));
  SendReservation room;
  EXPECT(p.drv->ReserveSend(100, &room));
  EXPECT_EQ(room.area, 1u);
  EXPECT_EQ(room.offset, uint64_t{kNetHeaderSize});
  EXPECT_EQ(room.capacity, 2048u);  // capped at maxMessage
  const std::vector<uint8_t> m = Message(1500, 3);
  std::memcpy(p.drv->Area(1).data + room.offset, m.data(), m.size());
  p.drv->CommitSend(1500);
  Received got = ReceiveAll(*p.dev);
  EXPECT_EQ(got.count, 1u);
  EXPECT(got.Is(0, 1500, 3));
  // A commit needs a fresh reservation, within its capacity.
  EXPECT_THROWS_CODE(p.drv->CommitSend(10), ErrorCode::kInvalidArgument);
  EXPECT(p.drv->ReserveSend(0, &room));
  EXPECT_THROWS_CODE(p.drv->CommitSend(room.capacity + 1), ErrorCode::kInvalidArgument);
  EXPECT(p.drv->ReserveSend(0, &room));
  Batch b;
  b.Add(10, 4);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 1), 1u);  // a send in between ends it
  EXPECT_THROWS_CODE(p.drv->CommitSend(10), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ReceiveAll(*p.dev).count, 1u);
}

TEST(queue_pair_driver_reserves_nothing_while_the_transmit_area_is_full) {
  Pair p(Config(16, 256, 2048));  // a 4 KiB transmit area
  Batch b;
  b.Add(2000, 1);
  b.Add(2000, 2);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 2), 2u);
  SendReservation room;
  EXPECT(!p.drv->ReserveSend(100, &room));
  EXPECT_EQ(ReceiveAll(*p.dev).count, 2u);
  EXPECT(p.drv->ReserveSend(100, &room));
  EXPECT_EQ(room.offset, uint64_t{kNetHeaderSize});  // all free again: from the start
}

TEST(queue_pair_driver_keeps_sending_while_the_device_holds_an_older_message_in_place) {
  // The device returns the small messages at once and the large one later: descriptors come
  // back out of order, and the transmit area behind the held span stays reserved.
  Pair p(Config(16, 256, 2048));
  Batch b;
  b.Add(1500, 1);
  for (uint32_t i = 0; i < 3; ++i) b.Add(8, 2 + i);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 4), 4u);
  InPlace r;
  EXPECT_EQ(r.From(*p.dev), 4u);
  EXPECT_EQ(p.dev->held(), 1u);
  for (uint32_t round = 0; round < 20; ++round) {
    SendReservation room;
    EXPECT(p.drv->ReserveSend(0, &room));
    const std::vector<uint8_t> m = Message(40, 100 + round);
    std::memcpy(p.drv->Area(1).data + room.offset, m.data(), m.size());
    p.drv->CommitSend(40);
    Received got = ReceiveAll(*p.dev);
    EXPECT_EQ(got.count, 1u);
    EXPECT(got.Is(0, 40, 100 + round));
  }
  EXPECT(r.Is(*p.dev, 0, 1500, 1));  // still intact where it lies
  p.dev->Release(1);
}

TEST(queue_pair_driver_armed_behind_messages_the_device_holds_is_called_at_the_first_release) {
  // Two large messages fill the transmit area and the device reads both in place. If it
  // gives one back only when the next message arrives, a wakeup after "half of what is in
  // flight" (here also one) is the only one that can come: with few in flight, the first.
  EventFd tx_call = EventFd::Create();
  Fds fds;
  fds.tx_call = tx_call.fd();
  Pair p(Config(16, 256, 2048, true), fds);  // a 4 KiB transmit area
  Batch b;
  b.Add(2000, 1);
  b.Add(2000, 2);
  EXPECT_EQ(p.drv->Send(b.ptr(), b.lengths.data(), 2), 2u);
  InPlace r;
  EXPECT_EQ(r.From(*p.dev), 2u);
  EXPECT_EQ(p.dev->held(), 2u);
  EXPECT(!p.drv->ArmSend(2000));
  EXPECT_EQ(tx_call.Drain(), 0u);
  p.dev->Release(1);
  EXPECT_EQ(tx_call.Drain(), 1u);
  EXPECT(p.drv->ArmSend(2000));
  p.dev->Release(1);
}

// A driver may give a packed ring any size (virtio 1.1); our driver lays out powers of two,
// so a device of 100 slots is set up on the rings of a 128-slot driver's layout.
TEST(queue_pair_device_takes_a_packed_ring_size_that_is_not_a_power_of_two) {
  g_packed = true;
  struct Reset {
    ~Reset() { g_packed = false; }
  } reset;
  Pair p(Config(128, 2048, 1500));
  QueuePairConfig hundred = p.cfg;
  hundred.queue_size = 100;
  EXPECT_THROWS_CODE(ComputeQueuePairLayout(hundred), ErrorCode::kInvalidArgument);
  DeviceQueuePair dev(p.memory, p.drv->rx_addresses(), p.drv->tx_addresses(), hundred, 0x8000, 0x8000, -1, -1);
  EXPECT_EQ(dev.held(), 0u);
  hundred.packed = false;
  EXPECT_THROWS_CODE(
      DeviceQueuePair(p.memory, p.drv->rx_addresses(), p.drv->tx_addresses(), hundred, 0, 0, -1, -1),
      ErrorCode::kInvalidArgument);
  QueuePairConfig one = p.cfg;
  one.queue_size = 1;
  EXPECT_THROWS_CODE(DeviceQueuePair(p.memory, p.drv->rx_addresses(), p.drv->tx_addresses(), one, 0x8000, 0x8000,
                                     -1, -1),
                     ErrorCode::kInvalidArgument);
}

// The behaviour above, again on packed rings: every test that does not read or write the
// split ring's own structures (those have packed counterparts in test_packed_ring*.cc).
TEST(queue_pair_behaviour_is_the_same_on_packed_rings) {
  g_packed = true;
  struct Reset {
    ~Reset() { g_packed = false; }
  } reset;
  std::string failed;
  using Fn = void (*)();
  const std::pair<const char*, Fn> tests[] = {
    {"queue_pair_messages_of_edge_sizes_cross_driver_to_device_intact", queue_pair_messages_of_edge_sizes_cross_driver_to_device_intact},
    {"queue_pair_messages_of_edge_sizes_cross_device_to_driver_intact", queue_pair_messages_of_edge_sizes_cross_device_to_driver_intact},
    {"queue_pair_a_batch_of_mixed_sizes_arrives_in_order_both_ways", queue_pair_a_batch_of_mixed_sizes_arrives_in_order_both_ways},
    {"queue_pair_transmitted_message_is_one_descriptor_a_zeroed_net_header_then_the_payload", queue_pair_transmitted_message_is_one_descriptor_a_zeroed_net_header_then_the_payload},
    {"queue_pair_device_refuses_an_oversized_message_and_sends_nothing_of_the_batch", queue_pair_device_refuses_an_oversized_message_and_sends_nothing_of_the_batch},
    {"queue_pair_driver_send_returns_a_partial_count_when_the_ring_is_full", queue_pair_driver_send_returns_a_partial_count_when_the_ring_is_full},
    {"queue_pair_driver_send_stops_at_the_first_message_that_does_not_fit", queue_pair_driver_send_stops_at_the_first_message_that_does_not_fit},
    {"queue_pair_device_send_returns_a_partial_count_when_receive_buffers_run_out", queue_pair_device_send_returns_a_partial_count_when_receive_buffers_run_out},
    {"queue_pair_device_waits_for_buffers_for_the_next_message_not_just_any", queue_pair_device_waits_for_buffers_for_the_next_message_not_just_any},
    {"queue_pair_driver_waits_for_room_for_the_next_message_not_just_any", queue_pair_driver_waits_for_room_for_the_next_message_not_just_any},
    {"queue_pair_receive_honours_max_count_and_capacity_and_keeps_the_rest", queue_pair_receive_honours_max_count_and_capacity_and_keeps_the_rest},
    {"queue_pair_wait_with_zero_budget_reports_readiness_without_spinning", queue_pair_wait_with_zero_budget_reports_readiness_without_spinning},
    {"queue_pair_many_messages_run_across_the_index_wrap", queue_pair_many_messages_run_across_the_index_wrap},
    {"queue_pair_kicks_and_calls_only_when_the_peer_asked_with_event_idx", queue_pair_kicks_and_calls_only_when_the_peer_asked_with_event_idx},
    {"queue_pair_kicks_and_calls_only_when_the_peer_asked_without_event_idx", queue_pair_kicks_and_calls_only_when_the_peer_asked_without_event_idx},
    {"queue_pair_driver_armed_for_send_space_is_called_when_half_the_ring_completes", queue_pair_driver_armed_for_send_space_is_called_when_half_the_ring_completes},
    {"queue_pair_large_batches_are_handed_over_in_slices_both_ways", queue_pair_large_batches_are_handed_over_in_slices_both_ways},
    {"queue_pair_stats_count_messages_and_payload_bytes_each_way", queue_pair_stats_count_messages_and_payload_bytes_each_way},
    {"queue_pair_driver_rejects_num_buffers_zero_or_beyond_the_queue", queue_pair_driver_rejects_num_buffers_zero_or_beyond_the_queue},
    {"queue_pair_driver_rejects_a_merged_message_larger_than_max_message", queue_pair_driver_rejects_a_merged_message_larger_than_max_message},
    {"queue_pair_device_rejects_a_transmit_chain_shorter_than_the_header", queue_pair_device_rejects_a_transmit_chain_shorter_than_the_header},
    {"queue_pair_device_rejects_a_transmit_chain_larger_than_max_message", queue_pair_device_rejects_a_transmit_chain_larger_than_max_message},
    {"queue_pair_driver_reads_a_large_message_in_place_and_holds_its_buffers_until_released", queue_pair_driver_reads_a_large_message_in_place_and_holds_its_buffers_until_released},
    {"queue_pair_driver_copies_a_message_that_crosses_the_end_of_the_receive_area", queue_pair_driver_copies_a_message_that_crosses_the_end_of_the_receive_area},
    {"queue_pair_small_messages_are_copied_and_never_held", queue_pair_small_messages_are_copied_and_never_held},
    {"queue_pair_driver_writes_a_message_in_place_and_commits_it", queue_pair_driver_writes_a_message_in_place_and_commits_it},
    {"queue_pair_driver_reserves_nothing_while_the_transmit_area_is_full", queue_pair_driver_reserves_nothing_while_the_transmit_area_is_full},
    {"queue_pair_driver_keeps_sending_while_the_device_holds_an_older_message_in_place", queue_pair_driver_keeps_sending_while_the_device_holds_an_older_message_in_place},
    {"queue_pair_driver_armed_behind_messages_the_device_holds_is_called_at_the_first_release", queue_pair_driver_armed_behind_messages_the_device_holds_is_called_at_the_first_release},
  };
  for (const auto& t : tests) {
    try {
      t.second();
    } catch (const harness::Failure& f) {
      failed += std::string(t.first) + ": " + f.message + "\n";
    } catch (const std::exception& e) {
      failed += std::string(t.first) + ": " + e.what() + "\n";
    }
  }
  if (!failed.empty()) throw harness::Failure{failed};
}
