// BlockPool: blocks given back are handed out again to requests of their size class, up to
// the pool's limit; the rest, and everything on Trim(), is freed.
#include <cstring>

#include "harness.h"
#include "vring/block_pool.h"

using namespace vring;

TEST(block_pool_rounds_requests_up_to_eight_classes_per_power_of_two) {
  EXPECT_EQ(BlockPool::ClassOf(0), 4096u);
  EXPECT_EQ(BlockPool::ClassOf(4096), 4096u);
  EXPECT_EQ(BlockPool::ClassOf(4097), 8192u);
  EXPECT_EQ(BlockPool::ClassOf(65536), 65536u);
  EXPECT_EQ(BlockPool::ClassOf(65537), 65536u + 8192u);
  EXPECT_EQ(BlockPool::ClassOf(1u << 20), 1u << 20);
  EXPECT_EQ(BlockPool::ClassOf((1u << 20) + 30), (1u << 20) + (1u << 17));
  EXPECT_EQ(BlockPool::ClassOf((16u << 20) + 200), (16u << 20) + (2u << 20));
}

TEST(block_pool_hands_a_block_given_back_to_the_next_request_of_its_class) {
  BlockPool pool(1 << 20);
  BlockPool::Block a = pool.Take(100000);
  EXPECT(a.data != nullptr);
  EXPECT_EQ(a.capacity, BlockPool::ClassOf(100000));
  std::memset(a.data, 1, a.capacity);
  pool.Give(a);
  EXPECT_EQ(pool.free_bytes(), a.capacity);
  BlockPool::Block b = pool.Take(100001);  // same class
  EXPECT(b.data == a.data);
  EXPECT_EQ(pool.free_bytes(), 0u);
  BlockPool::Block c = pool.Take(200000);  // another class: a new block
  EXPECT(c.data != nullptr && c.data != b.data);
  pool.Give(b);
  pool.Give(c);
}

TEST(block_pool_frees_blocks_beyond_its_limit_and_everything_on_trim) {
  BlockPool pool(3 * 65536);
  BlockPool::Block blocks[4];
  for (auto& b : blocks) b = pool.Take(65536);
  for (auto& b : blocks) pool.Give(b);
  EXPECT_EQ(pool.free_bytes(), 3u * 65536u);  // the fourth was freed
  pool.Trim();
  EXPECT_EQ(pool.free_bytes(), 0u);
  BlockPool::Block again = pool.Take(65536);
  EXPECT(again.data != nullptr);
  pool.Give(again);
  EXPECT_EQ(pool.free_bytes(), 65536u);
}

TEST(block_pool_ignores_a_null_block) {
  BlockPool pool(1 << 20);
  pool.Give({nullptr, 4096});
  EXPECT_EQ(pool.free_bytes(), 0u);
}
