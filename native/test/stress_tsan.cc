// Two-thread stress test of one queue pair, built alone under ThreadSanitizer (see the
// Makefile: this file has its own main and does not use the unit-test harness).
//
// A driver thread sends numbered messages of varying size (0 bytes up to maxMessage, so
// many span several buffers) on the transmit queue; a device thread checks each one
// (sequence, length and every byte) and echoes it back through the receive queue, where
// the driver checks it again. The rings are small, so the free-running 16-bit indices
// wrap many times. Runs with EVENT_IDX on and off, once with both sides spin-polling and
// once with both sides sleeping on eventfds between bursts (arm, re-check, poll), which
// exercises the store→fence→load notification handshake: a lost wakeup shows up as a
// side waiting with work pending and fails the run.
//
// Exit status 0 only if every message arrived intact, in order, exactly once, and the
// counters agree. TSan reports (halt_on_error=1) fail it too.
//
// VRING_STRESS_MESSAGES overrides the number of messages per direction per mode.
#include <poll.h>
#include <sched.h>

#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vring/device_queue_pair.h"
#include "vring/driver_queue_pair.h"
#include "vring/error.h"
#include "vring/event_fd.h"
#include "vring/memory_table.h"
#include "vring/queue_pair_layout.h"
#include "vring/shared_region.h"
#include "vring/spin_wait.h"
#include "vring/split_ring.h"

using namespace vring;

