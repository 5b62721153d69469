#include "vring/inflight_log.h"

#include <algorithm>
#include <string>
#include <utility>

#include "vring/error.h"
#include "vring/split_ring.h"

namespace vring {

namespace {

[[noreturn]] void BadRecord(const char* reason, const std::string& message) {
  throw Error(ErrorCode::kBadRing, "in-flight record is inconsistent: " + message, 0, nullptr, reason);
}

uint8_t LoadFlag(const uint8_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
void StoreFlag(uint8_t* p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

}  // namespace

InflightLog::InflightLog(uint8_t* record, uint32_t queue_size) : record_(record), queue_size_(queue_size) {
  if (!record || reinterpret_cast<uintptr_t>(record) % alignof(uint64_t) != 0) {
    throw Error(ErrorCode::kInvalidArgument, "in-flight record is missing or misaligned");
  }
  if (!IsValidQueueSize(queue_size)) {
    throw Error(ErrorCode::kInvalidArgument, "in-flight record for an invalid queue size " + std::to_string(queue_size));
  }
  batch_.reserve(queue_size);
}

std::vector<uint16_t> InflightLog::Recover(uint16_t ring_used_idx) {
  InflightQueueHeader* h = header();
  const uint16_t version = LoadRelaxed(&h->version);
  if (version == 0) {
    // A fresh record: nothing was ever in flight.
    for (uint32_t i = 0; i < queue_size_; ++i) {
      InflightDescState* d = desc(static_cast<uint16_t>(i));
      StoreFlag(&d->inflight, 0);
      StoreRelaxed(&d->next, uint16_t{0});
      StoreRelaxed(&d->counter, uint64_t{0});
    }
    StoreRelaxed(&h->desc_num, static_cast<uint16_t>(queue_size_));
    StoreRelaxed(&h->last_batch_head, uint16_t{0});
    StoreRelaxed(&h->used_idx, ring_used_idx);
    StoreRelaxed(&h->version, kInflightVersion);
    return {};
  }
  if (version != kInflightVersion) BadRecord("inflight-version", "version " + std::to_string(version));
  // desc_num is 16 bits wide: a queue of 32768 is recorded as 32768, never 0.
  const uint16_t desc_num = LoadRelaxed(&h->desc_num);
  if (desc_num != queue_size_) {
    BadRecord("inflight-queue-size",
              "made for " + std::to_string(desc_num) + " descriptors, the queue has " + std::to_string(queue_size_));
  }
  const uint16_t logged_used = LoadRelaxed(&h->used_idx);
  if (logged_used != ring_used_idx) {
    // The device was killed after publishing a batch and before clearing its states: the
    // used ring has the batch, so its heads are not in flight any more.
    const uint16_t published = static_cast<uint16_t>(ring_used_idx - logged_used);
    if (published > queue_size_) {
      BadRecord("inflight-used-index", "used index " + std::to_string(ring_used_idx) + " is " +
                                           std::to_string(published) + " past the record's " +
                                           std::to_string(logged_used));
    }
    uint16_t head = LoadRelaxed(&h->last_batch_head);
    for (uint16_t n = 0; n < published; ++n) {
      if (head >= queue_size_) BadRecord("inflight-batch-head", "batch head " + std::to_string(head) + " out of range");
      InflightDescState* d = desc(head);
      StoreFlag(&d->inflight, 0);
      head = LoadRelaxed(&d->next);
    }
    StoreRelaxed(&h->used_idx, ring_used_idx);
  }
  std::vector<std::pair<uint64_t, uint16_t>> taken;
  for (uint32_t i = 0; i < queue_size_; ++i) {
    InflightDescState* d = desc(static_cast<uint16_t>(i));
    const uint8_t flag = LoadFlag(&d->inflight);
    if (flag > 1) BadRecord("inflight-flag", "descriptor " + std::to_string(i) + " has flag " + std::to_string(flag));
    if (flag == 1) taken.emplace_back(LoadRelaxed(&d->counter), static_cast<uint16_t>(i));
  }
  std::sort(taken.begin(), taken.end());
  std::vector<uint16_t> heads;
  heads.reserve(taken.size());
  for (const auto& [counter, head] : taken) heads.push_back(head);
  counter_ = taken.empty() ? 0 : taken.back().first + 1;
  return heads;
}

void InflightLog::Taken(uint16_t head) {
  InflightDescState* d = desc(head);
  StoreRelaxed(&d->counter, counter_++);
  StoreFlag(&d->inflight, 1);
}

void InflightLog::Used(uint16_t head) {
  if (!batch_.empty()) StoreRelaxed(&desc(batch_.back())->next, head);
  batch_.push_back(head);
}

void InflightLog::BeforePublish() {
  if (batch_.empty()) return;
  // Ordered before the used index by that store's release.
  StoreRelaxed(&header()->last_batch_head, batch_.front());
}

void InflightLog::AfterPublish(uint16_t used_idx) {
  if (batch_.empty()) return;
  // A device killed between the used index and these stores must find the states still
  // set (and the batch named): nothing here may move before the index store.
  FullFence();
  for (uint16_t head : batch_) StoreFlag(&desc(head)->inflight, 0);
  StoreRelaxed(&header()->used_idx, used_idx);
  batch_.clear();
}

}  // namespace vring
