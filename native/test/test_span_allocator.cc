// SpanAllocator: spans come out contiguous, in FIFO order, never across the end of the area;
// spans given back out of order free nothing until every older one is back too.
#include "harness.h"
#include "vring/span_allocator.h"

using namespace vring;

TEST(span_allocator_hands_out_aligned_spans_one_after_another) {
  SpanAllocator a(1024, 8, 16);
  EXPECT_EQ(a.Allocate(10, 0), 0);
  EXPECT_EQ(a.Allocate(100, 1), 16);
  EXPECT_EQ(a.Allocate(16, 2), 128);
  EXPECT_EQ(a.spans(), 3u);
  const SpanAllocator::Run run = a.LargestFree();
  EXPECT_EQ(run.at, 144u);
  EXPECT_EQ(run.bytes, 1024u - 144u);
}

TEST(span_allocator_starts_again_at_zero_rather_than_split_a_span_across_the_end) {
  SpanAllocator a(1024, 8, 16);
  EXPECT_EQ(a.Allocate(400, 0), 0);
  EXPECT_EQ(a.Allocate(400, 1), 400);
  EXPECT(a.Free(0));
  // 224 bytes left at the end, 400 at the start: a 300-byte span goes to the start.
  EXPECT_EQ(a.Allocate(300, 2), 0);
  // Now wrapped: only [304, 400) is free, the end stays unused until span 1 is back.
  EXPECT_EQ(a.Allocate(200, 3), -1);
  EXPECT_EQ(a.Allocate(96, 3), 304);
  EXPECT(a.Free(1));
  EXPECT_EQ(a.LargestFree().at, 400u);
  EXPECT_EQ(a.LargestFree().bytes, 624u);
}

TEST(span_allocator_reclaims_only_once_every_older_span_is_back) {
  SpanAllocator a(300, 8, 16);
  EXPECT_EQ(a.Allocate(100, 0), 0);
  EXPECT_EQ(a.Allocate(100, 1), 112);
  EXPECT(a.Free(1));
  EXPECT_EQ(a.spans(), 2u);  // span 0 still out: nothing reclaimed
  EXPECT_EQ(a.Allocate(100, 2), -1);
  EXPECT(a.Free(0));
  EXPECT(a.empty());
  EXPECT_EQ(a.Allocate(288, 2), 0);  // empty: the whole area again
}

TEST(span_allocator_reuses_an_id_given_back_before_its_span_is_reclaimed) {
  // The queue hands a descriptor out again as soon as the device returns it, even while an
  // older span (read in place by the device) holds the area back.
  SpanAllocator a(1024, 2, 16);
  EXPECT_EQ(a.Allocate(100, 0), 0);
  EXPECT_EQ(a.Allocate(100, 1), 112);
  EXPECT(a.Free(1));
  EXPECT_EQ(a.Allocate(100, 1), 224);
  EXPECT(a.Free(1));
  EXPECT_EQ(a.Allocate(100, 1), 336);
  // Four spans outstanding (twice the ids): nothing more until the oldest is back.
  EXPECT(a.Free(1));
  EXPECT_EQ(a.Allocate(100, 1), -1);
  EXPECT_EQ(a.LargestFree().bytes, 0u);
  EXPECT(a.Free(0));
  EXPECT(a.empty());
}

TEST(span_allocator_refuses_an_id_in_use_or_out_of_range_and_a_double_free) {
  SpanAllocator a(1024, 4, 16);
  EXPECT_EQ(a.Allocate(10, 0), 0);
  EXPECT_EQ(a.Allocate(10, 0), -1);
  EXPECT_EQ(a.Allocate(10, 4), -1);
  EXPECT(a.Free(0));
  EXPECT(!a.Free(0));
  EXPECT(!a.Free(3));
  EXPECT(!a.Free(9));
}

TEST(span_allocator_places_at_a_run_it_offered_and_nowhere_else) {
  SpanAllocator a(1024, 8, 16);
  EXPECT_EQ(a.Allocate(512, 0), 0);
  const SpanAllocator::Run run = a.LargestFree();
  EXPECT_EQ(a.AllocateAt(run.at + 16, 10, 1), -1);
  EXPECT_EQ(a.AllocateAt(run.at, run.bytes + 1, 1), -1);
  EXPECT_EQ(a.AllocateAt(run.at, 10, 1), static_cast<int64_t>(run.at));
}
