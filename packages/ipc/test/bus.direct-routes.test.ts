// Direct routes: a requester and the only responder of a name, both taking part, talk over a
// queue pair of their own once the bus has introduced them; the bus remains the fallback.
// Real processes: the responder runs in a child; the bus and a requester run here.

import { once } from 'node:events';
import { existsSync, readdirSync, utimesSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Child,
  rejection,
  socketPath,
  spawnScript,
  until,
} from '../../../test-support/index.js';
import { type Bus, type BusClient, connectBus, createBus } from '../src/index.js';

function spawnFixture(name: string, args: string[]): Child {
  return spawnScript(new URL(`./fixtures/${name}`, import.meta.url), args, {
    killAfterMs: 60_000,
    stdin: 'pipe',
  });
}

async function startResponder(path: string): Promise<Child> {
  const responder = spawnFixture('bus-rpc-server.ts', [path]);
  assert.is(await responder.line(), 'ready');
  return responder;
}

type Echo = { value: number; pid: number };

/**
 * Calls rpc.echo until ten calls in a row reach the responder without the bus routing
 * them: the direct route is up.
 */
async function routeUp(client: BusClient, bus: Bus): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const before = bus.stats.requests;
    for (let i = 0; i < 10; i++) {
      const reply = await client.request<Echo>('rpc.echo', i);
      assert.is(reply.value, i);
    }
    if (bus.stats.requests === before) return;
  }
  assert.unreachable('the direct route never came up');
}

/** A bus here, a responder in a child, and a requester here that takes part in direct routes. */
interface Scene {
  readonly path: string;
  bus: Bus;
  readonly responder: Child;
  readonly client: BusClient;
  /** More children, killed at the end. */
  readonly others: Child[];
}

/** Runs `body` in a new {@link Scene} and tears it down after. */
async function inScene(body: (scene: Scene) => Promise<void>): Promise<void> {
  const path = socketPath('direct');
  const bus = createBus(path);
  const responder = await startResponder(path);
  const client = await connectBus(path, { retryInitialMs: 20 });
  const scene: Scene = { path, bus, responder, client, others: [] };
  try {
    await body(scene);
  } finally {
    client.close();
    for (const child of [responder, ...scene.others]) child.kill();
    scene.bus.close();
  }
}

test('after the first request, a sole responder is reached without the bus', () =>
  inScene(async ({ bus, responder, client }) => {
    await routeUp(client, bus);
    const before = bus.stats.requests;
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => client.request<Echo>('rpc.echo', i)),
    );
    assert.equal(
      replies.map((r) => r.value),
      Array.from({ length: 200 }, (_, i) => i),
    );
    assert.ok(replies.every((r) => r.pid === responder.process.pid));
    assert.is(bus.stats.requests, before, 'the bus routed none of them');
  }));

test('on a direct route, errors, timeouts, aborts and streams behave as through the bus', () =>
  inScene(async ({ bus, client }) => {
    for (const name of ['rpc.fail', 'rpc.never', 'rpc.running', 'rpc.count']) {
      // Each name gets its route from the bus on its first request.
      await client.request(name, 1, { timeout: 200 }).catch(() => {});
    }
    await routeUp(client, bus);
    const before = bus.stats.requests;
    const failed = await rejection(client.request('rpc.fail', 7));
    assert.is(failed.code, 'E_RPC_FAIL');
    assert.is(failed.message, 'failed 7');
    const late = await rejection(client.request('rpc.never', null, { timeout: 50 }));
    assert.is(late.code, 'ERR_VRING_TIMEOUT');
    const controller = new AbortController();
    const aborted = client.request('rpc.never', null, { signal: controller.signal });
    controller.abort();
    assert.is((await rejection(aborted)).code, 'ERR_VRING_ABORTED');
    // The responder was told: every rpc.never handler has been cancelled.
    await until(async () => (await client.request<number>('rpc.running', null)) === 0);
    const counted: number[] = [];
    await new Promise<void>((resolve, reject) =>
      client.requestStream<number>('rpc.count', null).subscribe({
        next: (n) => counted.push(n),
        error: reject,
        complete: resolve,
      }),
    );
    assert.equal(counted, [1, 2, 3]);
    assert.is(bus.stats.requests, before, 'all of it went straight to the responder');
    const unknown = await rejection(client.request('rpc.nobody', null));
    assert.is(unknown.code, 'ERR_VRING_NO_RESPONDERS', 'a name nobody serves, through the bus');
  }));

