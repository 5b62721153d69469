// The bus as its clients see it: topics with wildcards, fan-out, unsubscribe torn down at the
// bus, block and drop backpressure, flush, and lifecycle. Real vhost-user connections and
// rings; processes are in bus.processes.test.ts.
import { VringError } from '@vring/core';
import { firstValueFrom, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, socketPath, until } from '../../../test-support/index.js';
import type { BusMessage } from '../src/index.js';
import { TopicPattern } from '../src/topic.js';
import { startBus } from './fixtures/bus-harness.js';

test('a published value reaches every subscription whose pattern matches, once per subscription', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const a = await h.connect();
    const b = await h.connect();
    const exact = a.subscribe('prices.eu.sap');
    const oneToken = a.subscribe('prices.*.sap');
    const tail = b.subscribe('prices.>');
    const other = b.subscribe('orders.>');
    await a.flush();
    await b.flush();
    assert.is(h.bus.stats.subscriptions, 4);
    await publisher.publish('prices.eu.sap', { bid: 1 });
    await publisher.publish('prices.us.ibm', { bid: 2 });
    const expected = { topic: 'prices.eu.sap', value: { bid: 1 } };
    assert.equal((await exact.next()).value, expected);
    assert.equal((await oneToken.next()).value, expected);
    assert.equal((await tail.next()).value, expected);
    assert.equal((await tail.next()).value, { topic: 'prices.us.ibm', value: { bid: 2 } });
    await publisher.flush();
    await b.flush();
    assert.is(other.pending, 0);
    assert.is(exact.pending, 0);
    // One copy per client, however many of its subscriptions match.
    assert.is(h.bus.stats.delivered, 3);
  } finally {
    await h.close();
  }
});

test('malformed topics and patterns are refused with ERR_VRING_INVALID_ARGUMENT', async () => {
  const h = startBus();
  try {
    const c = await h.connect();
    for (const topic of ['', 'a..b', 'a.*', 'a.>', '.a']) {
      const error = await rejection(c.publish(topic, 1));
      assert.is(error.code, 'ERR_VRING_INVALID_ARGUMENT', topic);
    }
    for (const pattern of ['', 'a.>.b', 'a..b']) {
      assert.throws(
        () => c.subscribe(pattern),
        (e: VringError) => e.code === 'ERR_VRING_INVALID_ARGUMENT',
      );
    }
    const error = await rejection(c.publish('x', 2n ** 70n)); // beyond msgpack's 64 bits
    assert.is(error.code, 'ERR_VRING_INVALID_ARGUMENT');
  } finally {
    await h.close();
  }
});

test('unsubscribing removes the subscription at the bus; later messages are not sent', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe('t');
    await subscriber.flush();
    assert.is(h.bus.stats.subscriptions, 1);
    sub.unsubscribe();
    await subscriber.flush();
    assert.is(h.bus.stats.subscriptions, 0);
    await publisher.publish('t', 1);
    await publisher.flush();
    assert.is(h.bus.stats.delivered, 0);
    assert.equal(await sub.next(), { done: true, value: undefined });
  } finally {
    await h.close();
  }
});

test('an Observable subscription tears down at the bus when unsubscribed', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const received = firstValueFrom(subscriber.observe<number>('n.*').pipe(take(3), toArray()));
    await subscriber.flush();
    assert.is(h.bus.stats.subscriptions, 1);
    for (let i = 0; i < 3; i++) await publisher.publish(`n.${i}`, i);
    const values = (await received).map((m: BusMessage<number>) => m.value);
    assert.equal(values, [0, 1, 2]);
    await subscriber.flush();
    assert.is(h.bus.stats.subscriptions, 0);
  } finally {
    await h.close();
  }
});

