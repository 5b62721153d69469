// request-many: one request to every client serving a name, the replies as they come, ended
// by a count, a timeout, a stall, or every responder having answered. Responders are real
// processes; the failure cases use clients in this process.
import { setTimeout as sleep } from 'node:timers/promises';
import type { VringError } from '@vring/core';
import { firstValueFrom, isObservable, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, rejection, spawnScript, until } from '../../../test-support/index.js';
import type { BusClient } from '../src/index.js';
import { type BusHarness, startBus } from './fixtures/bus-harness.js';

/** Every value of an AsyncIterable, and how long it took to end. */
async function collect<T>(replies: AsyncIterable<T>): Promise<{ values: T[]; ms: number }> {
  const started = performance.now();
  const values: T[] = [];
  for await (const v of replies) values.push(v);
  return { values, ms: performance.now() - started };
}

/**
 * A bus in this process with three responder processes on "who" (answering 0, 1 and 2),
 * started once for the tests that use them: starting processes is most of their cost.
 */
let shared: { h: BusHarness; responders: Child[]; client: BusClient } | undefined;

async function withResponders(run: (client: BusClient, h: BusHarness) => Promise<void>) {
  if (!shared) {
    const h = startBus();
    const url = new URL('./fixtures/bus-responder.ts', import.meta.url);
    const responders = [0, 1, 2].map((id) =>
      spawnScript(url, [h.path, String(id)], { killAfterMs: 30_000 }),
    );
    shared = { h, responders, client: await h.bus.connect() };
    for (const r of responders) assert.is(await r.line(), 'ready');
  }
  await run(shared.client, shared.h);
}

test.after(async () => {
  if (!shared) return;
  shared.client.close();
  for (const r of shared.responders) r.kill();
  await shared.h.close();
});

test('three responder processes: all three replies, and the request ends as soon as the last has answered', async () => {
  await withResponders(async (client, h) => {
    const { values, ms } = await collect(client.requestMany<number>('who', null));
    assert.equal(
      values.sort((a, b) => a - b),
      [0, 1, 2],
    );
    assert.ok(ms < 2000, `ended after ${ms.toFixed(0)} ms, not at the 10 s timeout`);
    assert.is(h.bus.stats.requests, 3, 'one call per responder');
    // The same call as an Observable.
    const replies = client.requestMany<number>('who', null);
    assert.ok(isObservable(replies));
    const viaRx = await firstValueFrom(replies.pipe(toArray()));
    assert.equal(
      viaRx.sort((a, b) => a - b),
      [0, 1, 2],
    );
  });
});

test('maxReplies: 2 ends after two replies and cancels the third responder', async () => {
  await withResponders(async (client) => {
    const request = { delays: { 2: 5000 } };
    const { values, ms } = await collect(
      client.requestMany<number>('who', request, { maxReplies: 2 }),
    );
    assert.equal(
      values.sort((a, b) => a - b),
      [0, 1],
    );
    assert.ok(ms < 2000, `ended after ${ms.toFixed(0)} ms, without waiting for the slow one`);
  });
});

test('stall: a responder that is late by more than the stall after the last reply is not waited for', async () => {
  await withResponders(async (client) => {
    const request = { delays: { 2: 3000 } };
    const { values, ms } = await collect(
      client.requestMany<number>('who', request, { stall: 200, timeout: 10_000 }),
    );
    assert.equal(
      values.sort((a, b) => a - b),
      [0, 1],
    );
    assert.ok(
      ms >= 200 && ms < 2500,
      `ended after ${ms.toFixed(0)} ms: the stall, not the slow one`,
    );
  });
});

test('timeout: the replies that came in time, then a normal end', async () => {
  await withResponders(async (client) => {
    const request = { delays: { 1: 3000, 2: 3000 } };
    const { values, ms } = await collect(
      client.requestMany<number>('who', request, { timeout: 300 }),
    );
    assert.equal(values, [0]);
    assert.ok(ms >= 290 && ms < 2500, `ended after ${ms.toFixed(0)} ms`);
  });
});

