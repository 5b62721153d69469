// Messages of every size class through a bus process, checked by content: a publisher here,
// subscribers in processes of their own (cutting frames at the default 9 KiB and at 64 KiB,
// copying, and at 1 MiB in views mode), each hashing every value it gets.
// Large values cross the bus read in place from the publisher's ring and written straight
// into each subscriber's, where they are decoded (docs/architecture.md, "Large messages");
// a subscriber slower than the publisher has the rest wait at the bus. A subscriber in views
// mode that never releases holds the publisher back until its deadline, and nothing is
// corrupted.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, socketPath, spawnScript } from '../../../test-support/index.js';
import { connectBus, VringError } from '../src/index.js';

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
const KiB = 1024;
/** Frames that carry a 1 MiB value whole (the value and its envelope). */
const MIB_FRAME = 1024 * KiB + 256;

function spawnFixture(name: string, args: string[], options = {}): Child {
  return spawnScript(new URL(`./fixtures/${name}`, import.meta.url), args, options);
}

function patterned(size: number, seed: number): Buffer {
  const data = Buffer.allocUnsafe(size);
  for (let i = 0; i + 4 <= size; i += 4) data.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  for (let i = size & ~3; i < size; i++) data[i] = seed & 0xff;
  return data;
}

/** The subscribers of the checksum test: frame size, and whether it takes views. */
const SUBSCRIBERS = [
  { maxFrame: 9216, views: false },
  { maxFrame: 64 * KiB, views: false },
  { maxFrame: MIB_FRAME, views: true },
];

test('values of 64 B to 16 MiB reach subscriber processes through a bus process intact and in order', async () => {
  const path = socketPath('bus');
  const bus = spawnFixture('bus-process.ts', [path, JSON.stringify({ maxFrame: MIB_FRAME })]);
  const count = SIZES.length * ROUNDS;
  const subscribers: Child[] = [];
  try {
    assert.is(await bus.line(), 'ready');
    for (const { maxFrame, views } of SUBSCRIBERS) {
      subscribers.push(
        spawnFixture('bus-checksum-subscriber.ts', [
          path,
          'sized',
          String(count),
          String(maxFrame),
          ...(views ? ['views'] : []),
        ]),
      );
    }
    for (const s of subscribers) assert.is(await s.line(), 'ready');
    const publisher = await connectBus(path, { maxFrame: MIB_FRAME });
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
      assert.is(r.notBuffers, 0, `subscriber ${i}: binary values that are not Node Buffers`);
      assert.equal(
        r.sizes,
        Array.from({ length: ROUNDS }, () => SIZES).flat(),
        `subscriber ${i}: sizes`,
      );
    }
    // Views only where asked for, and then for every value the bus wrote whole into a frame
    // that was read in place: from 8 KiB up to the 1 MiB frame (larger ones are cut into
    // frames and reassembled into buffers of their own).
    const whole = SIZES.filter((size) => size >= 8 * KiB && size <= 1024 * KiB).length;
    for (const [i, r] of results.entries()) {
      assert.is(r.views, SUBSCRIBERS[i]!.views ? whole * ROUNDS : 0, `subscriber ${i}: views`);
    }
    for (const s of subscribers) assert.is(await s.exited, 0);
    publisher.close();
  } finally {
    for (const s of subscribers) s.kill();
    bus.kill('SIGTERM');
    await bus.exited;
  }
});

test('a viewing subscriber gets 1 MiB values whose frames wrapped around its ring intact, from spare buffers', async () => {
  const path = socketPath('bus-wraps');
  const bus = spawnFixture('bus-process.ts', [path, JSON.stringify({ maxFrame: MIB_FRAME })]);
  const count = 16;
  let subscriber: Child | undefined;
  try {
    assert.is(await bus.line(), 'ready');
    subscriber = spawnFixture('bus-checksum-subscriber.ts', [
      path,
      'wraps',
      String(count),
      String(MIB_FRAME),
      'views',
    ]);
    assert.is(await subscriber.line(), 'ready');
    const publisher = await connectBus(path, { maxFrame: MIB_FRAME });
    const sent: Promise<void>[] = [];
    for (let seq = 0; seq < count; seq++) {
      const data = patterned(1024 * KiB - 64 * seq, seq);
      const sha256 = createHash('sha256').update(data).digest('hex');
      sent.push(publisher.publish('wraps', { seq, size: data.byteLength, sha256, data }));
    }
    await Promise.all(sent);
    const r = JSON.parse(await subscriber.line());
    assert.is(r.received, count);
    assert.is(r.bad, 0, 'values whose checksum or size differ');
    assert.is(r.outOfOrder, 0);
    assert.is(r.views + r.spares, count, 'every value is a view, of the ring or of a spare');
    // The ring holds four frames: the frames after the first messages of the session (HELLO,
    // PONG) do not line up with its end, and some wrap.
    assert.ok(r.spares >= 1, `${r.spares} values came in spare buffers`);
    assert.is(await subscriber.exited, 0);
    publisher.close();
  } finally {
    subscriber?.kill();
    bus.kill('SIGTERM');
    await bus.exited;
  }
});