test('leaving a for-await loop unsubscribes', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<number>('loop');
    await subscriber.flush();
    void publisher.publish('loop', 7);
    for await (const m of sub) {
      assert.is(m.value, 7);
      break;
    }
    await subscriber.flush();
    assert.is(h.bus.stats.subscriptions, 0);
    assert.not.ok(sub.active);
  } finally {
    await h.close();
  }
});

test('block: a full subscription holds the publisher back and loses nothing', async () => {
  const h = startBus({ highWaterMark: 64 });
  try {
    // The smallest frames and short rings: small messages share a frame, and rings of
    // 64 KiB frames would hold the whole run.
    const small = { maxFrame: 94, queueSize: 64 };
    const publisher = await h.connect(small);
    const subscriber = await h.connect(small);
    const sub = subscriber.subscribe<number>('b', { highWaterMark: 16 });
    await subscriber.flush();
    const total = 5000;
    let published = 0;
    const publishing = (async () => {
      for (let i = 0; i < total; i++) {
        await publisher.publish('b', i);
        published++;
      }
    })();
    // Nobody takes: the publisher stops well short of the end (bounded queues all the way).
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(published < total, `publisher ran ahead: ${published}`);
    assert.ok(sub.pending <= 16 + 1024, `subscription queue grew to ${sub.pending}`);
    // A publish still queued behind the held-back ones can be withdrawn.
    const abort = new AbortController();
    const withdrawn = rejection(publisher.publish('b', -1, { signal: abort.signal }));
    abort.abort(new Error('changed my mind'));
    assert.is((await withdrawn).message, 'changed my mind');
    for (let i = 0; i < total; i++) assert.is((await sub.next()).value?.value, i);
    await publishing;
    await publisher.flush();
    await subscriber.flush();
    assert.is(sub.pending, 0, 'the withdrawn message never arrived');
    assert.is(sub.dropped, 0);
  } finally {
    await h.close();
  }
});

test('drop: a full subscription drops and counts; the publisher never waits', async () => {
  const h = startBus({ highWaterMark: 64 });
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<number>('d', { policy: 'drop', highWaterMark: 10 });
    await subscriber.flush();
    const total = 20_000;
    for (let i = 0; i < total; i++) void publisher.publish('d', i);
    await publisher.flush();
    await subscriber.flush();
    await until(() => sub.pending + sub.dropped === total, 'every message is queued or dropped');
    assert.is(sub.pending, 10);
    const kept = [];
    while (sub.pending > 0) kept.push((await sub.next()).value?.value);
    // What was kept is in order: the first ten, since later ones found the queue full.
    assert.equal(kept, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  } finally {
    await h.close();
  }
});

test('the queue at the bus is bounded by bytes too: large messages hold a block publisher back, and a drop subscription loses them, long before the count would', async () => {
  // 1024 messages by count; 256 KiB by bytes, eight of the 32 KiB values below.
  const h = startBus({ highWaterBytes: 256 * 1024 });
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const subscriberStats = () => h.bus.report().clients[1]!;
    // It takes two, then stops reading: its ring fills, then its queue at the bus.
    const sub = subscriber.subscribe<Buffer>('big', { highWaterMark: 2 });
    const lossy = subscriber.subscribe<Buffer>('lossy', { policy: 'drop' });
    await subscriber.flush();
    const total = 300; // 9.4 MiB: queued whole if only the count bounded the queue
    const value = (i: number) => Buffer.alloc(32 * 1024, i % 251);
    let published = 0;
    const publishing = Promise.all(
      Array.from({ length: total }, (_, i) =>
        publisher.publish('big', value(i)).then(() => published++),
      ),
    );
    // Should an assertion fail, the publishes then fail with the bus: not unhandled.
    publishing.catch(() => {});
    await until(() => subscriberStats().queuedBytes >= 256 * 1024, 'the queue at the bus to fill');
    // Held back now: whatever was still on its way has had time to arrive.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(published < total, `the publisher ran ahead: ${published} of ${total}`);
    // The bound, and what a batch of the publisher's ring in hand may add to it.
    const { queued, queuedBytes } = subscriberStats();
    assert.ok(queuedBytes <= 2 * 1024 * 1024, `${queuedBytes} bytes queued at the bus`);
    assert.ok(queued <= 64, `${queued} messages queued at the bus`);

    // The queue is full by bytes: a drop subscription of the same client loses what comes.
    const other = await h.connect();
    await Promise.all(Array.from({ length: 100 }, (_, i) => other.publish('lossy', value(i))));
    await until(() => subscriberStats().dropped === 100, 'every one dropped at the bus');
    assert.is(subscriberStats().queuedBytes, queuedBytes, 'none queued');

    // Nothing of the block subscription was lost, nor reordered, nor damaged.
    for (let i = 0; i < total; i++) {
      const got = (await sub.next()).value!.value;
      assert.ok(Buffer.from(got).equals(value(i)), `value ${i}`);
    }
    await publishing;
    assert.is(sub.dropped, 0);
    assert.is(lossy.dropped, subscriberStats().dropped);
  } finally {
    await h.close();
  }
});

