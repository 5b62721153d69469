// The bus bridged to real nats-server processes on loopback ports: two bus processes ("host
// A" and "host B", `vring bus --nats`) exchanging pub/sub and RPC; a three-node cluster losing
// a node mid-stream; a plain NATS client talking to vring clients.

import { setTimeout as sleep } from 'node:timers/promises';
import { Packr } from 'msgpackr';
import { connect, headers, type NatsConnection } from 'nats';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Child,
  rejection,
  socketPath,
  spawnScript,
  until,
} from '../../../test-support/index.js';
import {
  NATS_SERVER_MISSING,
  type NatsServer,
  natsServerPath,
  startNatsCluster,
  startNatsServer,
} from '../../../test-support/nats-server.js';
import {
  type BusClient,
  type BusMessage,
  connectBus,
  createBus,
  ERROR_HEADER,
  ORIGIN_HEADER,
  type VringError,
} from '../src/index.js';

const msgpack = new Packr({ useRecords: false });
const missing = natsServerPath() ? undefined : NATS_SERVER_MISSING;
if (missing) console.log(`bus.nats-bridge: skipped: ${missing}`);
const natsTest = missing ? test.skip : test;

/** A host's bus: `vring bus --nats` (the command, from source) in a process of its own. */
async function startHost(nats: string, exported: string, imported: string): Promise<Child> {
  const path = socketPath('host');
  const args = ['bus', '--socket', path, '--nats', nats, '--export', exported];
  args.push('--import', imported);
  const host = spawnScript(new URL('../src/cli/main.ts', import.meta.url), args);
  assert.match(await host.line(), 'listening on');
  assert.match(await host.line(), 'bridged to NATS');
  (host as Child & { path: string }).path = path;
  return host;
}

const pathOf = (host: Child) => (host as Child & { path: string }).path;

/** The next `count` messages of a subscription. */
async function take<T>(messages: AsyncIterable<BusMessage<T>>, count: number): Promise<T[]> {
  const values: T[] = [];
  if (count === 0) return values;
  for await (const m of messages) {
    values.push(m.value);
    if (values.length === count) break;
  }
  return values;
}

test('bridge options that cannot work are refused at once with ERR_VRING_INVALID_ARGUMENT', () => {
  const bad = [
    { servers: [] },
    { servers: 'nats://127.0.0.1:1', export: ['orders..new'] },
    { servers: 'nats://127.0.0.1:1', import: ['a.>.b'] },
    { servers: 'nats://127.0.0.1:1', reconnectBufferBytes: 0 },
  ];
  for (const nats of bad) {
    try {
      createBus(socketPath('bad'), { nats: nats as never });
      assert.unreachable(`accepted ${JSON.stringify(nats)}`);
    } catch (error) {
      assert.is((error as VringError).code, 'ERR_VRING_INVALID_ARGUMENT', JSON.stringify(nats));
    }
  }
});

test('a bridge that cannot reach NATS says so, and its bus works and closes all the same', async () => {
  const errors: VringError[] = [];
  const bus = createBus(socketPath('lonely'), {
    nats: { servers: 'nats://127.0.0.1:1', onError: (e) => errors.push(e) },
  });
  const failure = await rejection(bus.nats!.ready);
  assert.is(failure.code, 'ERR_VRING_PEER_DISCONNECTED');
  assert.is(errors.length, 1, 'reported once through onError');
  const client = await bus.connect();
  const echoes = client.subscribe<number>('local');
  await client.flush();
  await client.publish('local', 7);
  assert.is((await echoes.next()).value?.value, 7);
  assert.is(bus.report().nats?.connected, false);
  await bus[Symbol.asyncDispose]();
});

