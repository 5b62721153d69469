// RPC, over a bus and over a point-to-point Channel: replies, remote errors with their code,
// no responders, timeouts and aborts that reach the handler, streaming replies and their
// cancellation, requests spread over responders, a responder that goes away.
import { DeviceQueuePair, DriverQueuePair } from '@vring/core';
import { firstValueFrom, interval, map, Observable, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection, until } from '../../../test-support/index.js';
import { Channel } from '../src/index.js';
import { Deadlines } from '../src/rpc/deadlines.js';
import { startBus } from './fixtures/bus-harness.js';

function channels() {
  const driver = DriverQueuePair.create({ notification: 'adaptive' });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'adaptive' });
  return { a: new Channel(driver), b: new Channel(device) };
}

test('bus: a request is answered by the client serving its name', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    server.serve('math.add', ([x, y]: [number, number]) => x + y);
    server.serve('async.echo', async (v: unknown) => v);
    await server.flush();
    assert.is(await client.request('math.add', [2, 3]), 5);
    const value = { nested: [1, 'two', Buffer.from([3])] };
    assert.equal(await client.request('async.echo', value), value);
  } finally {
    await h.close();
  }
});

test('bus: a handler error arrives as a VringError with the remote code, message and data', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    server.serve('users.get', (id: number) => {
      throw Object.assign(new Error(`no user ${id}`), { code: 'E_NOT_FOUND', data: { id } });
    });
    server.serve('plain.fail', () => {
      throw new Error('no code');
    });
    await server.flush();
    const error = await rejection(client.request('users.get', 42));
    assert.is(error.code, 'E_NOT_FOUND');
    assert.is(error.message, 'no user 42');
    assert.equal(error.data, { id: 42 });
    assert.ok(error.remote);
    const plain = await rejection(client.request('plain.fail', null));
    assert.is(plain.code, 'ERR_VRING_REMOTE');
    assert.is(plain.message, 'no code');
  } finally {
    await h.close();
  }
});

test('bus: a name nobody serves fails fast with ERR_VRING_NO_RESPONDERS', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    const started = performance.now();
    const error = await rejection(client.request('nobody.home', 1, { timeout: 5000 }));
    assert.is(error.code, 'ERR_VRING_NO_RESPONDERS');
    assert.ok(performance.now() - started < 1000);
    // Once served, and after it stops being served, the answer follows.
    const server = await h.connect();
    const service = server.serve('nobody.home', () => 'here');
    await server.flush();
    assert.is(await client.request('nobody.home', 1), 'here');
    service.stop();
    await server.flush();
    assert.is((await rejection(client.request('nobody.home', 1))).code, 'ERR_VRING_NO_RESPONDERS');
  } finally {
    await h.close();
  }
});

test('bus: a timeout rejects with ERR_VRING_TIMEOUT and aborts the handler', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    let handlerSignal: AbortSignal | undefined;
    server.serve('slow', (_: unknown, { signal }) => {
      handlerSignal = signal;
      return new Promise(() => {}); // never answers
    });
    await server.flush();
    const error = await rejection(client.request('slow', 1, { timeout: 50 }));
    assert.is(error.code, 'ERR_VRING_TIMEOUT');
    await until(() => handlerSignal?.aborted === true, 'the handler saw the cancel');
  } finally {
    await h.close();
  }
});

test('bus: an abort rejects with ERR_VRING_ABORTED (reason as cause) and aborts the handler', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    let handlerSignal: AbortSignal | undefined;
    server.serve('slow', (_: unknown, { signal }) => {
      handlerSignal = signal;
      return new Promise(() => {});
    });
    await server.flush();
    const abort = new AbortController();
    const pending = client.request('slow', 1, { signal: abort.signal });
    await until(() => handlerSignal !== undefined, 'the handler runs');
    abort.abort('user gave up');
    const error = await rejection(pending);
    assert.is(error.code, 'ERR_VRING_ABORTED');
    assert.is(error.cause, 'user gave up');
    await until(() => handlerSignal?.aborted === true, 'the handler saw the cancel');
    const already = await rejection(client.request('slow', 1, { signal: abort.signal }));
    assert.is(already.code, 'ERR_VRING_ABORTED');
  } finally {
    await h.close();
  }
});

