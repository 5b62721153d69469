// Ring floor: ping-pong through one queue pair between two threads pinned to cores 0 and 1,
// with no Node in the way. Compare with `pnpm bench --only=pingpong` to see what the JS layer
// adds. Build and run: make -C native ring-pingpong
#include <pthread.h>
#include <sched.h>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>
#include "vring/device_queue_pair.h"
#include "vring/driver_queue_pair.h"
#include "vring/memory_table.h"
#include "vring/queue_pair_layout.h"
#include "vring/shared_region.h"
#include "vring/spin_wait.h"
using namespace vring;
static void Pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); pthread_setaffinity_np(pthread_self(), sizeof s, &s); }
int main() {
  QueuePairConfig c; c.queue_size = 256; c.buffer_size = 2048; c.max_message = 65536; c.event_idx = true; c.mergeable = true;
  QueuePairLayout layout = ComputeQueuePairLayout(c);
  SharedRegion region = SharedRegion::Create(layout.total_bytes, "pp");
  auto mapping = region.mapping();
  auto memory = std::make_shared<MemoryTable>();
  const uint64_t base = reinterpret_cast<uint64_t>(mapping->data());
  memory->Add(base, base, mapping->size(), mapping);
  DriverQueuePair drv(mapping, 0, base, c, -1, -1);
  DeviceQueuePair dev(memory, drv.rx_addresses(), drv.tx_addresses(), c, 0, 0, -1, -1);
  drv.DisarmReceive(); dev.DisarmReceive();
  const int N = 200000;
  std::thread echo([&] {
    Pin(1);
    std::vector<uint8_t> buf(65536 * 4); uint32_t lens[64];
    for (int done = 0; done < N;) {
      uint32_t n = dev.Receive(buf.data(), buf.size(), lens, 64);
      if (n == 0) { CpuRelax(); continue; }
      uint32_t sent = 0; while (sent < n) sent += dev.Send(buf.data(), lens + sent, n - sent);
      done += n;
    }
  });
  Pin(0);
  std::vector<uint8_t> msg(64, 0xab), out(65536 * 4); uint32_t len = 64, lens[64];
  std::vector<double> rt; rt.reserve(N);
  for (int i = 0; i < N; ++i) {
    uint64_t t0 = MonotonicNanos();
    while (drv.Send(msg.data(), &len, 1) == 0) {}
    while (drv.Receive(out.data(), out.size(), lens, 64) == 0) CpuRelax();
    rt.push_back((MonotonicNanos() - t0) / 1000.0);
  }
  echo.join();
  std::sort(rt.begin(), rt.end());
  std::printf("native ping-pong 64 B: p50 %.2f us p99 %.2f us\n", rt[N / 2], rt[N * 99 / 100]);
}
