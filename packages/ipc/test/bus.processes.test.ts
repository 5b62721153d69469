// The bus with real processes: a bus process and peers that all publish and all subscribe,
// a subscriber killed mid-stream, the bus killed and restarted under its clients.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Child,
  type ChildOptions,
  socketPath,
  spawnScript,
  until,
} from '../../../test-support/index.js';
import { type BusClient, type BusClientEvent, connectBus } from '../src/index.js';

/** Starts the fixture `name` (in ./fixtures) with `args`. */
function spawnFixture(name: string, args: string[], options?: ChildOptions): Child {
  return spawnScript(new URL(`./fixtures/${name}`, import.meta.url), args, options);
}

async function startBusProcess(path: string): Promise<Child> {
  const bus = spawnFixture('bus-process.ts', [path]);
  assert.is(await bus.line(), 'ready');
  return bus;
}

test('four processes each publish 100,000 messages (some over 16 MiB); every one receives all, intact and in order', async () => {
  const path = socketPath('bus');
  const bus = await startBusProcess(path);
  const peers = 4;
  const count = 100_000;
  const children: Child[] = [];
  try {
    for (let id = 0; id < peers; id++) {
      const args = { path, id, peers, count, topics: 3, huge: 2 };
      children.push(spawnFixture('bus-load-peer.ts', [JSON.stringify(args)], { stdin: 'pipe' }));
    }
    for (const c of children) assert.is(await c.line(), 'ready');
    for (const c of children) c.process.stdin!.write('go\n');
    const results = await Promise.all(children.map(async (c) => JSON.parse(await c.line())));
    for (const r of results) {
      assert.is(r.received, peers * count, `peer ${r.id} received everything`);
      assert.equal(r.perPublisher, new Array(peers).fill(count), `peer ${r.id} per publisher`);
      assert.is(r.bad, 0, `peer ${r.id}: damaged messages`);
      assert.is(r.outOfOrder, 0, `peer ${r.id}: messages out of order`);
      assert.is(r.hugeSeen, peers * 2, `peer ${r.id}: messages over 16 MiB`);
    }
    for (const c of children) assert.is(await c.exited, 0);
  } finally {
    for (const c of children) c.kill();
    bus.kill();
  }
});

test('a subscriber killed with SIGKILL mid-stream does not disturb the others', async () => {
  const path = socketPath('bus');
  const bus = await startBusProcess(path);
  const clients: BusClient[] = [];
  const victim = spawnFixture('bus-subscriber.ts', [path, 'k.x']);
  try {
    assert.is(await victim.line(), 'ready');
    const publisher = await connectBus(path);
    const survivor = await connectBus(path);
    clients.push(publisher, survivor);
    const sub = survivor.subscribe<number>('k.x', { highWaterMark: 64 });
    await survivor.flush();
    const total = 50_000;
    const publishing = (async () => {
      for (let i = 0; i < total; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, k) => publisher.publish('k.x', i + k)));
      }
    })();
    // The victim reads slowly (block policy), so the bus is holding the publisher back for it
    // when it dies.
    assert.match(await victim.line(), /^got/);
    victim.kill('SIGKILL');
    for (let i = 0; i < total; i++) {
      const next = await sub.next();
      assert.is(next.value?.value, i);
    }
    await publishing;
  } finally {
    for (const c of clients) c.close();
    victim.kill();
    bus.kill();
  }
});

test('the bus killed and restarted: clients reconnect, resubscribe and serve again by themselves', async () => {
  const path = socketPath('bus');
  let bus = await startBusProcess(path);
  const events: BusClientEvent[] = [];
  const options = { onEvent: (e: BusClientEvent) => events.push(e) };
  const publisher = await connectBus(path, options);
  const subscriber = await connectBus(path, options);
  const server = await connectBus(path, options);
  try {
    const sub = subscriber.subscribe<number>('r.>');
    server.serve('r.echo', (v: unknown) => v);
    await subscriber.flush();
    await server.flush();
    await publisher.publish('r.a', 1);
    assert.is((await sub.next()).value?.value, 1);
    assert.is(await publisher.request('r.echo', 'before'), 'before');

    bus.kill('SIGKILL');
    await bus.exited;
    await until(
      () => events.filter((e) => e.type === 'disconnected').length === 3,
      'all saw the bus go',
    );
    bus = await startBusProcess(path);
    await until(
      () => events.filter((e) => e.type === 'connected').length === 3,
      'all reconnected',
      10_000,
    );
    for (const c of [publisher, subscriber, server]) await c.flush();

    await publisher.publish('r.b', 2);
    assert.equal((await sub.next()).value, { topic: 'r.b', value: 2 });
    assert.is(await publisher.request('r.echo', 'after'), 'after');
  } finally {
    for (const c of [publisher, subscriber, server]) c.close();
    bus.kill();
  }
});

test('10,000 concurrent requests across processes, with remote errors, timeouts and aborts among them', async () => {
  const path = socketPath('bus');
  const bus = await startBusProcess(path);
  const server = spawnFixture('bus-rpc-server.ts', [path]);
  try {
    assert.is(await server.line(), 'ready');
    const client = await connectBus(path);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const outcomes = await Promise.all(
      Array.from({ length: 10_000 }, async (_, i) => {
        try {
          if (i % 10 === 1) return await client.request('rpc.fail', i);
          if (i % 100 === 2) return await client.request('rpc.never', i, { timeout: 100 });
          if (i % 100 === 3) return await client.request('rpc.never', i, { signal: abort.signal });
          const echo = { i, pad: 'p'.repeat(i % 500) };
          return (await client.request<{ value: unknown }>('rpc.echo', echo)).value;
        } catch (error) {
          return error as { code: string; message: string };
        }
      }),
    );
    let echoed = 0;
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i] as { code?: string; message?: string; i?: number; pad?: string };
      if (i % 10 === 1) {
        assert.is(o.code, 'E_RPC_FAIL', `request ${i}`);
        assert.is(o.message, `failed ${i}`);
      } else if (i % 100 === 2) assert.is(o.code, 'ERR_VRING_TIMEOUT', `request ${i}`);
      else if (i % 100 === 3) assert.is(o.code, 'ERR_VRING_ABORTED', `request ${i}`);
      else {
        assert.equal(o, { i, pad: 'p'.repeat(i % 500) }, `request ${i}`);
        echoed++;
      }
    }
    assert.is(echoed, 10_000 - 1000 - 200);
    // The handlers stuck on the timed-out and aborted requests were all told to stop.
    assert.is(await client.request('rpc.running', null), 0);
    client.close();
  } finally {
    server.kill();
    bus.kill();
  }
});

test('a process whose bus client has nothing to wait for exits by itself, without close()', async () => {
  const path = socketPath('bus');
  const bus = await startBusProcess(path);
  const child = spawnFixture('bus-idle-client.ts', [path]);
  try {
    assert.is(await child.line(), 'idle');
    const exit = await Promise.race([
      child.exited,
      new Promise((resolve) => setTimeout(() => resolve('still running after 5 s'), 5000)),
    ]);
    assert.is(exit, 0);
  } finally {
    child.kill();
    bus.kill();
  }
});

test.run();
