// Who may attach to a bus, with two real uids: the bus runs here (root), a client runs as
// nobody (setpriv). The socket file is 0600 by default, so nobody cannot even connect; with
// a wider mode it connects and its credentials are refused, unless a uid, a gid or a
// callback admits it. Without root or setpriv the file registers no test and says why.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerRefusal } from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  OTHER_GID,
  OTHER_UID,
  otherUserUnavailable,
  rejection,
  spawnScriptAsOtherUser,
  traversableTempDir,
  until,
} from '../../../test-support/index.js';
import { type Bus, type BusOptions, connectBus, createBus } from '../src/index.js';

interface ClientResult {
  ok: boolean;
  code?: string;
  reason?: string;
  message?: string;
  reply?: { uid: number; servedBy: number };
}

let dir = '';
let serial = 0;

/** A bus in the shared directory, serving `access.echo` and subscribed to `access.hello`. */
async function startBus(options: BusOptions = {}) {
  const path = join(dir, `bus-${++serial}.sock`);
  const refusals: PeerRefusal[] = [];
  const bus = createBus(path, { onRefused: (r) => refusals.push(r), ...options });
  const host = await bus.connect();
  host.serve('access.echo', (request: { uid: number }) => ({
    uid: request.uid,
    servedBy: process.getuid!(),
  }));
  const hello = host.subscribe<{ uid: number; pid: number }>('access.hello');
  await host.flush();
  return { bus, path, refusals, hello, host };
}

/** Runs the client fixture as nobody against `path`; its pid and its one JSON line. */
async function clientAsNobody(path: string, options: object = {}) {
  const child = spawnScriptAsOtherUser(
    new URL('./fixtures/bus-access-client.ts', import.meta.url),
    [path, JSON.stringify(options)],
    { killAfterMs: 30_000 },
  );
  const result = JSON.parse(await child.line()) as ClientResult;
  assert.is(await child.exited, 0, `the client exited cleanly:\n${child.output()}`);
  return { pid: child.process.pid!, result };
}

async function closeBus(bus: Bus): Promise<void> {
  await bus[Symbol.asyncDispose]();
}

function assertAdmitted(result: ClientResult): void {
  assert.ok(result.ok, `the client was admitted: ${JSON.stringify(result)}`);
  assert.equal(result.reply, { uid: OTHER_UID, servedBy: 0 }, 'the RPC went both ways');
}

