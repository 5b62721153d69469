// libFuzzer harness: the device end of a queue pair (DeviceQueuePair, and through it
// DeviceQueue and MemoryTable) facing a driver that controls every byte of its memory.
//
// The input is a hostile driver: where its rings lie, what its memory holds, and which
// device calls happen between its rewrites of that memory. Two regions of driver memory,
// each mapped between inaccessible guard pages, make any access outside them fault; the
// device's own buffers are heap vectors of exactly the documented size, so ASan catches any
// overrun. Invalid peer data must end in kBadRing (then kQueueBroken), never in a crash,
// another error or a result outside the documented bounds (checked below, abort on breach).
//
// Input layout (all little-endian):
//   [0]      config: bits 0-2 log2(queue size), bit 3 EVENT_IDX, bit 4 MRG_RXBUF,
//            bits 5-7 buffer size (64 << n)
//   [1]      max_message = 16 * (byte + 1)
//   [2..13]  ring addresses rx desc/avail/used, tx desc/avail/used: u16 each, bit 15 picks
//            the region, bits 0-14 the offset (past the region's end on purpose: 0x4000)
//   [14..17] rx base, tx base (u16 each)
//   [18..19] n, then n bytes copied into the driver's memory from its first byte on
//   rest     operations, one byte each plus arguments (see RunOperations)
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "vring/device_queue_pair.h"
#include "vring/memory_table.h"
#include "vring/shared_region.h"