natsTest('host A and host B, each bridged, exchange pub/sub, queue groups and RPC', async () => {
  const server = await startNatsServer();
  // A serves math.*; B asks for three names of it. Both share orders.> both ways.
  const hosts = [
    await startHost(server.url, 'orders.>,math.>', 'orders.>'),
    await startHost(server.url, 'orders.>', 'orders.>,math.add,math.fail,math.missing'),
  ];
  const clients: BusClient[] = [];
  try {
    const [a, b] = await Promise.all(hosts.map((h) => connectBus(pathOf(h))));
    clients.push(a!, b!);
    // Each side subscribes on its own bus; both publish on the same subjects (bridged both
    // ways): each message arrives once on each bus, never back from NATS a second time.
    const onA = a!.subscribe<number>('orders.>');
    const onB = b!.subscribe<number>('orders.>');
    const workersB = [b!.subscribe<number>('orders.*', { queue: 'w' })];
    workersB.push(b!.subscribe<number>('orders.*', { queue: 'w' }));
    await Promise.all([a!.flush(), b!.flush()]);
    // B's queue group is on an imported subject: B's bridge carries it over to NATS.
    await until(async () => (await b!.busReport()).nats!.queueGroups === 1, 'the group carried');
    for (let i = 0; i < 50; i++) await a!.publish('orders.new', i);
    for (let i = 50; i < 100; i++) await b!.publish('orders.new', i);
    const expected = Array.from({ length: 100 }, (_, i) => i);
    const gotA = (await take(onA, 100)).sort((x, y) => x - y);
    const gotB = (await take(onB, 100)).sort((x, y) => x - y);
    assert.equal(gotA, expected, 'bus A: its own and B’s messages, once each');
    assert.equal(gotB, expected, 'bus B: its own and A’s messages, once each');
    // The queue group on B gets each message once between its members.
    await until(() => workersB[0]!.pending + workersB[1]!.pending === 100, 'the workers’ share');
    assert.ok(
      workersB.every((w) => w.pending > 0),
      'both workers take turns',
    );
    // Headers cross with the message.
    const headedOnB = b!.subscribe<number>('orders.headed');
    await b!.flush();
    await a!.publish('orders.headed', 1, { headers: { 'Trace-Id': 'abc' } });
    const headed = await headedOnB.next();
    assert.equal(headed.value?.headers, { 'Trace-Id': 'abc' });

    // RPC across hosts: served on A, requested on B (and the error codes carried over).
    a!.serve<[number, number], number>('math.add', ([x, y], context) => {
      context.replyHeaders = { 'Added-By': 'A', ...context.headers };
      return x + y;
    });
    a!.serve('math.fail', () => {
      throw Object.assign(new Error('no such account'), { code: 'E_ACCOUNT' });
    });
    await a!.flush();
    const sum = await until(
      () => b!.request<number>('math.add', [2, 3]).catch(() => undefined),
      'math.add to be reachable from B',
    );
    assert.is(sum, 5);
    // Tries before A's bridge took math.add on NATS were forwarded too: counted from here.
    const forwarded = (await b!.busReport()).nats!.requestsOut;
    let replyHeaders: Record<string, string> | undefined;
    const headedSum = await b!.request<number>('math.add', [1, 1], {
      headers: { 'Trace-Id': 'xyz' },
      onReplyHeaders: (h) => {
        replyHeaders = { ...h };
      },
    });
    assert.is(headedSum, 2);
    assert.equal(replyHeaders, { 'Added-By': 'A', 'Trace-Id': 'xyz' });
    const fail = await rejection(b!.request('math.fail', null));
    assert.is(fail.code, 'E_ACCOUNT');
    assert.is(fail.message, 'no such account');
    const none = await rejection(b!.request('math.missing', null));
    assert.is(none.code, 'ERR_VRING_NO_RESPONDERS', 'nobody serves it on any host');
    const [reportA, reportB] = await Promise.all([a!.busReport(), b!.busReport()]);
    assert.ok(reportA.nats!.exported >= 50, 'A exported its publishes');
    assert.ok(reportB.nats!.imported >= 50, 'B imported them');
    assert.is(reportB.nats!.requestsOut - forwarded, 3, 'B forwarded its three requests');
    assert.is(reportA.nats!.requestsIn, 3);
    assert.ok(reportA.nats!.connected);
  } finally {
    for (const c of clients) c.close();
    for (const h of hosts) h.kill();
    await server.kill();
  }
});