test('a large message on one topic does not hold up small ones on another', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const big = subscriber.subscribe<Buffer>('big');
    const small = subscriber.subscribe<number>('small');
    await subscriber.flush();
    const payload = Buffer.alloc(32 * 1024 * 1024, 7);
    const bigSent = publisher.publish('big', payload);
    const smallSent = publisher.publish('small', 1);
    const bigNext = big.next();
    const first = await Promise.race([small.next().then(() => 'small'), bigNext.then(() => 'big')]);
    assert.is(first, 'small');
    await Promise.all([bigSent, smallSent]);
    const got = (await bigNext).value!.value;
    assert.is(got.byteLength, payload.byteLength);
    assert.ok(Buffer.from(got).equals(payload));
  } finally {
    await h.close();
  }
});

test('messages on one topic from one publisher arrive in publish order, whatever their sizes', async () => {
  const h = startBus();
  try {
    const publisher = await h.connect();
    const subscriber = await h.connect();
    const sub = subscriber.subscribe<{ i: number; pad: Buffer }>('o');
    await subscriber.flush();
    const sizes = [0, 100_000, 5, 3_000_000, 1, 20_000, 0];
    await Promise.all(sizes.map((n, i) => publisher.publish('o', { i, pad: Buffer.alloc(n) })));
    for (let i = 0; i < sizes.length; i++) {
      const m = (await sub.next()).value!.value;
      assert.is(m.i, i);
      assert.is(m.pad.byteLength, sizes[i]);
    }
  } finally {
    await h.close();
  }
});

test('closing a client ends its subscriptions and removes them from the bus', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    const sub = client.subscribe('x');
    const waiting = sub.next();
    await client.flush();
    assert.is(h.bus.stats.subscriptions, 1);
    client.close();
    assert.equal(await waiting, { done: true, value: undefined });
    assert.is(await client.closed, undefined);
    await until(() => h.bus.stats.clients === 0, 'the bus saw the client go');
    assert.is(h.bus.stats.subscriptions, 0);
    assert.is((await rejection(client.publish('x', 1))).code, 'ERR_VRING_CLOSED');
  } finally {
    await h.close();
  }
});

test('drain stops serving, lets handlers and requests finish, flushes, then closes', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = false;
    server.serve('work', async (n: number) => {
      started = true;
      await gate;
      return n * 2;
    });
    await server.flush();
    const inFlight = client.request('work', 21);
    // Its handler running (routed by the bus is not enough: drain closes a server that has
    // nothing running, and the bus then fails what it had routed to it).
    await until(() => started, 'the request reached the handler');
    const draining = server.drain();
    await server.flush().catch(() => {});
    // No longer served: a new request finds nobody.
    await until(() => h.bus.stats.requests === 1, 'nothing more routed');
    assert.is((await rejection(client.request('work', 1))).code, 'ERR_VRING_NO_RESPONDERS');
    release();
    assert.is(await inFlight, 42);
    await draining;
    assert.is(await server.closed, undefined);
  } finally {
    await h.close();
  }
});