test('a responder killed mid-request fails it with ERR_VRING_PEER_DISCONNECTED; the bus takes over', () =>
  inScene(async ({ path, bus, responder, client, others }) => {
    await client.request('rpc.never', null, { timeout: 100 }).catch(() => {});
    await routeUp(client, bus);
    const pending = client.request('rpc.never', null);
    await until(async () => (await client.request<number>('rpc.running', null)) === 1);
    responder.kill('SIGKILL');
    assert.is((await rejection(pending)).code, 'ERR_VRING_PEER_DISCONNECTED');
    // Once the bus has seen it go, nobody serves the name.
    await until(async () => {
      const error = await rejection(client.request('rpc.echo', 1));
      return error.code === 'ERR_VRING_NO_RESPONDERS';
    });
    const second = await startResponder(path);
    others.push(second);
    const reply = await client.request<Echo>('rpc.echo', 2);
    assert.equal(reply, { value: 2, pid: second.process.pid });
    await routeUp(client, bus);
  }));

test('the route socket of a killed client is removed by the next client there; a live one stays', () =>
  inScene(async ({ path, responder }) => {
    const dir = dirname(path);
    const own = readdirSync(dir).filter((f) =>
      f.startsWith(`.vring-route-${responder.process.pid}-`),
    );
    assert.is(own.length, 1, 'the responder listens for requesters next to the bus');
    const left = join(dir, own[0]!);
    responder.kill('SIGKILL');
    await responder.exited;
    // A listener whose pid means nothing here (a client in another pid namespace, say).
    const decoy = join(dir, `.vring-route-${2 ** 22 + 1}-1-0badcafe`);
    const live = createServer().listen(decoy);
    await once(live, 'listening');
    try {
      // Both older than the grace given to a client between bind and listen.
      const old = new Date(Date.now() - 60_000);
      for (const file of [left, decoy]) utimesSync(file, old, old);
      const next = spawnFixture('bus-idle-client.ts', [path]);
      assert.is(await next.exited, 0);
      assert.not.ok(existsSync(left), 'nobody listened there: removed');
      assert.ok(existsSync(decoy), 'somebody listens there: kept');
    } finally {
      live.close();
    }
  }));

test('a responder that drains answers the requests out on its direct routes first', () =>
  inScene(async ({ bus, responder, client }) => {
    await routeUp(client, bus);
    // Routes go by name: the bus routes the first rpc.slow, and points the name here.
    await client.request('rpc.slow', 0);
    assert.is(await responder.line(), 'slow');
    const before = bus.stats.requests;
    const pending = client.request<Echo>('rpc.slow', 5);
    assert.is(await responder.line(), 'slow');
    responder.process.stdin!.write('drain\n');
    assert.equal(await pending, { value: 5, pid: responder.process.pid });
    assert.is(await responder.line(), 'drained');
    assert.is(await responder.exited, 0);
    assert.is(bus.stats.requests, before, 'the request went over the route');
  }));

