// Writes the seed corpus of device_queue_pair_fuzzer: driver memory as our own driver end
// (DriverQueuePair) lays it out, with receive buffers posted and messages transmitted, so the
// fuzzer starts from real rings and mutates them instead of having to discover the layout.
// Usage: device_queue_pair_seeds <output directory>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "vring/driver_queue_pair.h"
#include "vring/shared_region.h"
#include "vring/split_ring.h"

namespace {

using namespace vring;

constexpr uint64_t kRegionBytes = 0x4000;
constexpr uint64_t kGuestBase = 0x10000;  // region 0's descriptor address in the harness

struct Seed {
  const char* name;
  uint8_t log2_queue;
  bool event_idx;
  bool mergeable;
  uint8_t buffer_shift;   // buffer size 64 << shift
  uint8_t max_message16;  // max_message = 16 * (n + 1)
  std::vector<uint32_t> transmitted;
  std::vector<uint8_t> operations;
  // Rewrite the first transmitted chain as an indirect table of two descriptors (header, then
  // payload), as a driver that negotiated INDIRECT_DESC may: our driver never makes one.
  bool indirect_first = false;
};

void MakeFirstChainIndirect(const SharedRegion& region, const QueuePairLayout& l, const QueuePairConfig& c) {
  uint8_t* base = region.data();
  uint16_t head;
  std::memcpy(&head, base + l.tx.avail + 4, 2);
  RingDesc* desc = reinterpret_cast<RingDesc*>(base + l.tx.desc) + head;
  const uint64_t table_offset = l.tx_buffers + uint64_t{c.queue_size} * c.buffer_size - 2 * sizeof(RingDesc);
  RingDesc* table = reinterpret_cast<RingDesc*>(base + table_offset);
  table[0] = RingDesc{desc->addr, 12, kDescFlagNext, 1};
  table[1] = RingDesc{desc->addr + 12, desc->len - 12, 0, 0};
  *desc = RingDesc{kGuestBase + table_offset, 2 * sizeof(RingDesc), kDescFlagIndirect, 0};
}

void Put16(std::vector<uint8_t>& out, uint64_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

std::vector<uint8_t> Build(const Seed& s) {
  QueuePairConfig config;
  config.queue_size = 1u << s.log2_queue;
  config.event_idx = s.event_idx;
  config.mergeable = s.mergeable;
  config.buffer_size = 64u << s.buffer_shift;
  config.max_message = 16u * (s.max_message16 + 1u);
  SharedRegion region = SharedRegion::Create(kRegionBytes, "fuzz-seed");
  DriverQueuePair driver(region.mapping(), 0, kGuestBase, config, -1, -1);
  std::vector<uint8_t> payload(config.max_message * s.transmitted.size() + 1, 0);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  const uint32_t sent = driver.Send(payload.data(), s.transmitted.data(), static_cast<uint32_t>(s.transmitted.size()));
  if (sent != s.transmitted.size()) throw std::runtime_error(std::string(s.name) + ": not every message fitted");
  if (s.indirect_first) MakeFirstChainIndirect(region, driver.layout(), config);

  std::vector<uint8_t> out;
  out.push_back(static_cast<uint8_t>(s.log2_queue | (s.event_idx ? 8 : 0) | (s.mergeable ? 16 : 0) |
                                     (s.buffer_shift << 5)));
  out.push_back(s.max_message16);
  const QueuePairLayout& l = driver.layout();
  for (const RingAddresses* r : {&l.rx, &l.tx}) {
    Put16(out, r->desc);
    Put16(out, r->avail);
    Put16(out, r->used);
  }
  Put16(out, 0);  // rx base
  Put16(out, 0);  // tx base
  Put16(out, l.total_bytes);
  out.insert(out.end(), region.data(), region.data() + l.total_bytes);
  out.insert(out.end(), s.operations.begin(), s.operations.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  // Operations (see the harness): 0 receive, 1 receive in place, 2 release, 3 send,
  // 4 rewrite memory, 5/6 arm or disarm, 7 wait.
  const std::vector<Seed> seeds = {
      {"copy-and-send", 3, true, true, 0, 15, {1, 60, 200}, {0, 8, 3, 3, 10, 0, 200, 0, 90, 1}},
      {"in-place-then-release", 3, true, true, 1, 31, {100, 300, 5}, {1, 8, 16, 2, 2, 5, 1, 6, 1, 0x40, 0}},
      {"no-event-idx-non-mergeable", 2, false, false, 2, 10, {150, 12}, {0, 1, 0, 4, 3, 2, 100, 0, 20, 0, 7, 0, 0}},
      {"ring-rewritten-between-calls", 3, true, true, 0, 15, {30, 30},
       {0, 1, 4, 0x00, 0x06, 16, 0x00, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0x00, 0x10, 0, 0, 0x03, 0, 0x01, 0, 0, 4}},
      {"indirect-table", 3, true, true, 0, 15, {100, 20}, {0, 8, 1, 8, 0}, true},
  };
  for (const Seed& s : seeds) {
    const std::vector<uint8_t> bytes = Build(s);
    const std::string path = std::string(argv[1]) + "/seed-" + s.name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
      std::perror(path.c_str());
      return 1;
    }
    std::printf("%s: %zu bytes\n", path.c_str(), bytes.size());
  }
  return 0;
}