namespace {

constexpr uint64_t kGuestBase = 0x100000000ull;
constexpr uint32_t kBatch = 32;            // messages per Send/Receive call at most
constexpr int kWaitTimeoutMs = 20000;      // liveness guard only: a correct run never waits this long
constexpr uint32_t kPatternBytes = 1 << 16;

std::atomic<bool> g_failed{false};
std::mutex g_failure_mutex;
std::string g_failure;
std::vector<uint8_t> g_pattern;  // filled before any thread starts, read-only afterwards

void Fail(const std::string& what) {
  std::lock_guard<std::mutex> lock(g_failure_mutex);
  if (!g_failed.load()) g_failure = what;
  g_failed.store(true);
}

uint32_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Size of message `seq`: mostly small, some empty or tiny, some up to maxMessage.
uint32_t LengthOf(uint64_t seq, uint32_t max_message) {
  const uint32_t h = Mix(seq);
  const uint32_t r = h % 100;
  if (r < 5) return h % 9;           // 0..8 bytes
  if (r < 85) return (h >> 8) % 400;  // fits one buffer or just spills into a second
  return (h >> 8) % (max_message + 1);
}

// Message `seq` of `len` bytes: its sequence number (as much of it as fits), then a
// window of the pattern chosen by seq. Check compares against exactly this.
void Build(uint64_t seq, uint8_t* out, uint32_t len) {
  const uint32_t head = len < 8 ? len : 8;
  std::memcpy(out, &seq, head);
  if (len > head) std::memcpy(out + head, g_pattern.data() + Mix(seq + 1) % 4096, len - head);
}

bool Check(uint64_t seq, const uint8_t* p, uint32_t len) {
  const uint32_t head = len < 8 ? len : 8;
  if (std::memcmp(p, &seq, head) != 0) return false;
  return len == head || std::memcmp(p + head, g_pattern.data() + Mix(seq + 1) % 4096, len - head) == 0;
}

// FNV-1a over a message's (seq, len): both sides fold every message they see into one
// checksum each; the three checksums must agree at the end.
uint64_t Fold(uint64_t h, uint64_t seq, uint32_t len) {
  const uint64_t words[2] = {seq, len};
  const uint8_t* b = reinterpret_cast<const uint8_t*>(words);
  for (size_t i = 0; i < sizeof words; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

struct Mode {
  const char* name;
  bool event_idx;
  bool eventfds;
};

// Sleeps on two eventfds (after the caller armed them and re-checked the ring). A timeout
// means a wakeup was lost (work is visible) or the two sides deadlocked.
template <typename WorkVisible>
void Sleep(const EventFd& a, const EventFd& b, const char* who, WorkVisible&& work_visible) {
  pollfd fds[2] = {{a.fd(), POLLIN, 0}, {b.fd(), POLLIN, 0}};
  const int n = ::poll(fds, 2, kWaitTimeoutMs);
  if (n < 0) {
    Fail(std::string(who) + ": poll failed");
    return;
  }
  if (n == 0 && !g_failed.load()) {
    Fail(std::string(who) + (work_visible() ? ": lost wakeup (work pending, no notification)" : ": deadlock"));
  }
  a.Drain();
  b.Drain();
}

struct Notifiers {
  EventFd rx_kick = EventFd::Create();
  EventFd tx_kick = EventFd::Create();
  EventFd rx_call = EventFd::Create();
  EventFd tx_call = EventFd::Create();
  // Wakes both sides so a failure on one side does not leave the other asleep.
  void WakeAll() const {
    rx_kick.Signal();
    tx_kick.Signal();
    rx_call.Signal();
    tx_call.Signal();
  }
};

struct DriverResult {
  uint64_t sent_checksum = 0, echo_checksum = 0;
  uint64_t sleeps = 0;
};

void RunDriver(DriverQueuePair& drv, const Mode& mode, const Notifiers& n, uint64_t total, DriverResult* result) {
  const uint32_t max = drv.config().max_message;
  std::vector<uint8_t> out(uint64_t{kBatch} * max);
  std::vector<uint32_t> out_lens(kBatch);
  std::vector<uint8_t> in(uint64_t{kBatch} * max);
  std::vector<uint32_t> in_lens(kBatch);
  uint64_t next_build = 0, next_recv = 0;
  uint32_t batch_count = 0, batch_first = 0;
  uint64_t batch_offset = 0;
  uint64_t sent_sum = 0xcbf29ce484222325ull, echo_sum = 0xcbf29ce484222325ull;
  uint32_t idle = 0;
  try {
    while (next_recv < total && !g_failed.load(std::memory_order_relaxed)) {
      uint32_t progress = 0;
      // Build the next batch once the previous one is fully sent.
      if (batch_first == batch_count && next_build < total) {
        batch_count = 0;
        batch_first = 0;
        batch_offset = 0;
        uint64_t off = 0;
        while (batch_count < kBatch && next_build < total) {
          const uint32_t len = LengthOf(next_build, max);
          Build(next_build, out.data() + off, len);
          out_lens[batch_count++] = len;
          sent_sum = Fold(sent_sum, next_build, len);
          off += len;
          ++next_build;
        }
      }
      if (batch_first < batch_count) {
        const uint32_t k = drv.Send(out.data() + batch_offset, out_lens.data() + batch_first, batch_count - batch_first);
        for (uint32_t i = 0; i < k; ++i) batch_offset += out_lens[batch_first + i];
        batch_first += k;
        progress += k;
      }
      const uint32_t r = drv.Receive(in.data(), in.size(), in_lens.data(), kBatch);
      uint64_t off = 0;
      for (uint32_t i = 0; i < r; ++i, ++next_recv) {
        const uint32_t len = in_lens[i];
        if (len != LengthOf(next_recv, max) || !Check(next_recv, in.data() + off, len)) {
          Fail("driver: echo " + std::to_string(next_recv) + " is wrong (length " + std::to_string(len) + ")");
          break;
        }
        echo_sum = Fold(echo_sum, next_recv, len);
        off += len;
      }
      progress += r;
      if (progress > 0) {
        idle = 0;
        continue;
      }
      if (!mode.eventfds) {
        CpuRelax();
        if (++idle % 64 == 0) sched_yield();
        continue;
      }
      if (++idle < 64) {
        CpuRelax();
        continue;
      }
      // Nothing to do: ask for a call on new echoes (and on send space if blocked), then
      // re-check, then sleep.
      const bool blocked_on_send = batch_first < batch_count;
      bool ready = drv.ArmReceive();
      if (blocked_on_send) ready = drv.ArmSend(0) || ready;
      if (!ready) {
        ++result->sleeps;
        Sleep(n.rx_call, n.tx_call, "driver", [&] {
          return drv.WaitReceivable(0) || (blocked_on_send && drv.WaitSendable(0));
        });
      }
      drv.DisarmReceive();
      drv.DisarmSend();
      idle = 0;
    }
  } catch (const Error& e) {
    Fail(std::string("driver: ") + ErrorCodeName(e.code()) + ": " + e.what());
  }
  if (g_failed.load()) n.WakeAll();
  result->sent_checksum = sent_sum;
  result->echo_checksum = echo_sum;
}

struct DeviceResult {
  uint64_t checksum = 0;
  uint64_t sleeps = 0;
};

void RunDevice(DeviceQueuePair& dev, const Mode& mode, const Notifiers& n, uint64_t total, DeviceResult* result) {
  const uint32_t max = dev.config().max_message;
  std::vector<uint8_t> buf(uint64_t{kBatch} * max);
  std::vector<uint32_t> lens(kBatch);
  uint32_t count = 0, first = 0;  // backlog of received messages still to echo
  uint64_t offset = 0;
  uint64_t next_recv = 0, echoed = 0;
  uint64_t sum = 0xcbf29ce484222325ull;
  uint32_t idle = 0;
  try {
    while (echoed < total && !g_failed.load(std::memory_order_relaxed)) {
      uint32_t progress = 0;
      if (first == count) {
        count = dev.Receive(buf.data(), buf.size(), lens.data(), kBatch);
        first = 0;
        offset = 0;
        uint64_t off = 0;
        for (uint32_t i = 0; i < count; ++i, ++next_recv) {
          if (lens[i] != LengthOf(next_recv, max) || !Check(next_recv, buf.data() + off, lens[i])) {
            Fail("device: message " + std::to_string(next_recv) + " is wrong (length " + std::to_string(lens[i]) + ")");
            break;
          }
          sum = Fold(sum, next_recv, lens[i]);
          off += lens[i];
        }
        progress += count;
      }
      if (first < count) {
        const uint32_t k = dev.Send(buf.data() + offset, lens.data() + first, count - first);
        for (uint32_t i = 0; i < k; ++i) offset += lens[first + i];
        first += k;
        echoed += k;
        progress += k;
      }
      if (progress > 0) {
        idle = 0;
        continue;
      }
      if (!mode.eventfds) {
        CpuRelax();
        if (++idle % 64 == 0) sched_yield();
        continue;
      }
      if (++idle < 64) {
        CpuRelax();
        continue;
      }
      // Blocked on receive buffers: ask for a kick when the driver posts some. Otherwise
      // ask for a kick when the driver transmits.
      const bool blocked_on_send = first < count;
      const bool ready = blocked_on_send ? dev.ArmSend(lens[first]) : dev.ArmReceive();
      if (!ready) {
        ++result->sleeps;
        Sleep(n.tx_kick, n.rx_kick, "device", [&] {
          return blocked_on_send ? dev.WaitSendable(0) : dev.WaitReceivable(0);
        });
      }
      dev.DisarmReceive();
      dev.DisarmSend();
      idle = 0;
    }
  } catch (const Error& e) {
    Fail(std::string("device: ") + ErrorCodeName(e.code()) + ": " + e.what());
  }
  if (g_failed.load()) n.WakeAll();
  if (!g_failed.load() && next_recv != total) Fail("device: received " + std::to_string(next_recv) + " messages");
  result->checksum = sum;
}

bool RunMode(const Mode& mode, uint64_t total) {
  QueuePairConfig cfg;
  cfg.queue_size = 64;
  cfg.buffer_size = 256;
  cfg.max_message = 2048;  // up to 9 buffers
  cfg.event_idx = mode.event_idx;
  cfg.mergeable = true;
  const QueuePairLayout layout = ComputeQueuePairLayout(cfg);
  SharedRegion region = SharedRegion::Create(layout.total_bytes, "stress-tsan");
  auto memory = std::make_shared<MemoryTable>();
  memory->Add(kGuestBase, kGuestBase, region.size(), region.mapping());
  Notifiers n;
  const int no_fd = -1;
  DriverQueuePair drv(region.mapping(), 0, kGuestBase, cfg, mode.eventfds ? n.rx_kick.fd() : no_fd,
                      mode.eventfds ? n.tx_kick.fd() : no_fd);
  DeviceQueuePair dev(memory, drv.rx_addresses(), drv.tx_addresses(), cfg, 0, 0,
                      mode.eventfds ? n.rx_call.fd() : no_fd, mode.eventfds ? n.tx_call.fd() : no_fd);

  DriverResult dr;
  DeviceResult vr;
  const uint64_t start = MonotonicNanos();
  std::thread device_thread([&] { RunDevice(dev, mode, n, total, &vr); });
  std::thread driver_thread([&] { RunDriver(drv, mode, n, total, &dr); });
  driver_thread.join();
  device_thread.join();
  const double secs = static_cast<double>(MonotonicNanos() - start) / 1e9;

  if (!g_failed.load()) {
    if (dr.sent_checksum != vr.checksum || dr.sent_checksum != dr.echo_checksum) Fail("checksums differ");
    const PortStats& ds = drv.stats();
    const PortStats& vs = dev.stats();
    if (ds.messages_sent != total || vs.messages_received != total || vs.messages_sent != total ||
        ds.messages_received != total) {
      Fail("message counters disagree with the number of messages");
    }
    if (ds.bytes_sent != vs.bytes_received || vs.bytes_sent != ds.bytes_received || ds.bytes_sent != vs.bytes_sent) {
      Fail("byte counters disagree");
    }
    if (ds.dropped != 0 || vs.dropped != 0) Fail("messages were dropped");
    if (drv.broken() || dev.broken()) Fail("a queue is broken");
    if (!mode.eventfds && (ds.notifications_sent != 0 || vs.notifications_sent != 0)) {
      Fail("notifications were sent without eventfds");
    }
  }
  std::printf("  %s %-28s %" PRIu64 " messages each way, %" PRIu64 " bytes, tx avail idx %u, kicks %" PRIu64
              ", calls %" PRIu64 ", sleeps %" PRIu64 "/%" PRIu64 ", %.1f s\n",
              g_failed.load() ? "FAIL" : "ok  ", mode.name, total, drv.stats().bytes_sent,
              static_cast<unsigned>(dev.tx_last_avail()), drv.stats().notifications_sent,
              dev.stats().notifications_sent, dr.sleeps, vr.sleeps, secs);
  return !g_failed.load();
}

}  // namespace

int main() {
  uint64_t total = 300000;
  if (const char* env = std::getenv("VRING_STRESS_MESSAGES")) total = std::strtoull(env, nullptr, 10);
  g_pattern.resize(kPatternBytes);
  for (uint32_t i = 0; i < kPatternBytes; ++i) g_pattern[i] = static_cast<uint8_t>(Mix(i) >> 13);

  const Mode modes[] = {
      {"event_idx, polling", true, false},
      {"no event_idx, polling", false, false},
      {"event_idx, eventfds", true, true},
      {"no event_idx, eventfds", false, true},
  };
  std::printf("stress: driver and device threads on one queue pair (queue 64, buffers 256, max message 2048)\n");
  bool ok = true;
  for (const Mode& m : modes) {
    try {
      ok = RunMode(m, total) && ok;
    } catch (const Error& e) {
      Fail(std::string("setup: ") + e.what());
      ok = false;
    }
    if (!ok) break;
  }
  if (!ok) {
    std::printf("stress FAILED: %s\n", g_failure.c_str());
    return 1;
  }
  std::printf("stress passed\n");
  return 0;
}