test('bus: a handler returning an Observable or an async iterable streams its replies', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    server.serve('range', (n: number) => interval(1).pipe(take(n)));
    server.serve('gen', async function* (n: number) {
      for (let i = 0; i < n; i++) yield { i, pad: Buffer.alloc(i * 10_000) };
    });
    server.serve(
      'broken',
      () =>
        new Observable((s) => {
          s.next(1);
          s.error(Object.assign(new Error('mid-stream'), { code: 'E_STREAM' }));
        }),
    );
    await server.flush();
    assert.equal(
      await firstValueFrom(client.requestStream('range', 5).pipe(toArray())),
      [0, 1, 2, 3, 4],
    );
    const gen = await firstValueFrom(
      client.requestStream<{ i: number; pad: Buffer }>('gen', 20).pipe(toArray()),
    );
    assert.equal(
      gen.map((g) => g.i),
      [...Array(20).keys()],
    );
    assert.equal(
      gen.map((g) => g.pad.byteLength),
      [...Array(20).keys()].map((i) => i * 10_000),
    );
    const seen: unknown[] = [];
    const error = await new Promise<{ code: string }>((resolve) =>
      client.requestStream('broken', null).subscribe({ next: (v) => seen.push(v), error: resolve }),
    );
    assert.equal(seen, [1]);
    assert.is(error.code, 'E_STREAM');
    // A plain value answers a stream request as a stream of one.
    server.serve('one', () => 'only');
    await server.flush();
    assert.equal(await firstValueFrom(client.requestStream('one', null).pipe(toArray())), ['only']);
  } finally {
    await h.close();
  }
});

test('bus: unsubscribing from a streamed reply cancels the handler', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    let handlerSignal: AbortSignal | undefined;
    let produced = 0;
    server.serve('ticks', (_: unknown, { signal }) => {
      handlerSignal = signal;
      return interval(2).pipe(map(() => produced++));
    });
    await server.flush();
    const firstThree = await firstValueFrom(
      client.requestStream<number>('ticks', null).pipe(take(3), toArray()),
    );
    assert.equal(firstThree, [0, 1, 2]);
    await until(() => handlerSignal?.aborted === true, 'the handler saw the cancel');
    const after = produced;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.is(produced, after, 'the Observable was unsubscribed on the server');
  } finally {
    await h.close();
  }
});

test('bus: requests are spread over the clients serving a name', async () => {
  const h = startBus();
  try {
    const servers = [await h.connect(), await h.connect()];
    const client = await h.connect();
    for (const [i, s] of servers.entries()) s.serve('who', () => i);
    for (const s of servers) await s.flush();
    const answers = await Promise.all(
      Array.from({ length: 100 }, () => client.request<number>('who', null)),
    );
    assert.is(answers.filter((a) => a === 0).length, 50);
    assert.is(answers.filter((a) => a === 1).length, 50);
  } finally {
    await h.close();
  }
});

test('bus: requests to a responder that goes away fail with ERR_VRING_PEER_DISCONNECTED', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    let started = 0;
    server.serve('hang', () => {
      started++;
      return new Promise(() => {});
    });
    await server.flush();
    const pending = Array.from({ length: 10 }, () => rejection(client.request('hang', null)));
    await until(() => started === 10, 'all requests reached the server');
    server.close();
    for (const error of await Promise.all(pending))
      assert.is(error.code, 'ERR_VRING_PEER_DISCONNECTED');
  } finally {
    await h.close();
  }
});

test('bus: a closed client rejects its requests in flight with ERR_VRING_CLOSED', async () => {
  const h = startBus();
  try {
    const server = await h.connect();
    const client = await h.connect();
    server.serve('hang', () => new Promise(() => {}));
    await server.flush();
    const pending = rejection(client.request('hang', null));
    await client.flush();
    client.close();
    assert.is((await pending).code, 'ERR_VRING_CLOSED');
  } finally {
    await h.close();
  }
});

