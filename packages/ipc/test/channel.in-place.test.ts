// Channel over a queue pair that lends its memory: a large value is written once into the
// driver's transmit area and read where it lies, and a peer that rewrites what it sent can
// give a wrong value or a protocol error, never a crash or a value that changes after
// delivery.
import { randomBytes } from 'node:crypto';
import { DeviceQueuePair, DriverQueuePair } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { until } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';

const LARGE = 256 * 1024;

function pair() {
  const driver = DriverQueuePair.create({
    notification: 'event',
    queueSize: 256,
    bufferSize: 8192, // a 2 MiB transmit area: several large frames in flight
    maxMessage: 1024 * 1024,
  });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'event' });
  return { driver, device };
}

// Random bytes: a value's first bytes are then found nowhere else in the transmit area.
const values = new Map<number, Buffer>();
function filled(seed: number, size = LARGE): Buffer {
  let data = values.get(seed);
  if (!data) {
    data = randomBytes(size);
    values.set(seed, data);
  }
  return data;
}

/** Where `needle` lies in the driver's whole transmit area (the room `reserve` lends is a view of it). */
function findInTransmitArea(driver: DriverQueuePair, needle: Buffer): { area: Buffer; at: number } {
  const room = driver.reserve(0);
  assert.ok(room, 'the driver has room to lend');
  const area = Buffer.from(room.buffer, 0, room.buffer.byteLength);
  const at = area.indexOf(needle);
  assert.ok(at >= 0, 'the value was written into the transmit area');
  return { area, at };
}

test('large values cross as one frame each, written into shared memory and read in place', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ i: number; data: Buffer }>(driver);
  const b = new Channel<{ i: number; data: Buffer }>(device);
  const count = 24;
  const received = (async () => {
    const got: Array<{ i: number; data: Buffer }> = [];
    for await (const v of b) {
      got.push(v);
      if (got.length === count) break;
    }
    return got;
  })();
  for (let i = 0; i < count; i++) await a.send({ i, data: filled(i) });
  const got = await received;
  for (let i = 0; i < count; i++) {
    assert.is(got[i]!.i, i);
    assert.ok(got[i]!.data.equals(filled(i)), `value ${i} arrived intact`);
  }
  // Not cut into 64 KiB frames: one descriptor per value, plus the session's own frames.
  const frames = driver.stats.messagesSent;
  assert.ok(
    frames < 2 * count,
    `${frames} frames for ${count} values (in 64 KiB frames: ${5 * count})`,
  );
  a.close();
  b.close();
});

test('a peer rewriting a value after sending it: the receiver gets the bytes it read, and they never change after', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ data: Buffer }>(driver);
  const b = new Channel<{ data: Buffer }>(device);
  const inbox = b[Symbol.asyncIterator]();
  await a.send({ data: filled(1) }); // the first large value tells the sender to write in place
  assert.ok((await inbox.next()).value!.data.equals(filled(1)));

  const sent = filled(2);
  const marker = sent.subarray(0, 64);
  // The send writes into shared memory within the call; the reader cannot run before this
  // turn ends (same thread), so it reads what is rewritten here.
  const sending = a.send({ data: sent });
  const { area, at } = findInTransmitArea(driver, marker);
  area.fill(0x55, at, at + LARGE);
  await sending;
  const got = (await inbox.next()).value!.data;
  assert.is(got.length, LARGE);
  assert.ok(
    got.every((byte) => byte === 0x55),
    'delivered as read',
  );
  area.fill(0x77, at, at + LARGE);
  assert.ok(
    got.every((byte) => byte === 0x55),
    'a delivered value is a copy: later writes do not reach it',
  );
  a.close();
  b.close();
});

test('a peer rewriting a frame into garbage after sending it: the receiver closes the channel with ERR_VRING_PROTOCOL', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ data: Buffer }>(driver);
  const b = new Channel<{ data: Buffer }>(device);
  const inbox = b[Symbol.asyncIterator]();
  await a.send({ data: filled(1) });
  await inbox.next();

  const sent = filled(3);
  const sending = a.send({ data: sent });
  const { area, at } = findInTransmitArea(driver, sent.subarray(0, 64));
  // Back from the bin's payload to the value's first byte: a map16 of one entry (3 bytes),
  // the key "data" (5 bytes), the bin 32 header (5 bytes). 0xc1 is never valid msgpack.
  const valueStart = at - 13;
  assert.is(area[valueStart], 0xde);
  area[valueStart] = 0xc1;
  await sending;
  const closed = await b.closed;
  assert.is(closed?.code, 'ERR_VRING_PROTOCOL');
  // The other side carries on: its own end is intact.
  await until(() => a.send({ data: Buffer.alloc(1) }).then(() => true));
  a.close();
});

