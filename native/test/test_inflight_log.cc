// In-flight tracking on a split ring (vhost-user INFLIGHT_SHMFD): a device that starts on
// the record a killed device left takes every chain that one had taken and not returned
// again, oldest first, before the avail ring; a batch that was published but not yet cleared
// in the record is not taken twice; and a record the front-end corrupted breaks the queue
// with kBadRing and a reason instead of steering the device outside it.
#include <cstdint>
#include <memory>
#include <vector>

#include "harness.h"
#include "ring_fixture.h"
#include "vring/device_queue.h"
#include "vring/error.h"
#include "vring/inflight_log.h"
#include "vring/split_ring.h"

using namespace vring;
using ringtest::RingFixture;

namespace {

// One queue's record, zeroed like a fresh memfd.
struct Record {
  explicit Record(uint32_t q) : words(InflightQueueBytes(q) / 8, 0) {}
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words.data()); }
  InflightQueueHeader* header() { return reinterpret_cast<InflightQueueHeader*>(data()); }
  InflightDescState* desc(uint16_t i) {
    return reinterpret_cast<InflightDescState*>(data() + sizeof(InflightQueueHeader)) + i;
  }
  std::vector<uint64_t> words;
};

// A device that replaces the fixture's one, as a restarted back-end process would: it knows
// nothing but the ring in shared memory and the record.
struct RestartedDevice {
  RestartedDevice(RingFixture& f, Record& r)
      : log(r.data(), f.q), queue(f.view, f.memory.get(), f.event_idx, /*base: ignored*/ 0) {}
  InflightLog log;
  DeviceQueue queue;
};

std::vector<uint16_t> PopAll(DeviceQueue& q) {
  std::vector<uint16_t> heads;
  Chain c;
  while (q.Pop(&c)) heads.push_back(c.head);
  return heads;
}

}  // namespace

TEST(inflight_record_sizes_follow_the_split_layout) {
  EXPECT_EQ(sizeof(InflightQueueHeader), 16u);
  EXPECT_EQ(sizeof(InflightDescState), 16u);
  EXPECT_EQ(InflightQueueBytes(1), 64u);
  EXPECT_EQ(InflightQueueBytes(2), 64u);
  EXPECT_EQ(InflightQueueBytes(4), 128u);
  EXPECT_EQ(InflightQueueBytes(256), 4160u);
  EXPECT_EQ(InflightQueueBytes(32768), 524352u);
}

TEST(inflight_fresh_record_is_initialised_and_nothing_is_taken_again) {
  RingFixture f(8, true);
  Record r(8);
  InflightLog log(r.data(), 8);
  EXPECT_EQ(f.device->TrackInflight(&log), 0u);
  EXPECT_EQ(r.header()->version, 1);
  EXPECT_EQ(r.header()->desc_num, 8);
  const int a = f.AddChain(1, 1, 16);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT_EQ(c.head, a);
  EXPECT_EQ(r.desc(c.head)->inflight, 1);
  f.device->PushUsed(c.head, 0);
  f.device->PublishUsed();
  EXPECT_EQ(r.desc(c.head)->inflight, 0);
  EXPECT_EQ(r.header()->last_batch_head, a);
  EXPECT_EQ(r.header()->used_idx, 1);
}

TEST(inflight_chains_a_killed_device_held_are_taken_again_oldest_first_then_the_avail_ring) {
  for (bool evidx : {false, true}) {
    RingFixture f(8, evidx);
    Record r(8);
    InflightLog log(r.data(), 8);
    f.device->TrackInflight(&log);
    int heads[5];
    for (int& h : heads) h = f.AddChain(1, 1, 16);
    f.driver->Publish();
    // The first device takes four chains and returns only the third, out of order.
    Chain c;
    std::vector<uint16_t> taken;
    for (int i = 0; i < 4; ++i) {
      EXPECT(f.device->Pop(&c));
      taken.push_back(c.head);
    }
    f.device->PushUsed(taken[2], 0);
    f.device->PublishUsed();
    f.device.reset();  // killed

    RestartedDevice next(f, r);
    EXPECT_EQ(next.queue.TrackInflight(&next.log), 3u);
    EXPECT_EQ(next.queue.AvailPendingFresh(), 4u);  // three again, one new
    const std::vector<uint16_t> again = PopAll(next.queue);
    const std::vector<uint16_t> expected = {taken[0], taken[1], taken[3], static_cast<uint16_t>(heads[4])};
    EXPECT(again == expected);
    for (uint16_t h : again) next.queue.PushUsed(h, 0);
    next.queue.PublishUsed();
    UsedChain u;
    int returned = 0;
    while (f.driver->PopUsed(&u)) ++returned;
    EXPECT_EQ(returned, 5);  // every chain the driver made available came back exactly once
    EXPECT_EQ(f.driver->num_free(), 8u);
  }
}

