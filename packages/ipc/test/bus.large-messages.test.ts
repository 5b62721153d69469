// Messages of every size class through a bus process, checked by content: a publisher here,
// subscribers in processes of their own (one cutting frames at the default 9 KiB, one at
// 64 KiB), each hashing every value it gets. Large values cross the bus read in place from
// the publisher's ring and written straight into each subscriber's (docs/architecture.md,
// "Large messages"); a subscriber slower than the publisher has the rest wait at the bus.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, socketPath, spawnScript } from '../../../test-support/index.js';
import { connectBus } from '../src/index.js';

/** 64 B .. 16 MiB: one frame, frame edges, many frames, a ring's worth and more. */
const SIZES = [
  64,
  1024,
  8 * 1024,
  9216 - 60,
  9216,
  64 * 1024 - 100,
  64 * 1024,
  256 * 1024,
  1024 * 1024,
  4 * 1024 * 1024,
  16 * 1024 * 1024,
];
/** Rounds of every size, each published at once. */
const ROUNDS = 1;

function spawnFixture(name: string, args: string[]): Child {
  return spawnScript(new URL(`./fixtures/${name}`, import.meta.url), args);
}

function patterned(size: number, seed: number): Buffer {
  const data = Buffer.allocUnsafe(size);
  for (let i = 0; i + 4 <= size; i += 4) data.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  for (let i = size & ~3; i < size; i++) data[i] = seed & 0xff;
  return data;
}

test('values of 64 B to 16 MiB reach subscriber processes through a bus process intact and in order', async () => {
  const path = socketPath('bus');
  const bus = spawnFixture('bus-process.ts', [path]);
  const count = SIZES.length * ROUNDS;
  const subscribers: Child[] = [];
  try {
    assert.is(await bus.line(), 'ready');
    for (const maxFrame of [9216, 64 * 1024]) {
      subscribers.push(
        spawnFixture('bus-checksum-subscriber.ts', [
          path,
          'sized',
          String(count),
          String(maxFrame),
        ]),
      );
    }
    for (const s of subscribers) assert.is(await s.line(), 'ready');
    const publisher = await connectBus(path);
    let seq = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // A round at once: large values queue at the bus behind each other and small ones
      // behind them, and must still arrive in publish order.
      const sent: Promise<void>[] = [];
      for (const size of SIZES) {
        const data = patterned(size, seq);
        const sha256 = createHash('sha256').update(data).digest('hex');
        sent.push(publisher.publish('sized', { seq, size, sha256, data }));
        seq++;
      }
      await Promise.all(sent);
    }
    const results = await Promise.all(subscribers.map(async (s) => JSON.parse(await s.line())));
    for (const [i, r] of results.entries()) {
      assert.is(r.received, count, `subscriber ${i} received everything`);
      assert.is(r.bad, 0, `subscriber ${i}: values whose checksum or size differ`);
      assert.is(r.outOfOrder, 0, `subscriber ${i}: values out of order`);
      assert.equal(
        r.sizes,
        Array.from({ length: ROUNDS }, () => SIZES).flat(),
        `subscriber ${i}: sizes`,
      );
    }
    for (const s of subscribers) assert.is(await s.exited, 0);
    publisher.close();
  } finally {
    for (const s of subscribers) s.kill();
    bus.kill('SIGTERM');
    await bus.exited;
  }
});

test.run();