const unavailable = otherUserUnavailable();
if (unavailable) {
  console.log(`bus.access-control: skipped: ${unavailable}`);
} else {
  test.before(() => {
    dir = traversableTempDir();
  });

  test('the socket file is 0600 by default: another uid cannot even connect (ERR_VRING_PERMISSION)', async () => {
    const { bus, path, refusals } = await startBus();
    try {
      assert.is(statSync(path).mode & 0o777, 0o600);
      const { result } = await clientAsNobody(path);
      assert.is(result.ok, false);
      assert.is(result.code, 'ERR_VRING_PERMISSION', JSON.stringify(result));
      // The kernel refused it: the bus never saw a connection.
      assert.is(bus.stats.refused, 0);
      assert.is(refusals.length, 0);
    } finally {
      await closeBus(bus);
    }
  });

  test('socketMode widens the file; a peer of another uid is then refused on its credentials, counted and reported', async () => {
    const { bus, path, refusals, hello } = await startBus({ socketMode: 0o666 });
    try {
      assert.is(statSync(path).mode & 0o777, 0o666);
      const { pid, result } = await clientAsNobody(path);
      assert.is(result.code, 'ERR_VRING_PEER_REFUSED', JSON.stringify(result));
      assert.is(result.reason, 'refused-by-peer');
      assert.is(bus.stats.refused, 1);
      assert.is(bus.stats.clients, 1, 'only the in-process host is attached');
      assert.is(refusals.length, 1);
      assert.is(refusals[0]!.path, path);
      assert.is(refusals[0]!.reason, 'not-allowed');
      assert.is(refusals[0]!.peer?.uid, OTHER_UID);
      assert.is(refusals[0]!.peer?.gid, OTHER_GID);
      assert.is(refusals[0]!.peer?.pid, pid, "the refusal names the client's pid");
      hello.unsubscribe();
    } finally {
      await closeBus(bus);
    }
  });

  test('allowUids admits the other uid: RPC and publish work across the two users', async () => {
    const { bus, path, refusals, hello } = await startBus({
      socketMode: 0o666,
      allowUids: [OTHER_UID],
    });
    try {
      const { pid, result } = await clientAsNobody(path);
      assertAdmitted(result);
      const first = await hello[Symbol.asyncIterator]().next();
      assert.equal(first.value?.value, { uid: OTHER_UID, pid });
      assert.is(bus.stats.refused, 0);
      assert.is(refusals.length, 0);
    } finally {
      await closeBus(bus);
    }
  });

  test("allowGids admits a peer by its group; a group that is not the peer's does not", async () => {
    const admitted = await startBus({ socketMode: 0o666, allowGids: [OTHER_GID] });
    try {
      assertAdmitted((await clientAsNobody(admitted.path)).result);
      assert.is(admitted.bus.stats.refused, 0);
    } finally {
      await closeBus(admitted.bus);
    }
    const other = await startBus({ socketMode: 0o666, allowGids: [4242] });
    try {
      const { result } = await clientAsNobody(other.path);
      assert.is(result.code, 'ERR_VRING_PEER_REFUSED', JSON.stringify(result));
      assert.is(other.bus.stats.refused, 1);
    } finally {
      await closeBus(other.bus);
    }
  });

  test('authorize decides alone, sees the peer before it is admitted, and a throwing one refuses', async () => {
    const seen: number[] = [];
    const admitted = await startBus({
      socketMode: 0o666,
      authorize: (peer) => {
        seen.push(peer.pid);
        return peer.uid === OTHER_UID && peer.groups.length <= 1;
      },
    });
    try {
      const { pid, result } = await clientAsNobody(admitted.path);
      assertAdmitted(result);
      assert.equal(seen, [pid], 'called once, with the connecting process');
    } finally {
      await closeBus(admitted.bus);
    }
    const throwing = await startBus({
      socketMode: 0o666,
      authorize: () => {
        throw new Error('policy store unreachable');
      },
    });
    try {
      const { result } = await clientAsNobody(throwing.path);
      assert.is(result.code, 'ERR_VRING_PEER_REFUSED', JSON.stringify(result));
      assert.is(throwing.refusals[0]?.reason, 'authorize-threw');
    } finally {
      await closeBus(throwing.bus);
    }
  });

  test("a client's expectPeerUid accepts the bus's uid and refuses any other before sending", async () => {
    const { bus, path } = await startBus({ socketMode: 0o666, allowUids: [OTHER_UID] });
    try {
      assertAdmitted((await clientAsNobody(path, { expectPeerUid: 0 })).result);
      const { result } = await clientAsNobody(path, { expectPeerUid: 4242 });
      assert.is(result.code, 'ERR_VRING_PEER_REFUSED', JSON.stringify(result));
      assert.is(result.reason, 'peer-not-allowed');
      // Also from this process: refused on connect, nothing attached.
      const error = await rejection(connectBus(path, { expectPeerUid: [7, 8] }));
      assert.is(error.code, 'ERR_VRING_PEER_REFUSED');
      await until(() => bus.stats.clients === 1, 'only the host is attached');
    } finally {
      await closeBus(bus);
    }
  });
}

test('bad access options fail createBus with ERR_VRING_INVALID_ARGUMENT', () => {
  const path = join(traversableTempDir(), 'bad.sock');
  for (const options of [
    { socketMode: 0o1777 },
    { socketMode: -1 },
    { allowUids: [-1] },
    { allowGids: [1.5] },
    { allowUids: [1], authorize: () => true },
  ] as BusOptions[]) {
    try {
      createBus(path, options).close();
      assert.unreachable(`accepted ${JSON.stringify(options)}`);
    } catch (error) {
      assert.is((error as { code?: string }).code, 'ERR_VRING_INVALID_ARGUMENT');
    }
  }
  try {
    createBus('@vring-abstract-mode', { socketMode: 0o660 }).close();
    assert.unreachable('a mode for an abstract name was accepted');
  } catch (error) {
    assert.is((error as { code?: string }).code, 'ERR_VRING_INVALID_ARGUMENT');
  }
});

test.run();
