// Channel: msgpack values over one queue pair, in order, any size, with backpressure, and a
// peer that sends garbage cut off with a typed error.
import { DeviceQueuePair, DriverQueuePair, MessageBatch, VringError } from '@vring/core';
import { firstValueFrom, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, until } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';

function pair(options: { maxMessage?: number; queueSize?: number } = {}) {
  const driver = DriverQueuePair.create({ notification: 'adaptive', ...options });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'adaptive' });
  return { driver, device };
}

test('values of every msgpack shape arrive equal and in order, both directions', async () => {
  const { driver, device } = pair();
  const a = new Channel(driver);
  const b = new Channel(device);
  const values = [
    null,
    true,
    42,
    -1.5,
    2n ** 60n,
    'héllo',
    [1, [2, [3]]],
    { nested: { list: [1, 'two', null], bytes: Buffer.from([1, 2, 3]) } },
  ];
  const sending = Promise.all(values.map((v) => a.send(v)));
  const got: unknown[] = [];
  for (let i = 0; i < values.length; i++) got.push(await b.receive());
  await sending;
  assert.equal(got, values);
  await b.send({ reply: 'ok' });
  assert.equal(await a.receive(), { reply: 'ok' });
  a.close();
  b.close();
});

test('decoded Buffers never alias the ring: refilling it changes neither a small nor a fragmented one', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ data: Buffer }>(driver);
  const b = new Channel<{ data: Buffer }>(device);
  await a.send({ data: Buffer.alloc(16, 1) });
  const first = await b.receive();
  // A fragmented one is decoded from its own reassembly buffer, never from the ring.
  const bigSent = a.send({ data: Buffer.alloc(300_000, 3) });
  const big = await b.receive();
  await bigSent;
  // Enough traffic to reuse every receive buffer of the ring several times over.
  const sending = Promise.all(
    Array.from({ length: 2000 }, () => a.send({ data: Buffer.alloc(16, 2) })),
  );
  for (let i = 0; i < 2000; i++) await b.receive();
  await sending;
  assert.ok(first.data.equals(Buffer.alloc(16, 1)));
  assert.ok(big.data.equals(Buffer.alloc(300_000, 3)));
  a.close();
  b.close();
});

test('messages far larger than a frame (5 MiB) are fragmented and reassembled intact', async () => {
  const { driver, device } = pair();
  const a = new Channel<Buffer>(driver);
  const b = new Channel<Buffer>(device);
  const big = Buffer.alloc(5 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
  const sending = a.send(big);
  const got = await b.receive();
  await sending;
  assert.ok(Buffer.from(got).equals(big));
  a.close();
  b.close();
});

test('values arrive in send order whatever their sizes: small, over a frame, over a batch', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ id: number; pad?: Buffer }>(driver);
  const b = new Channel<{ id: number; pad?: Buffer }>(device);
  // Sent in one turn: the first goes straight into the ring, small ones are encoded into the
  // send batch, one over a 64 KiB frame is encoded there and taken out to be fragmented, one
  // over the 256 KiB batch is encoded on its own; the small ones after them queue behind.
  const pads: Record<number, number> = { 3: 100 * 1024, 5: 8 * 1024 * 1024 };
  const sends: Array<Promise<void>> = [];
  for (let id = 0; id <= 12; id++) {
    sends.push(a.send(pads[id] ? { id, pad: Buffer.alloc(pads[id]!, id) } : { id }));
  }
  const got: Array<[number, number]> = [];
  for (let i = 0; i <= 12; i++) {
    const { id, pad } = await b.receive();
    got.push([id, pad?.byteLength ?? 0]);
    if (pad)
      assert.ok(
        pad.every((byte) => byte === id),
        `pad of ${id} intact`,
      );
  }
  await Promise.all(sends);
  assert.equal(
    got,
    Array.from({ length: 13 }, (_, id) => [id, pads[id] ?? 0]),
  );
  a.close();
  b.close();
});

test('a value over one frame sent alone goes out once, cut in place, and arrives intact', async () => {
  const { driver, device } = pair();
  const a = new Channel<{ id: number; pad: Buffer }>(driver);
  const b = new Channel<{ id: number; pad: Buffer }>(device);
  // Each is alone in its turn: a one-frame value would be written through; this one is
  // cut into two frames in the batch and must reach the ring exactly once.
  for (let id = 1; id <= 3; id++) await a.send({ id, pad: Buffer.alloc(100 * 1024, id) });
  await a.send({ id: 4, pad: Buffer.alloc(0) });
  for (let id = 1; id <= 4; id++) {
    const got = await b.receive();
    assert.is(got.id, id);
    assert.ok(got.pad.every((byte) => byte === id));
  }
  const extra = await b.receive({ signal: AbortSignal.timeout(50) }).then(
    (value) => value,
    (error: Error) => error.name,
  );
  assert.is(extra, 'TimeoutError', 'nothing more arrives');
  a.close();
  b.close();
});

