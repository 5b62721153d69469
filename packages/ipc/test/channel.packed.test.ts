// Channel on a queue pair of packed rings (QueuePairOptions.packed): values cross both ways
// in order over many laps of a small ring, fragmented messages arrive intact, and the format
// travels with the descriptor through offerQueuePair to a device end in another process.
import { createHash } from 'node:crypto';
import { DeviceQueuePair, DriverQueuePair, FdSocket, offerQueuePair } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, spawnScript } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';

function packedPair(queueSize: number, maxMessage?: number) {
  const driver = DriverQueuePair.create({
    packed: true,
    queueSize,
    ...(maxMessage !== undefined && { maxMessage }),
    notification: 'adaptive',
  });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(JSON.parse(JSON.stringify(descriptor)), fds, {
    notification: 'adaptive',
  });
  return { a: new Channel<{ seq: number; body?: Buffer }>(driver), b: new Channel(device) };
}

function body(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

test('packed rings: 5,000 values each way wrap a 16-entry ring hundreds of times, in order', async () => {
  const { a, b } = packedPair(16, 8192);
  const count = 5000;
  const down = (async () => {
    for (let seq = 0; seq < count; seq++) await a.send({ seq });
  })();
  const up = (async () => {
    for (let seq = 0; seq < count; seq++) await b.send({ seq });
  })();
  for (let seq = 0; seq < count; seq++) {
    assert.is(((await b.receive()) as { seq: number }).seq, seq);
    assert.is((await a.receive()).seq, seq);
  }
  await Promise.all([down, up]);
  a.close();
  b.close();
});

test('packed rings: fragmented messages up to 4 MiB arrive intact both ways, between small ones', async () => {
  const { a, b } = packedPair(64);
  const sizes = [0, 2048, 64 * 1024 + 1, 300_000, 4 * 1024 * 1024];
  for (const [seq, size] of sizes.entries()) {
    const sent = body(size, seq);
    const down = a.send({ seq, body: sent });
    await a.send({ seq: -1 });
    const got = (await b.receive()) as { seq: number; body: Buffer };
    await down;
    assert.is(got.seq, seq);
    assert.ok(got.body.equals(sent), `content of ${size} bytes down`);
    assert.is(((await b.receive()) as { seq: number }).seq, -1);
    const up = b.send(got);
    assert.ok((await a.receive()).body!.equals(sent), `content of ${size} bytes up`);
    await up;
  }
  a.close();
  b.close();
});

test('packed rings across processes: offerQueuePair carries the format, and 1 MiB values echo back intact', async () => {
  const path = socketPath('pkch-packed-echo');
  const child = spawnScript(new URL('./fixtures/channel-echo-peer.ts', import.meta.url), [
    path,
    String(64 * 1024 * 1024),
  ]);
  try {
    assert.is(await child.line(), 'ready');
    const socket = await FdSocket.connect(path);
    const driver = await offerQueuePair(socket, { packed: true, queueSize: 128 });
    assert.is(driver.share().descriptor.packed, true);
    const channel = new Channel<{ seq: number; sum: string; body: Uint8Array }>(driver);
    const sent = [16, 1024 * 1024, 9000, 1024 * 1024 + 3, 0].map((size, seq) => {
      const b = body(size, seq + 1);
      return { seq, sum: createHash('sha1').update(b).digest('hex'), body: b };
    });
    // Enough small ones after the large ones that the ring wraps several times.
    for (let i = 0; i < 1000; i++) sent.push({ seq: sent.length, sum: '', body: body(0, 0) });
    const echoed: Array<{ seq: number; sum: string }> = [];
    await Promise.all([
      (async () => {
        for (const m of sent) await channel.send(m);
      })(),
      (async () => {
        for (const expected of sent) {
          const got = await channel.receive();
          const sum = expected.sum && createHash('sha1').update(got.body).digest('hex');
          echoed.push({ seq: got.seq, sum });
        }
      })(),
    ]);
    assert.equal(
      echoed,
      sent.map(({ seq, sum }) => ({ seq, sum })),
      'every value back, in order, intact',
    );
    channel.close();
    socket.close();
    assert.is(await child.exited, 0);
  } finally {
    child.kill();
  }
});

test.run();
