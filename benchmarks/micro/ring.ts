// The ring alone: a batch pushed by one end and popped by the other in one process, with no
// waiting and no notification, so what is measured is the native crossing and the copies.
import { DeviceQueuePair, DriverQueuePair, InPlaceBatch, MessageBatch } from '@vring/core';
import { bench, do_not_optimize, group } from 'mitata';

export function ringBenchmarks(): () => void {
  const driver = DriverQueuePair.create({ notification: 'poll', queueSize: 1024 });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'poll' });
  const inbox = new MessageBatch({ bytes: 1024 * 1024, messages: 1024 });
  group('ring: trySend a batch on the driver, tryReceive it on the device', () => {
    for (const [count, size] of [
      [1, 64],
      [64, 64],
      [256, 64],
      [64, 1024],
      [16, 64 * 1024],
    ] as const) {
      const batch = new MessageBatch({ bytes: count * size, messages: count });
      for (let i = 0; i < count; i++) batch.push(Buffer.alloc(size, i));
      bench(`${count} × ${size} B`, () => {
        driver.trySend(batch);
        do_not_optimize(device.tryReceive(inbox));
      });
    }
  });
  // What a polling reader pays for each look at a ring that has nothing for it.
  const lent = new InPlaceBatch({ scratchBytes: 1024 * 1024, frames: 1024 });
  group('ring: poll an empty ring', () => {
    bench('tryReceive', () => do_not_optimize(device.tryReceive(inbox)));
    bench('tryReceiveInPlace', () => do_not_optimize(device.tryReceiveInPlace(lent)));
  });
  return () => {
    driver.close();
    device.close();
  };
}