test("a requester that drains while its route's responder dies: drain resolves, every request settles", () =>
  inScene(async ({ path, bus, responder, client, others }) => {
    // Each name gets its route from the bus on its first request.
    await client.request('rpc.never', null, { timeout: 100 }).catch(() => {});
    await client.request('rpc.running', null);
    await routeUp(client, bus);
    const before = bus.stats.requests;
    const onRoute = rejection(client.request('rpc.never', null));
    await until(async () => (await client.request<number>('rpc.running', null)) === 1);
    assert.is(bus.stats.requests, before, 'the request is out on the route');
    let drained = false;
    const draining = client.drain().then(() => {
      drained = true;
    });
    // A request made while draining still gets its answer.
    assert.is((await client.request<Echo>('rpc.echo', 4)).value, 4);
    assert.not.ok(drained, 'drain waits for the request out on the route');
    // The bus takes over once the route's responder is gone: a second one serves the names.
    const second = await startResponder(path);
    others.push(second);
    responder.kill('SIGKILL');
    assert.is((await onRoute).code, 'ERR_VRING_PEER_DISCONNECTED');
    const hung = sleep(30_000, 'hung', { ref: false });
    assert.is(await Promise.race([draining, hung]), undefined, 'drain resolved');
    await client.closed;
    // Nothing of the route is left to the bus: another requester is answered by the second.
    const other = await connectBus(path);
    try {
      const reply = await until(() =>
        other.request<Echo>('rpc.echo', 5).then(
          (r) => r,
          () => undefined,
        ),
      );
      assert.equal(reply, { value: 5, pid: second.process.pid });
    } finally {
      other.close();
    }
  }));

test('a requester that dies mid-request cancels its handler; the responder serves on', () =>
  inScene(async ({ path, client, others }) => {
    const requester = spawnFixture('bus-direct-requester.ts', [path]);
    others.push(requester);
    assert.is(await requester.line(), 'routed');
    await until(async () => (await client.request<number>('rpc.running', null)) === 1);
    requester.kill('SIGKILL');
    await until(async () => (await client.request<number>('rpc.running', null)) === 0);
    const reply = await client.request<Echo>('rpc.echo', 3);
    assert.is(reply.value, 3);
  }));

test('a bus that restarts does not interrupt a direct route; the new bus makes its own', () =>
  inScene(async (scene) => {
    const { path, responder: first, client, others } = scene;
    await routeUp(client, scene.bus);
    scene.bus.close();
    await scene.bus.closed;
    await until(() => !client.connected);
    // No bus at all: the route still answers.
    for (let i = 0; i < 20; i++) assert.is((await client.request<Echo>('rpc.echo', i)).value, i);
    const bus = createBus(path);
    scene.bus = bus;
    await until(() => client.connected && bus.stats.clients === 2);
    // The old bus's route is forgotten: the new bus routes a request (once the responder has
    // served the name to it again), then offers its own.
    await until(async () => {
      const before = bus.stats.requests;
      const answered = await client.request('rpc.echo', 0).then(
        () => true,
        () => false,
      );
      return answered && bus.stats.requests > before;
    });
    await routeUp(client, bus);
    assert.ok(bus.stats.requests > 0, 'the new bus routed the first requests');
    const reply = await client.request<Echo>('rpc.echo', 3);
    assert.equal(reply, { value: 3, pid: first.process.pid });
    // That route is the new bus's to take back: a second responder gets its share.
    const second = await startResponder(path);
    others.push(second);
    const pids = new Set<number>();
    for (let i = 0; i < 20; i++) pids.add((await client.request<Echo>('rpc.echo', i)).pid);
    assert.equal(pids, new Set([first.process.pid, second.process.pid]));
  }));

test('a second responder takes the route back: requests are spread through the bus again', () =>
  inScene(async ({ path, bus, responder: first, client, others }) => {
    await routeUp(client, bus);
    const second = await startResponder(path);
    others.push(second);
    const pids = new Set<number>();
    const before = bus.stats.requests;
    for (let i = 0; i < 20; i++) pids.add((await client.request<Echo>('rpc.echo', i)).pid);
    assert.ok(bus.stats.requests > before, 'the bus routes them again');
    assert.equal(pids, new Set([first.process.pid, second.process.pid]));
  }));

test.run();