test('a slow receiver blocks the sender (nothing lost, memory bounded), then everything arrives', async () => {
  const { driver, device } = pair({ queueSize: 64 });
  // The smallest frames: small messages share a frame, and 64 frames of 64 KiB would hold
  // all 5000 of them.
  const a = new Channel<number>(driver, { maxFrame: 94 });
  const b = new Channel<number>(device, { highWaterMark: 16, maxFrame: 94 });
  let resolved = 0;
  const sends = Array.from({ length: 5000 }, (_, i) => a.send(i).then(() => resolved++));
  await new Promise((r) => setTimeout(r, 50));
  // Rings of 64 small frames plus one batch of read-ahead cannot hold 5000 messages.
  assert.ok(resolved < 5000, `${resolved} sends resolved with nobody reading`);
  for (let i = 0; i < 5000; i++) assert.is(await b.receive(), i);
  await Promise.all(sends);
  a.close();
  b.close();
});

test('async iteration and the Observable deliver the same stream; unsubscribing stops taking', async () => {
  const { driver, device } = pair();
  const a = new Channel<number>(driver);
  const b = new Channel<number>(device);
  for (let i = 0; i < 10; i++) void a.send(i);
  const firstFive = await firstValueFrom(b.messages().pipe(take(5), toArray()));
  assert.equal(firstFive, [0, 1, 2, 3, 4]);
  const rest: number[] = [];
  for await (const v of b) {
    rest.push(v);
    if (rest.length === 5) break;
  }
  assert.equal(rest, [5, 6, 7, 8, 9]);
  a.close();
  b.close();
});

test('Observable subscriptions take values in turns; one that unsubscribes mid-stream takes no more', async () => {
  const { driver, device } = pair();
  const a = new Channel<number>(driver);
  const b = new Channel<number>(device);
  const first: number[] = [];
  const second: number[] = [];
  let completed = 0;
  const one = b.messages().subscribe({
    next: (v) => {
      first.push(v);
      if (first.length === 3) one.unsubscribe();
    },
  });
  b.messages().subscribe({ next: (v) => second.push(v), complete: () => completed++ });
  for (let i = 0; i < 10; i++) void a.send(i);
  await until(() => first.length + second.length >= 10, 'all ten values');
  // Alternating while both listen; after the third value the first takes nothing more.
  assert.equal(first, [0, 2, 4]);
  assert.equal(second, [1, 3, 5, 6, 7, 8, 9]);
  b.close();
  await b.closed;
  assert.is(completed, 1, 'closing the channel completes a subscription');
  a.close();
});

test('close() rejects pending receives with ERR_VRING_CLOSED and ends iteration', async () => {
  const { driver, device } = pair();
  const b = new Channel(device);
  const pending = rejection(b.receive());
  b.close();
  assert.is((await pending).code, 'ERR_VRING_CLOSED');
  assert.is(await b.closed, undefined);
  assert.is((await rejection(b.send(1))).code, 'ERR_VRING_CLOSED');
  driver.close();
});

test('an aborted receive rejects with the signal reason and does not lose the next value', async () => {
  const { driver, device } = pair();
  const a = new Channel<number>(driver);
  const b = new Channel<number>(device);
  const controller = new AbortController();
  const aborted = b.receive({ signal: controller.signal }).catch((e: unknown) => e);
  controller.abort(new Error('stop'));
  assert.is(((await aborted) as Error).message, 'stop');
  await a.send(7);
  assert.is(await b.receive(), 7);
  a.close();
  b.close();
});

test('a peer that sends frames that are not vring frames is cut off with ERR_VRING_PROTOCOL', async () => {
  const { driver, device } = pair();
  const b = new Channel(device);
  const receiving = rejection(b.receive());
  const garbage = new MessageBatch();
  garbage.push(Buffer.from('definitely not an ethernet frame with a vring header'));
  await driver.sendBatch(garbage);
  const error = await receiving;
  assert.is(error.code, 'ERR_VRING_PROTOCOL');
  assert.is(error.reason, 'not-vring-ethertype');
  assert.is((await b.closed)?.code, 'ERR_VRING_PROTOCOL');
  driver.close();
});

test('a value msgpack cannot encode is ERR_VRING_INVALID_ARGUMENT and the channel carries on', async () => {
  const { driver, device } = pair();
  const a = new Channel<unknown>(driver);
  const b = new Channel<unknown>(device);
  const error = await rejection(a.send(2n ** 70n));
  assert.is(error.code, 'ERR_VRING_INVALID_ARGUMENT');
  await a.send(undefined);
  await a.send('after');
  assert.is(await b.receive(), undefined, 'undefined is a value like any other');
  assert.is(await b.receive(), 'after');
  a.close();
  b.close();
});

test('a send whose ring has just failed rejects (never throws) and closes the channel with the error', async () => {
  const { driver, device } = pair();
  const channel = new Channel<number>(driver);
  // The end fails now; the channel learns it only a microtask later, so this send still
  // takes the straight-into-the-ring path, which finds the end failed.
  driver.destroy(new VringError('ERR_VRING_PEER_DISCONNECTED', 'the peer went away'));
  let sent: Promise<void> | undefined;
  assert.not.throws(() => {
    sent = channel.send(1);
  });
  assert.is((await rejection(sent!)).code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is((await channel.closed)?.code, 'ERR_VRING_PEER_DISCONNECTED');
  device.close();
});

test.run();