namespace {

using namespace vring;

constexpr uint64_t kRegionBytes = 0x4000;
// Descriptor ("guest physical") and ring ("user") addresses of each region. They differ from
// the host addresses and from each other, so a translation skipped anywhere faults. The two
// regions are adjacent in guest space but not in ours: a run that crosses from one to the
// other must not be lent as one piece of memory.
constexpr uint64_t kGuestBase[2] = {0x10000, 0x14000};
constexpr uint64_t kUserBase[2] = {0x7f0000010000ull, 0x7f0000020000ull};

[[noreturn]] void Violation(const char* what) {
  std::fprintf(stderr, "device_queue_pair_fuzzer: %s\n", what);
  std::abort();
}

// One region of driver memory with an inaccessible page before and after it. Mapped once for
// the whole run (zeroed per input): mapping per input would dominate the time per run.
std::shared_ptr<Mapping> GuardedRegion() {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint8_t* reserve = static_cast<uint8_t*>(::mmap(nullptr, kRegionBytes + 2 * page, PROT_NONE,
                                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (reserve == MAP_FAILED) Violation("mmap of the guard reservation failed");
  if (::mprotect(reserve + page, kRegionBytes, PROT_READ | PROT_WRITE) != 0) Violation("mprotect failed");
  // Mapping unmaps what it was given; the guard pages around it stay reserved for the process.
  return std::make_shared<Mapping>(reserve + page, kRegionBytes, 0);
}

struct DriverMemory {
  std::shared_ptr<Mapping> regions[2] = {GuardedRegion(), GuardedRegion()};
};

DriverMemory& Memory() {
  static DriverMemory memory;
  return memory;
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  uint8_t U8() { return at_ < size_ ? data_[at_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  // Up to `n` bytes from the input; returns how many were copied.
  size_t Copy(uint8_t* dst, size_t n) {
    const size_t take = std::min(n, size_ - std::min(at_, size_));
    if (take > 0) std::memcpy(dst, data_ + at_, take);
    at_ += take;
    return take;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

uint64_t RingAddress(uint16_t encoded) {
  return kUserBase[encoded >> 15] + (encoded & 0x7fff);
}

// Writes `n` bytes at `offset` of the driver's memory seen as the two regions end to end.
void WriteDriverMemory(uint64_t offset, Input& in, size_t n) {
  DriverMemory& m = Memory();
  while (n > 0 && offset < 2 * kRegionBytes) {
    uint8_t* region = m.regions[offset / kRegionBytes]->data();
    const uint64_t within = offset % kRegionBytes;
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n, kRegionBytes - within));
    const size_t got = in.Copy(region + within, take);
    if (got < take) return;
    offset += take;
    n -= take;
  }
}

bool IsPeerError(const Error& e) { return e.code() == ErrorCode::kBadRing || e.code() == ErrorCode::kQueueBroken; }

void CheckLocations(const DeviceQueuePair& pair, const MessageLocation* where, uint32_t count,
                    uint64_t scratch_capacity) {
  for (uint32_t i = 0; i < count; ++i) {
    const MessageLocation& w = where[i];
    if (w.length > pair.config().max_message) Violation("a message longer than max_message was received");
    if (w.area == kInScratch) {
      if (w.offset + w.length > scratch_capacity) Violation("a copied message lies outside the scratch buffer");
    } else {
      if (w.area >= pair.area_count()) Violation("a message lies in an area that does not exist");
      if (w.offset + w.length > pair.Area(w.area).size) Violation("a message in place runs past its area");
    }
  }
}

void RunOperations(DeviceQueuePair& pair, Input& in) {
  const QueuePairConfig& config = pair.config();
  std::vector<uint8_t> out(config.max_message);
  std::vector<uint32_t> lengths(64);
  std::vector<MessageLocation> where(64);
  std::vector<uint8_t> send_data(8 * uint64_t{config.max_message}, 0x5a);
  for (int steps = 0; steps < 64 && !in.empty(); ++steps) {
    try {
      switch (in.U8() % 8) {
        case 0: {  // receive, copying
          const uint32_t max_count = in.U8() % 64 + 1;
          const uint32_t n = pair.Receive(out.data(), out.size(), lengths.data(), max_count);
          if (n > max_count) Violation("Receive returned more messages than asked for");
          uint64_t total = 0;
          for (uint32_t i = 0; i < n; ++i) total += lengths[i];
          if (total > out.size()) Violation("Receive reported more bytes than its buffer holds");
          break;
        }
        case 1: {  // receive in place where possible
          const uint32_t max_count = in.U8() % 64 + 1;
          const uint64_t in_place_min = in.U8();
          const uint32_t n = pair.ReceiveInPlace(where.data(), max_count, out.data(), out.size(), in_place_min);
          if (n > max_count) Violation("ReceiveInPlace returned more messages than asked for");
          CheckLocations(pair, where.data(), n, out.size());
          if (pair.held() > config.queue_size) Violation("more chains held than the queue has");
          break;
        }
        case 2: {  // release held chains (never more than held: that is the caller's error)
          const uint32_t held = pair.held();
          pair.Release(held == 0 ? 0 : in.U8() % (held + 1));
          break;
        }
        case 3: {  // send a batch
          const uint32_t count = in.U8() % 8 + 1;
          std::vector<uint32_t> sizes(count);
          for (auto& s : sizes) s = in.U16() % (config.max_message + 1);
          const uint32_t sent = pair.Send(send_data.data(), sizes.data(), count);
          if (sent > count) Violation("Send handled more messages than it was given");
          break;
        }
        case 4: {  // the driver rewrites part of its memory between device calls
          const uint64_t offset = in.U16() % (2 * kRegionBytes);
          WriteDriverMemory(offset, in, in.U8());
          break;
        }
        case 5:
          if (in.U8() & 1) {
            pair.ArmReceive();
          } else {
            pair.DisarmReceive();
          }
          break;
        case 6:
          if (in.U8() & 1) {
            pair.ArmSend(in.U16());
          } else {
            pair.DisarmSend();
          }
          break;
        case 7:
          pair.WaitReceivable(0);
          pair.WaitSendable(0, in.U16());
          break;
      }
    } catch (const Error& e) {
      if (!IsPeerError(e)) throw;
      if (!pair.broken()) Violation("a ring error left the queue pair usable");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t config_bits = in.U8();
  QueuePairConfig config;
  config.queue_size = 1u << (config_bits & 7);
  config.event_idx = config_bits & 8;
  config.mergeable = config_bits & 16;
  config.buffer_size = 64u << (config_bits >> 5);
  config.max_message = 16u * (in.U8() + 1u);
  RingAddresses rx, tx;
  rx.desc = RingAddress(in.U16());
  rx.avail = RingAddress(in.U16());
  rx.used = RingAddress(in.U16());
  tx.desc = RingAddress(in.U16());
  tx.avail = RingAddress(in.U16());
  tx.used = RingAddress(in.U16());
  const uint16_t rx_base = in.U16();
  const uint16_t tx_base = in.U16();

  DriverMemory& m = Memory();
  for (auto& r : m.regions) std::memset(r->data(), 0, kRegionBytes);
  WriteDriverMemory(0, in, in.U16());

  auto memory = std::make_shared<MemoryTable>();
  for (int i = 0; i < 2; ++i) memory->Add(kGuestBase[i], kUserBase[i], kRegionBytes, m.regions[i]);

  std::unique_ptr<DeviceQueuePair> pair;
  try {
    pair = std::make_unique<DeviceQueuePair>(memory, rx, tx, config, rx_base, tx_base, -1, -1);
  } catch (const Error& e) {
    // Rings outside the table or misaligned, or a configuration the layout refuses.
    if (e.code() == ErrorCode::kRegionBounds || e.code() == ErrorCode::kInvalidArgument) return 0;
    throw;
  }
  RunOperations(*pair, in);
  return 0;
}