natsTest(
  'a queue group with members on two hosts handles each message once, wherever it is published',
  async () => {
    const server = await startNatsServer();
    const hosts = [
      await startHost(server.url, 'jobs.>', 'jobs.>'),
      await startHost(server.url, 'jobs.>', 'jobs.>'),
    ];
    const clients: BusClient[] = [];
    const nc = await connect({ servers: server.url });
    try {
      clients.push(...(await Promise.all(hosts.map((h) => connectBus(pathOf(h))))));
      const [a, b] = clients as [BusClient, BusClient];
      // Two members of group `workers` on each host, and a plain subscriber on each.
      const workers = clients.map((c) => [
        c.subscribe<number>('jobs.*', { queue: 'workers' }),
        c.subscribe<number>('jobs.*', { queue: 'workers' }),
      ]);
      const watchers = clients.map((c) => c.subscribe<number>('jobs.>'));
      await Promise.all(clients.map((c) => c.flush()));
      await until(
        async () =>
          (await Promise.all(clients.map((c) => c.busReport()))).every(
            (r) => r.nats!.queueGroups === 1,
          ),
        'the group carried on both hosts',
      );
      await until(async () => {
        nc.publish('jobs.probe', msgpack.pack(-1));
        await nc.flush();
        await sleep(20);
        return watchers.every((w) => w.pending > 0);
      }, 'both bridges to receive');
      // 0-99 published on host A, 100-199 on host B, 200-299 by a plain NATS client.
      const perSource = 100;
      for (let i = 0; i < perSource; i++) {
        await a.publish('jobs.run', i);
        await b.publish('jobs.run', perSource + i);
        nc.publish('jobs.run', msgpack.pack(2 * perSource + i));
      }
      await nc.flush();
      const jobs = 3 * perSource;
      const all = Array.from({ length: jobs }, (_, i) => i);
      const taken = () => workers.flat().reduce((n, w) => n + w.pending, 0);
      await until(
        () => watchers.every((w) => w.pending >= jobs) && taken() >= jobs,
        'every job to reach the watchers and the workers',
      );
      await sleep(200); // a second delivery, if any, would be on its way
      /** What a subscription holds, without the probes; none with headers (none were sent). */
      const drain = async (subscription: (typeof watchers)[number]) => {
        const values: number[] = [];
        while (subscription.pending > 0) {
          const { value } = await subscription.next();
          assert.is(value!.headers, undefined, 'the bridges’ own headers stay off the bus');
          if (value!.value >= 0) values.push(value!.value);
        }
        return values;
      };
      const handled: number[][] = [];
      for (const members of workers) {
        handled.push((await Promise.all(members.map(drain))).flat());
      }
      const [onA, onB] = handled as [number[], number[]];
      assert.equal(
        [...onA, ...onB].sort((x, y) => x - y),
        all,
        'each job handled once, by one member on one host',
      );
      // A host's own publishes reach its own members; the plain client's are shared out.
      assert.is(onA.filter((v) => v < perSource).length, perSource, 'A handled what A published');
      assert.is(
        onB.filter((v) => v >= perSource && v < 2 * perSource).length,
        perSource,
        'B handled what B published',
      );
      const fromNats = (values: number[]) => values.filter((v) => v >= 2 * perSource).length;
      assert.ok(
        fromNats(onA) > 0 && fromNats(onB) > 0,
        `both hosts took the NATS client's jobs: ${fromNats(onA)} and ${fromNats(onB)}`,
      );
      for (const [host, watcher] of watchers.entries()) {
        assert.equal(
          (await drain(watcher)).sort((x, y) => x - y),
          all,
          `the plain subscriber on host ${'AB'[host]}: every job, once`,
        );
      }
    } finally {
      for (const c of clients) c.close();
      await nc.close();
      for (const h of hosts) h.kill();
      await server.kill();
    }
  },
);