const sha1 = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest('hex');

function body(seq: number, size = 200 * KiB): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((Math.imul(seq + 1, 2654435761) + i) >>> 0, i);
  return b;
}

test('a subscriber that never releases its views holds the publisher back until its deadline; nothing is corrupted, and a copying subscriber gets everything', async () => {
  const path = socketPath('bus-views');
  const frame = 256 * KiB;
  // Four messages queued for a subscriber before the bus holds the publishers back.
  const bus = spawnFixture('bus-process.ts', [
    path,
    JSON.stringify({ maxFrame: frame, highWaterMark: 4 }),
  ]);
  let holder: Child | undefined;
  let copier: Child | undefined;
  try {
    assert.is(await bus.line(), 'ready');
    holder = spawnFixture('bus-view-holder.ts', [path, 'held', String(frame)], {
      stdin: 'pipe',
      killAfterMs: 60_000,
    });
    assert.is(await holder.line(), 'ready');
    const publisher = await connectBus(path, { maxFrame: frame });
    let sent = 0;
    let failure: unknown;
    for (; sent < 60; sent++) {
      try {
        // Generous: a publish that has room must not time out on a slow machine.
        await publisher.publish('held', { seq: sent, body: body(sent) }, { timeout: 3000 });
      } catch (error) {
        failure = error;
        break;
      }
    }
    assert.instance(failure, VringError);
    assert.is((failure as VringError).code, 'ERR_VRING_TIMEOUT');
    // Held by the holder (its four frames of receive buffers), queued at the bus for it (4),
    // and in the publisher's ring (four frames): then the publisher waits.
    assert.ok(sent >= 4 && sent <= 20, `${sent} values went before the publisher was held`);
    // The holder takes nothing more: it had the publisher's whole deadline to print what it
    // got, so what it printed by now is all it got.
    const h = holder;
    await h.waitUntil(() => h.stdout().includes('got '), 'a value');
    const held = holder
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('got ')).length;
    assert.ok(held >= 1 && held <= sent, `the holder got ${held} values`);
    for (let seq = 0; seq < held; seq++) {
      assert.is(await holder.line(), `got ${seq} ${sha1(body(seq))}`);
    }
    holder.process.stdin!.write('check\n');
    assert.is(await holder.line(), 'intact yes');

    // Released, the receive buffers go back to the bus, which delivers the rest and lets the
    // publisher go on; a copying subscriber that joins now gets the new values whole.
    copier = spawnFixture('bus-checksum-subscriber.ts', [path, 'after', '6', String(frame)]);
    assert.is(await copier.line(), 'ready');
    holder.process.stdin!.write('release\n');
    // The values queued for it arrive, in order; the one that timed out was withdrawn.
    let released = false;
    for (let seq = held; !released || seq < sent; ) {
      const line = await holder.line();
      if (line === 'released') {
        released = true;
        continue;
      }
      assert.is(line, `got ${seq} ${sha1(body(seq))}`);
      seq++;
    }
    for (let i = 0; i < 6; i++) {
      const data = body(1000 + i, 64 * KiB + 4 * i);
      const sha256 = createHash('sha256').update(data).digest('hex');
      const seq = 1000 + i;
      await publisher.publish(
        'after',
        { seq: i, size: data.byteLength, sha256, data },
        { timeout: 10_000 },
      );
      await publisher.publish('held', { seq, body: body(seq) }, { timeout: 10_000 });
      assert.is(await holder.line(), `got ${seq} ${sha1(body(seq))}`);
    }
    const copied = JSON.parse(await copier.line());
    assert.is(copied.received, 6);
    assert.is(copied.bad, 0, 'values whose checksum or size differ');
    assert.is(copied.notBuffers, 0);
    assert.is(copied.views, 0, 'a subscriber not in views mode gets copies');
    assert.is(await copier.exited, 0);
    publisher.close();
  } finally {
    holder?.kill();
    copier?.kill();
    bus.kill('SIGTERM');
    await bus.exited;
  }
});

test.run();