test('views mode: small messages sharing a frame read in place are copies, and never hold it', async () => {
  const { driver, device } = pair(); // a 2 MiB ring; 5 MiB of small messages go through
  const a = new Channel<{ r: number; i: number; name: string }>(driver);
  const b = new Channel<{ r: number; i: number; name: string }>(device, { views: true });
  const inbox = b[Symbol.asyncIterator]();
  const name = 'x'.repeat(40);
  for (let r = 0; r < 200; r++) {
    // One turn's 500 small sends share frames of up to 64 KiB: read in place on arrival.
    const sends = Array.from({ length: 500 }, (_, i) => a.send({ r, i, name }));
    const received = (async () => {
      for (let i = 0; i < 500; i++) {
        const v = (await inbox.next()).value!;
        assert.is(v.i, i); // and never released: a small message needs no release
      }
    })();
    const outcome = await Promise.race([
      Promise.all([...sends, received]).then(() => 'delivered'),
      new Promise((resolve) => setTimeout(resolve, 5000, 'stalled')),
    ]);
    assert.is(outcome, 'delivered', `round ${r}`);
  }
  a.close();
  b.close();
});

for (const maxFrame of [64 * 1024, 1024 * 1024]) {
  test(`values that find the ring full wait in reused staging buffers and still cross whole, frames up to ${maxFrame / 1024} KiB: no buffer made per value`, async () => {
    const { driver, device } = pair();
    const a = new Channel<{ i: number; data: Buffer }>(driver, { maxFrame });
    const b = new Channel<{ i: number; data: Buffer }>(device, { views: true });
    const count = 48;
    const got: Array<{ i: number; ok: boolean }> = [];
    const received = (async () => {
      for await (const v of b) {
        got.push({ i: v.i, ok: v.data.equals(filled(v.i)) });
        b.release(v);
        if (got.length === count) break;
      }
    })();
    // Large allocations anywhere in this process (sender and receiver) after the first burst.
    let allocations = 0;
    let counting = false;
    const original = { allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow };
    for (const name of ['allocUnsafe', 'allocUnsafeSlow'] as const) {
      Buffer[name] = (size: number) => {
        if (counting && size >= 8 * 1024) allocations++;
        return original[name](size);
      };
    }
    try {
      // Bursts of sends not awaited one by one, as large as the transmit area: most find the
      // ring full, and wait (as many as there are staging buffers: past them a value is
      // encoded into a buffer of its own).
      for (let burst = 0; burst < count; burst += 8) {
        counting = burst > 0;
        const sends: Promise<void>[] = [];
        for (let i = burst; i < burst + 8; i++) sends.push(a.send({ i, data: filled(i) }));
        await Promise.all(sends);
      }
      counting = false;
      await received;
    } finally {
      Object.assign(Buffer, original);
    }
    assert.equal(
      got.map((g) => g.i),
      Array.from({ length: count }, (_, i) => i),
      'every value, in order',
    );
    assert.ok(
      got.every((g) => g.ok),
      'every value intact',
    );
    // The link's eight staging buffers are made on first use, the first time that many wait.
    assert.ok(allocations <= 8, `${allocations} buffers made for ${count} values`);
    const frames = driver.stats.messagesSent;
    assert.ok(frames < 2 * count, `${frames} frames for ${count} values: one each`);
    a.close();
    b.close();
  });
}

test('lazy encoding: values that wait for room are encoded when they go, straight into shared memory', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ i: number; data: Buffer }>(driver, { lazyEncoding: true });
  const b = new Channel<{ i: number; data: Buffer }>(device);
  const count = 30; // 30 × 256 KiB: far more than the 2 MiB ring, so most of them wait
  const data = Array.from({ length: count }, (_, i) => Buffer.from(filled(100 + i)));
  const sends = data.map((bytes, i) => a.send({ i, data: bytes }));
  // Still waiting, so still unencoded: what the value holds when it goes is what arrives.
  data[count - 1]!.write('changed', 0);
  const received = (async () => {
    const got: Buffer[] = [];
    for await (const v of b) {
      got.push(v.data);
      if (got.length === count) break;
    }
    return got;
  })();
  await Promise.all(sends);
  const got = await received;
  for (let i = 0; i < count - 1; i++) assert.ok(got[i]!.equals(filled(100 + i)), `value ${i}`);
  assert.is(got[count - 1]!.subarray(0, 7).toString(), 'changed');
  assert.ok(got[count - 1]!.subarray(7).equals(filled(100 + count - 1).subarray(7)));
  assert.ok(driver.stats.messagesSent < 2 * count, 'one frame per value');
  a.close();
  b.close();
});

test('lazy encoding: a value msgpack cannot encode fails its own send only', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ i: number; data: Buffer; big?: bigint }>(driver, { lazyEncoding: true });
  const b = new Channel<{ i: number; data: Buffer }>(device);
  const inbox = b[Symbol.asyncIterator]();
  const ok = (i: number) => a.send({ i, data: filled(200 + i) });
  const sends = [0, 1, 2, 3, 4, 5, 6, 7].map(ok);
  const bad = a.send({ i: -1, data: filled(300), big: 2n ** 70n }); // too large for msgpack
  const after = ok(8);
  const error = await bad.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.is((error as { code?: string })?.code, 'ERR_VRING_INVALID_ARGUMENT');
  await Promise.all([...sends, after]);
  for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 8]) {
    const v = (await inbox.next()).value!;
    assert.is(v.i, i);
    assert.ok(v.data.equals(filled(200 + i)));
  }
  a.close();
  b.close();
});

test.run();
