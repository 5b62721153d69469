#include "vring/block_pool.h"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace vring {

namespace {
constexpr size_t kPage = 4096;
}  // namespace

BlockPool::BlockPool(size_t max_free_bytes) : max_free_bytes_(max_free_bytes) {}

BlockPool::~BlockPool() { Trim(); }

size_t BlockPool::ClassOf(size_t bytes) {
  if (bytes <= kPage) return kPage;
  // Eight classes per power of two: round up to a multiple of an eighth of the largest
  // power of two below `bytes` (never less than a page).
  size_t top = 1;
  while (top <= bytes / 2) top *= 2;
  const size_t step = std::max(kPage, top / 8);
  const size_t rounded = (bytes + step - 1) / step * step;
  return rounded < bytes ? bytes : rounded;  // (no overflow past SIZE_MAX)
}

std::vector<BlockPool::SizeClass>::iterator BlockPool::Find(size_t capacity) {
  return std::find_if(classes_.begin(), classes_.end(),
                      [capacity](const SizeClass& c) { return c.capacity == capacity; });
}

BlockPool::Block BlockPool::Take(size_t bytes) {
  const size_t capacity = ClassOf(bytes);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = Find(capacity);
    if (it != classes_.end() && !it->blocks.empty()) {
      uint8_t* data = it->blocks.back();
      it->blocks.pop_back();
      free_bytes_ -= capacity;
      return {data, capacity};
    }
  }
  return {static_cast<uint8_t*>(std::malloc(capacity)), capacity};
}

void BlockPool::Give(Block block) {
  if (!block.data) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_bytes_ + block.capacity <= max_free_bytes_) {
      try {
        auto it = Find(block.capacity);
        if (it == classes_.end()) {
          classes_.push_back({block.capacity, {}});
          it = classes_.end() - 1;
        }
        it->blocks.push_back(block.data);
        free_bytes_ += block.capacity;
        return;
      } catch (const std::bad_alloc&) {
        // No room to list it: freed below instead.
      }
    }
  }
  std::free(block.data);
}

void BlockPool::Trim() {
  std::vector<SizeClass> classes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    classes.swap(classes_);
    free_bytes_ = 0;
  }
  for (auto& c : classes) {
    for (uint8_t* data : c.blocks) std::free(data);
  }
}

size_t BlockPool::free_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return free_bytes_;
}

}  // namespace vring