test('channel: either side serves and requests; a name the peer does not serve is NO_RESPONDERS', async () => {
  const { a, b } = channels();
  try {
    b.serve('square', (x: number) => x * x);
    a.serve('hello', (name: string) => `hello ${name}`);
    assert.is(await a.request('square', 12), 144);
    assert.is(await b.request('hello', 'b'), 'hello b');
    assert.is((await rejection(a.request('cube', 2))).code, 'ERR_VRING_NO_RESPONDERS');
    // Values and RPC share the channel without mixing.
    await a.send('plain value');
    assert.is(await b.receive(), 'plain value');
    const many = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => a.request<number>('square', i)),
    );
    assert.equal(
      many,
      [...Array(1000).keys()].map((i) => i * i),
    );
    assert.equal(await firstValueFrom(a.requestStream('square', 3).pipe(toArray())), [9]);
  } finally {
    a.close();
    b.close();
  }
});

test('channel: thousands of requests in flight at once, answered in reverse, aborted in the middle, each get their own outcome', async () => {
  const { a, b } = channels();
  try {
    const count = 2500; // more than the requester's and the responder's id slots (1024)
    const answers: (() => void)[] = [];
    const aborted: number[] = [];
    b.serve('double', (n: number, context) => {
      context.signal.addEventListener('abort', () => aborted.push(n));
      return new Promise<number>((resolve) => answers.push(() => resolve(n * 2)));
    });
    const abort = new AbortController();
    const calls = Array.from({ length: count }, (_, i) =>
      a.request<number>('double', i, i === 1500 ? { signal: abort.signal } : undefined),
    );
    await until(() => answers.length === count, 'every request to reach the handler');
    abort.abort();
    assert.is((await rejection(calls[1500]!)).code, 'ERR_VRING_ABORTED');
    await until(() => aborted.length === 1, 'the cancel to reach the handler');
    assert.equal(aborted, [1500]);
    for (const answer of answers.reverse()) answer();
    const results = await Promise.all(calls.map((c, i) => (i === 1500 ? -1 : c)));
    assert.equal(
      results,
      Array.from({ length: count }, (_, i) => (i === 1500 ? -1 : i * 2)),
    );
  } finally {
    a.close();
    b.close();
  }
});

test('request timeouts share one timer: each fires once, in deadline order, unless cancelled', async () => {
  const deadlines = new Deadlines();
  const fired: string[] = [];
  const started = performance.now();
  const at: Record<string, number> = {};
  const add = (name: string, ms: number) =>
    deadlines.add(ms, () => {
      fired.push(name);
      at[name] = performance.now() - started;
    });
  add('slow', 60);
  const cancelled = add('cancelled', 20);
  add('fast', 10); // shorter than everything before it: the timer moves earlier
  add('medium', 30);
  for (let i = 0; i < 10_000; i++) add(`done ${i}`, 20).cancel(); // finished requests
  cancelled.cancel();
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.equal(fired, ['fast', 'medium', 'slow']);
  assert.ok(at.fast! >= 10 && at.medium! >= 30 && at.slow! >= 60, JSON.stringify(at));
  // Fired late (a busy process): all in one pass, still in deadline order.
  const late: string[] = [];
  deadlines.add(3, () => late.push('3 ms'));
  deadlines.add(1, () => late.push('1 ms'));
  deadlines.add(2, () => late.push('2 ms'));
  const busyUntil = performance.now() + 10;
  while (performance.now() < busyUntil) {
    // The timer cannot fire while this turn runs.
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(late, ['1 ms', '2 ms', '3 ms']);
  // A deadline added from an expiring one's callback still fires. (The shared timer is
  // unref'd like the setTimeout it replaces: the sleep keeps this test's process up.)
  const chained = new Promise<string>((resolve) =>
    deadlines.add(5, () => deadlines.add(5, () => resolve('fired'))),
  );
  const sleep = new Promise<string>((resolve) => setTimeout(() => resolve('not fired'), 200));
  assert.is(await Promise.race([chained, sleep]), 'fired');
});

test.run();