natsTest(
  'while NATS is unreachable the bridge buffers up to its limit, then drops and counts',
  async () => {
    const server = await startNatsServer();
    const bus = createBus(socketPath('cut'), {
      onError: () => {},
      nats: { servers: server.url, export: ['ticks'], reconnectBufferBytes: 256 },
    });
    try {
      await bus.nats!.ready;
      const publisher = await bus.connect();
      await server.kill();
      // The only server is gone: the bridge stays disconnected.
      await until(() => !bus.nats!.stats.connected, 'the bridge to see NATS gone');
      const sent = 200;
      for (let i = 0; i < sent; i++) await publisher.publish('ticks', i);
      await publisher.flush();
      await until(() => {
        const { exported, dropped } = bus.nats!.stats;
        return exported + dropped === sent;
      }, 'every tick to be handled');
      const stats = bus.nats!.stats;
      assert.ok(stats.dropped > 0, 'what does not fit the 256-byte buffer is dropped');
      assert.ok(stats.exported > 0, 'what fits is kept for the reconnection');
      assert.ok(stats.exported < sent);
    } finally {
      await bus[Symbol.asyncDispose]();
    }
  },
);

natsTest('a timeout across hosts is ERR_VRING_TIMEOUT', async () => {
  const server = await startNatsServer();
  const bus = createBus(socketPath('slow'), {
    onError: () => {},
    nats: { servers: server.url, import: ['slow'], requestTimeout: 200 },
  });
  const nc = await connect({ servers: server.url });
  try {
    await bus.nats!.ready;
    // A NATS responder that never answers.
    nc.subscribe('slow', { callback: () => {} });
    await nc.flush();
    const client = await bus.connect();
    const error = await rejection(client.request('slow', 1));
    assert.is(error.code, 'ERR_VRING_TIMEOUT');
  } finally {
    await nc.close();
    await bus[Symbol.asyncDispose]();
    await server.kill();
  }
});

natsTest(
  'a three-node cluster loses a node mid-stream: the bridge reconnects and accounts for every message',
  async () => {
    const cluster = await startNatsCluster(3);
    const [first, second, third] = cluster as [NatsServer, NatsServer, NatsServer];
    // A publishes through the first node (then the second); B listens on the third.
    const busA = createBus(socketPath('a'), {
      onError: () => {},
      nats: {
        servers: [first.url, second.url],
        export: ['ticks'],
        reconnectTimeWait: 200,
        reconnectBufferBytes: 256,
      },
    });
    const busB = createBus(socketPath('b'), {
      onError: () => {},
      nats: { servers: third.url, import: ['ticks'] },
    });
    try {
      await Promise.all([busA.nats!.ready, busB.nats!.ready]);
      const publisher = await busA.connect();
      const listener = await busB.connect();
      const ticks = listener.subscribe<number>('ticks');
      await listener.flush();
      // Routes between nodes form after the servers answer clients: wait for interest to cross.
      let warmUps = 0;
      await until(async () => {
        warmUps++;
        await publisher.publish('ticks', -1);
        await sleep(20);
        return ticks.pending > 0;
      }, 'the cluster to route A’s ticks to B');
      while (ticks.pending > 0) await ticks.next();

      const sent = 3000;
      const received: number[] = [];
      const receiving = (async () => {
        for await (const { value } of ticks) {
          if (value < 0) continue;
          received.push(value);
          if (value === sent - 1) return;
        }
      })();
      // Should an assertion below fail, the subscription ends with the bus: not unhandled.
      receiving.catch(() => {});
      for (let i = 0; i < sent; i++) {
        if (i === sent / 3) {
          const node = first.url.endsWith(busA.nats!.stats.server) ? first : second;
          const reconnects = busA.nats!.stats.reconnects;
          await node.kill();
          // A may be on another node again within milliseconds: either state will do.
          await until(
            () => !busA.nats!.stats.connected || busA.nats!.stats.reconnects > reconnects,
            'A to see its node gone',
          );
        }
        await publisher.publish('ticks', i);
        // Paced, but for a burst while A is reconnecting: more than its buffer holds.
        if (i % 10 === 0 && (i < sent / 3 || i > sent / 3 + 300)) await sleep(2);
      }
      await Promise.race([
        receiving,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('the last tick never came')), 10_000),
        ),
      ]);
      const stats = busA.nats!.stats;
      assert.ok(stats.reconnects >= 1, 'A reconnected to another node');
      assert.ok(stats.connected, 'and is connected again');
      assert.is(stats.exported + stats.dropped, sent + warmUps, 'every tick was sent or counted');
      const lost = sent - received.length;
      assert.ok(lost >= stats.dropped, 'what B missed includes everything A dropped');
      assert.equal(
        received,
        [...received].sort((x, y) => x - y),
        'in order',
      );
      assert.is(received.at(-1), sent - 1, 'the stream goes on after the failover');
      console.log(
        `  cluster failover: sent ${sent}, received ${received.length}, dropped by the bridge ` +
          `${stats.dropped} (reconnect buffer ${stats.reconnectBufferBytes} B), lost in the ` +
          `dead node ${lost - stats.dropped}`,
      );
    } finally {
      await Promise.all([busA[Symbol.asyncDispose](), busB[Symbol.asyncDispose]()]);
      await Promise.all(cluster.map((s) => s.kill()));
    }
  },
);