test('an aborted signal unsubscribes', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    const abort = new AbortController();
    const sub = client.subscribe('s', { signal: abort.signal });
    await client.flush();
    assert.is(h.bus.stats.subscriptions, 1);
    abort.abort();
    assert.equal(await sub.next(), { done: true, value: undefined });
    await client.flush();
    assert.is(h.bus.stats.subscriptions, 0);
  } finally {
    await h.close();
  }
});

test('an aborted flush rejects with the reason; its answer reaches nobody and later flushes resolve', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    const abort = new AbortController();
    const aborted = client.flush({ signal: abort.signal });
    abort.abort(new VringError('ERR_VRING_ABORTED', 'no longer needed'));
    assert.is((await rejection(aborted)).message, 'no longer needed');
    await client.flush();
    await client.flush({ signal: new AbortController().signal });
  } finally {
    await h.close();
  }
});

test('connectBus waits for a bus that is not there yet, and can be aborted', async () => {
  const { connectBus } = await import('../src/index.js');
  const abort = new AbortController();
  setTimeout(() => abort.abort(new VringError('ERR_VRING_ABORTED', 'gave up')), 100);
  const error = await rejection(connectBus(socketPath('bus'), { signal: abort.signal }));
  assert.is(error.code, 'ERR_VRING_ABORTED');
});

test('topic patterns: * is one token, a final > is one or more', () => {
  const m = (pattern: string, topic: string) => new TopicPattern(pattern).matches(topic);
  assert.ok(m('a.b', 'a.b'));
  assert.not.ok(m('a.b', 'a.b.c'));
  assert.ok(m('a.*.c', 'a.x.c'));
  assert.not.ok(m('a.*.c', 'a.c'));
  assert.not.ok(m('a.*', 'a.x.y'));
  assert.ok(m('a.>', 'a.x'));
  assert.ok(m('a.>', 'a.x.y.z'));
  assert.not.ok(m('a.>', 'a'));
  assert.ok(m('>', 'anything.at.all'));
  assert.ok(m('*.>', 'a.b'));
  assert.not.ok(m('*.>', 'a'));
});

test('a client in the bus process (bus.connect) publishes, subscribes and serves without rings', async () => {
  const h = startBus();
  try {
    const local = await h.bus.connect();
    const remote = await h.connect();
    const fromLocal = remote.subscribe<number>('from.local');
    const fromRemote = local.subscribe<string>('to.local.>');
    local.serve('double', (n: number) => n * 2);
    await Promise.all([local.flush(), remote.flush()]);
    await local.publish('from.local', 41);
    await remote.publish('to.local.greeting', 'hi');
    assert.is((await fromLocal.next()).value?.value, 41);
    assert.equal((await fromRemote.next()).value, { topic: 'to.local.greeting', value: 'hi' });
    assert.is(await remote.request('double', 21), 42);
    remote.serve('shout', (s: string) => s.toUpperCase());
    await remote.flush();
    assert.is(await local.request('shout', 'hey'), 'HEY');
    // A big message crosses in frames like any other.
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    const bigSub = remote.subscribe<Buffer>('big');
    await remote.flush();
    await local.publish('big', big);
    assert.ok(Buffer.from((await bigSub.next()).value!.value).equals(big));
    assert.is(h.bus.stats.clients, 2);
    assert.ok(local.connected);
    // The in-process connection ends with the bus.
    h.bus.close();
    const error = await local.closed;
    assert.is(error?.code, 'ERR_VRING_PEER_DISCONNECTED');
    assert.not.ok(local.connected);
    await rejection(h.bus.connect()).then((e) => assert.is(e.code, 'ERR_VRING_CLOSED'));
  } finally {
    await h.close();
  }
});

test.run();