TEST(inflight_a_batch_published_before_the_kill_is_not_taken_again) {
  RingFixture f(8, false);
  Record r(8);
  InflightLog log(r.data(), 8);
  f.device->TrackInflight(&log);
  for (int i = 0; i < 3; ++i) f.AddChain(1, 1, 16);
  f.driver->Publish();
  Chain a, b, c;
  EXPECT(f.device->Pop(&a));
  EXPECT(f.device->Pop(&b));
  EXPECT(f.device->Pop(&c));
  f.device->PushUsed(b.head, 0);
  f.device->PushUsed(a.head, 0);
  f.device->PublishUsed();
  // Killed between the used index store and clearing the batch's states: put the record
  // back as it was at that instant.
  r.desc(a.head)->inflight = 1;
  r.desc(b.head)->inflight = 1;
  r.header()->used_idx = 0;
  EXPECT_EQ(r.header()->last_batch_head, b.head);
  EXPECT_EQ(r.desc(b.head)->next, a.head);
  f.device.reset();

  RestartedDevice next(f, r);
  EXPECT_EQ(next.queue.TrackInflight(&next.log), 1u);
  EXPECT_EQ(r.header()->used_idx, 2);
  const std::vector<uint16_t> again = PopAll(next.queue);
  EXPECT(again == std::vector<uint16_t>{c.head});
}

TEST(inflight_unpop_reaches_back_into_the_chains_taken_again) {
  RingFixture f(8, false);
  Record r(8);
  InflightLog log(r.data(), 8);
  f.device->TrackInflight(&log);
  for (int i = 0; i < 3; ++i) f.AddChain(1, 1, 16);
  f.driver->Publish();
  Chain c;
  EXPECT(f.device->Pop(&c));
  EXPECT(f.device->Pop(&c));
  f.device.reset();
  f.AddChain(1, 1, 16);
  f.driver->Publish();

  RestartedDevice next(f, r);
  EXPECT_EQ(next.queue.TrackInflight(&next.log), 2u);
  const std::vector<uint16_t> first = PopAll(next.queue);
  EXPECT_EQ(first.size(), 4u);
  next.queue.Unpop(3);  // the last two from the avail ring and one taken again
  const std::vector<uint16_t> rest = PopAll(next.queue);
  EXPECT(rest == std::vector<uint16_t>(first.begin() + 1, first.end()));
}

TEST(inflight_records_that_cannot_be_right_break_the_queue) {
  struct Case {
    const char* reason;
    void (*corrupt)(Record&);
  };
  const Case cases[] = {
      {"inflight-version", [](Record& r) { r.header()->version = 2; }},
      {"inflight-queue-size", [](Record& r) { r.header()->desc_num = 16; }},
      {"inflight-used-index", [](Record& r) { r.header()->used_idx = 100; }},
      {"inflight-batch-head",
       [](Record& r) {
         r.header()->used_idx = 65535;  // one published batch entry to clear…
         r.header()->last_batch_head = 9;  // …named by a head beyond the queue
       }},
      {"inflight-batch-head",
       [](Record& r) {
         r.header()->used_idx = 65533;  // three entries to clear, but the list leaves the queue
         r.header()->last_batch_head = 1;
         r.desc(1)->next = 2;
         r.desc(2)->next = 4000;
       }},
      {"inflight-flag", [](Record& r) { r.desc(3)->inflight = 7; }},
  };
  for (const Case& k : cases) {
    RingFixture f(8, false);
    Record r(8);
    r.header()->version = 1;
    r.header()->desc_num = 8;
    k.corrupt(r);
    InflightLog log(r.data(), 8);
    EXPECT_ERROR(f.device->TrackInflight(&log), ErrorCode::kBadRing, k.reason);
    EXPECT(f.device->broken());
    Chain c;
    EXPECT_THROWS_CODE(f.device->Pop(&c), ErrorCode::kQueueBroken);
  }
}

TEST(inflight_log_refuses_a_misaligned_record) {
  Record r(8);
  EXPECT_THROWS_CODE(InflightLog(r.data() + 4, 8), ErrorCode::kInvalidArgument);
  EXPECT_THROWS_CODE(InflightLog(r.data(), 6), ErrorCode::kInvalidArgument);
}