test('zero responders: ERR_VRING_NO_RESPONDERS at once, not at the timeout', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    const started = performance.now();
    const error = await rejection(collect(client.requestMany('nobody', 1, { timeout: 5000 })));
    assert.is(error.code, 'ERR_VRING_NO_RESPONDERS');
    assert.ok(performance.now() - started < 1000);
    const viaRx = await rejection(firstValueFrom(client.requestMany('nobody', 1).pipe(toArray())));
    assert.is(viaRx.code, 'ERR_VRING_NO_RESPONDERS');
  } finally {
    await h.close();
  }
});

test('a responder that fails ends the replies with its error, after those before it', async () => {
  const h = startBus();
  try {
    const ok = await h.connect();
    const failing = await h.connect();
    const client = await h.connect();
    ok.serve('mixed', () => 'fine');
    failing.serve('mixed', async () => {
      await sleep(100);
      throw Object.assign(new Error('broken'), { code: 'E_BROKEN' });
    });
    await ok.flush();
    await failing.flush();
    const values: unknown[] = [];
    const error = await rejection(
      (async () => {
        for await (const v of client.requestMany('mixed', null)) values.push(v);
      })(),
    );
    assert.equal(values, ['fine']);
    assert.is(error.code, 'E_BROKEN');
    assert.is((error as VringError).remote, true);
  } finally {
    await h.close();
  }
});

test('a responder that goes away is not an error: the others still answer', async () => {
  const h = startBus();
  try {
    const staying = await h.connect();
    const leaving = await h.connect();
    const client = await h.connect();
    staying.serve('s', async () => {
      await sleep(200);
      return 'here';
    });
    leaving.serve('s', () => new Promise(() => {}));
    await staying.flush();
    await leaving.flush();
    const replies = collect(client.requestMany('s', null));
    await until(() => h.bus.stats.requests === 2, 'both responders have the request');
    leaving.close();
    const { values } = await replies;
    assert.equal(values, ['here']);
  } finally {
    await h.close();
  }
});

test('streaming handlers: each value counts as a reply; take() cancels the rest at every responder', async () => {
  const h = startBus();
  try {
    const responders = [await h.connect(), await h.connect()];
    const client = await h.connect();
    let stopped = 0;
    for (const r of responders) {
      r.serve('ticks', async function* (_: unknown, { signal }) {
        signal.addEventListener('abort', () => stopped++);
        for (let i = 0; ; i++) {
          yield i;
          await sleep(5);
        }
      });
      await r.flush();
    }
    const values = await firstValueFrom(
      client.requestMany<number>('ticks', null).pipe(take(6), toArray()),
    );
    assert.is(values.length, 6);
    await until(() => stopped === 2, 'both streams were cancelled');
  } finally {
    await h.close();
  }
});

test('aborting ends the replies with ERR_VRING_ABORTED and cancels the responders', async () => {
  const h = startBus();
  try {
    const responder = await h.connect();
    const client = await h.connect();
    let cancelled = false;
    responder.serve('slow', (_: unknown, { signal }) => {
      signal.addEventListener('abort', () => {
        cancelled = true;
      });
      return new Promise(() => {});
    });
    await responder.flush();
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    const error = await rejection(
      collect(client.requestMany('slow', null, { signal: abort.signal })),
    );
    assert.is(error.code, 'ERR_VRING_ABORTED');
    await until(() => cancelled, 'the responder was told to stop');
  } finally {
    await h.close();
  }
});

test('bad options are refused with ERR_VRING_INVALID_ARGUMENT', async () => {
  const h = startBus();
  try {
    const client = await h.connect();
    for (const options of [{ maxReplies: 0 }, { maxReplies: 1.5 }, { timeout: 0 }, { stall: -1 }]) {
      const error = await rejection(collect(client.requestMany('x', null, options)));
      assert.is(error.code, 'ERR_VRING_INVALID_ARGUMENT', JSON.stringify(options));
    }
  } finally {
    await h.close();
  }
});

test.run();