natsTest(
  'a plain NATS client publishes to and requests from vring clients (msgpack payloads)',
  async () => {
    const server = await startNatsServer();
    const host = await startHost(server.url, 'svc.>,events.>', 'svc.>,events.>');
    let nc: NatsConnection | undefined;
    let client: BusClient | undefined;
    try {
      client = await connectBus(pathOf(host));
      const events = client.subscribe<{ n: number }>('events.>');
      client.serve<string, string>('svc.upper', (s) => s.toUpperCase());
      client.serve('svc.broken', () => {
        throw Object.assign(new Error('broken on purpose'), { code: 'E_BROKEN' });
      });
      await client.flush();
      nc = await connect({ servers: server.url });
      // Published on NATS, decoded by the bridge, delivered on the bus.
      await until(async () => {
        nc!.publish('events.login', msgpack.pack({ n: 1 }));
        await nc!.flush();
        await sleep(20);
        return events.pending > 0;
      }, 'the bridge to deliver NATS messages');
      const first = await events.next();
      assert.equal(first.value, { topic: 'events.login', value: { n: 1 } });
      const natsHeaders = headers();
      natsHeaders.set('Trace-Id', 'from-nats');
      nc.publish('events.login', msgpack.pack({ n: 0 }), { headers: natsHeaders });
      const headed = await events.next();
      assert.equal(headed.value?.headers, { 'Trace-Id': 'from-nats' });
      // Not msgpack: counted, not delivered, and the bridge carries on.
      nc.publish('events.login', new TextEncoder().encode('{"n":2}'));
      nc.publish('events.login', msgpack.pack({ n: 3 }));
      while (events.pending > 0) await events.next();
      const next = await events.next();
      assert.equal(next.value?.value, { n: 3 });

      const reply = await nc.request('svc.upper', msgpack.pack('hello'), { timeout: 5000 });
      assert.is(msgpack.unpack(reply.data), 'HELLO');
      assert.ok(reply.headers?.get(ORIGIN_HEADER), 'the reply names the bridge that answered');
      const failed = await nc.request('svc.broken', msgpack.pack(null), { timeout: 5000 });
      assert.is(failed.headers?.get(ERROR_HEADER), 'E_BROKEN');
      assert.equal(msgpack.unpack(failed.data), { code: 'E_BROKEN', message: 'broken on purpose' });
      // The bus's events reach NATS with the origin header.
      const seen = nc.subscribe('events.>', { max: 1 });
      await nc.flush();
      await client.publish('events.logout', { n: 4 });
      for await (const m of seen) {
        assert.equal(msgpack.unpack(m.data), { n: 4 });
        assert.ok(m.headers?.get(ORIGIN_HEADER));
      }
      const report = await client.busReport();
      assert.is(report.nats!.rejected, 1, 'the JSON message');
    } finally {
      client?.close();
      await nc?.close();
      host.kill();
      await server.kill();
    }
  },
);

test.run();
