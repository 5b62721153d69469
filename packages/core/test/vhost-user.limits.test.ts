// Limits per peer of a VhostUserBackend, with real front-ends in child processes: a memory
// table over maxPeerMemory, and connections over maxConnections and maxConnectionsPerUid. The
// peer over a limit learns which one (ERR_VRING_LIMIT_EXCEEDED with the limit as `reason`),
// is disconnected, reported and counted; the peers within the limits keep working.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Child,
  OTHER_UID,
  otherUserUnavailable,
  socketPath,
  spawnScript,
  spawnScriptAsOtherUser,
  traversableTempDir,
  until,
} from '../../../test-support/index.js';
import { echoPort } from '../src/cli/echo.js';
import type { VringError } from '../src/errors.js';
import type { PeerRefusal } from '../src/peer-access.js';
import { DEFAULT_PEER_LIMITS } from '../src/peer-limits.js';
import { SharedRegion } from '../src/shared-region.js';
import { VhostUserBackend, type VhostUserBackendOptions } from '../src/vhost-user/backend.js';
import { VHOST_USER_F_PROTOCOL_FEATURES, VIRTIO_F_VERSION_1 } from '../src/vhost-user/features.js';
import { VhostUserRequest as R } from '../src/vhost-user/message-layout.js';
import { noticeError } from '../src/vhost-user/refusal-notice.js';
import { RawVhostUserClient } from './fixtures/vhost-user-raw-client.js';
import { throwsVring } from './fixtures/vring-assert.js';

const FIXTURE = new URL('./fixtures/held-frontend.ts', import.meta.url);

interface Outcome {
  ok: boolean;
  echoed?: boolean;
  code?: string;
  reason?: string;
  message?: string;
}

function startBackend(path: string, options: VhostUserBackendOptions) {
  const refusals: PeerRefusal[] = [];
  const errors: VringError[] = [];
  const backend = new VhostUserBackend(path, {
    onRefused: (r) => refusals.push(r),
    onError: (e) => errors.push(e),
    onPort: (port) => void echoPort(port),
    ...options,
  });
  return { backend, refusals, errors };
}

const held: Child[] = [];

/** A front-end in its own process (as nobody with `otherUser`); resolves with its outcome. */
async function attach(
  path: string,
  options: object = {},
  otherUser = false,
): Promise<{ child: Child; outcome: Outcome }> {
  const spawn = otherUser ? spawnScriptAsOtherUser : spawnScript;
  const child = spawn(FIXTURE, [path, JSON.stringify(options)], {
    stdin: 'pipe',
    // A backstop only (after.each kills them): a tighter one let a held front-end go early
    // on a loaded machine, which freed its slot for one that should have been refused.
    killAfterMs: 120_000,
  });
  held.push(child);
  return { child, outcome: JSON.parse(await child.line()) as Outcome };
}

/** Lets a held front-end go (it closes when its stdin ends) and waits for it to exit. */
async function release(child: Child): Promise<void> {
  child.process.stdin!.end();
  assert.is(await child.exited, 0, child.output());
}

test.after.each(async () => {
  for (const child of held.splice(0)) {
    child.kill();
    await child.exited;
  }
});

test('the defaults are stated, and a limit must be a positive integer or Infinity', () => {
  assert.equal(DEFAULT_PEER_LIMITS, {
    maxPeerMemory: 4 * 1024 ** 3,
    maxConnections: 256,
    maxConnectionsPerUid: 64,
  });
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    for (const name of ['maxPeerMemory', 'maxConnections', 'maxConnectionsPerUid']) {
      throwsVring(
        () => new VhostUserBackend(socketPath(), { [name]: bad }),
        'ERR_VRING_INVALID_ARGUMENT',
        `${name} ${bad}`,
      );
    }
  }
  const unlimited = new VhostUserBackend(socketPath(), {
    maxPeerMemory: Number.POSITIVE_INFINITY,
    maxConnections: Number.POSITIVE_INFINITY,
  });
  unlimited.close();
});

test('a front-end whose memory table is over maxPeerMemory is told so and disconnected; a smaller one is served', async () => {
  const path = socketPath('memory');
  // 256 descriptors of 2 KiB per ring come to about 1 MiB; 4096 to about 16 MiB.
  const { backend, errors } = startBackend(path, { maxPeerMemory: 4 * 1024 * 1024 });
  try {
    const big = await attach(path, { queueSize: 4096 });
    assert.equal(
      [big.outcome.ok, big.outcome.code, big.outcome.reason],
      [false, 'ERR_VRING_LIMIT_EXCEEDED', 'memory-limit'],
      JSON.stringify(big.outcome),
    );
    assert.match(big.outcome.message!, /over the back-end's memory-limit/);
    assert.is(await big.child.exited, 0);
    await until(() => backend.limitedPeers === 1, 'the over-limit front-end to be counted');
    assert.is(errors.length, 1);
    assert.is(errors[0]!.code, 'ERR_VRING_LIMIT_EXCEEDED');
    assert.is(errors[0]!.reason, 'memory-limit');
    assert.match(errors[0]!.message, /over the back-end's maxPeerMemory of 4194304 bytes/);

    const small = await attach(path, { queueSize: 256 });
    assert.equal(small.outcome, { ok: true, echoed: true });
    assert.is(backend.ports.size, 1);
    await release(small.child);
    assert.is(backend.limitedPeers, 1);
  } finally {
    backend.close();
  }
});

test('the memory limit is checked before any region is mapped: a table that could not even be mapped fails on the limit, and the front-end reads which', async () => {
  const path = socketPath('order');
  const { backend, errors } = startBackend(path, { maxPeerMemory: 64 * 1024 });
  const client = new RawVhostUserClient(path);
  const memory = SharedRegion.create(0x1000, { name: 'small' });
  try {
    await client.request(R.SET_OWNER, undefined);
    await client.request(R.GET_FEATURES, undefined);
    await client.request(R.SET_FEATURES, VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES);
    // 1 MiB of a 4 KiB file: mapping it would fail (bad-region), so only the limit can answer.
    const region = { guestPhysAddr: 0n, userspaceAddr: 0n, mmapOffset: 0n, fd: memory.fd };
    await client.request(R.SET_MEM_TABLE, { regions: [{ ...region, memorySize: 0x100000n }] });
    const notice = noticeError((await client.socket.receive()).data, 'back-end');
    assert.is(notice?.code, 'ERR_VRING_LIMIT_EXCEEDED');
    assert.is(notice?.reason, 'memory-limit');
    await until(() => errors.length === 1, 'the port to close');
    assert.is(errors[0]!.reason, 'memory-limit');
    assert.match(errors[0]!.message, /1 regions of 1048576 bytes in all/);
    assert.is(backend.limitedPeers, 1);
  } finally {
    client.close();
    memory.close();
    backend.close();
  }
});

test('over maxConnections a front-end is turned away on arrival, and a slot freed by a departure is taken again', async () => {
  const path = socketPath('connections');
  const { backend, refusals } = startBackend(path, { maxConnections: 2 });
  try {
    const first = await attach(path);
    const second = await attach(path);
    assert.equal([first.outcome.ok, second.outcome.ok], [true, true]);
    const third = await attach(path);
    assert.equal(
      [third.outcome.code, third.outcome.reason],
      ['ERR_VRING_LIMIT_EXCEEDED', 'connection-limit'],
      JSON.stringify(third.outcome),
    );
    assert.is(backend.limitedPeers, 1);
    assert.is(backend.refusedPeers, 0, 'a limit is not a refusal on credentials');
    assert.is(refusals.length, 1);
    assert.is(refusals[0]!.reason, 'connection-limit');
    assert.is(refusals[0]!.peer?.pid, third.child.process.pid);
    assert.is(backend.ports.size, 2, 'the two within the limit are still attached');

    await release(first.child);
    await until(() => backend.ports.size === 1, 'the departed front-end to be gone');
    const fourth = await attach(path);
    assert.equal(fourth.outcome, { ok: true, echoed: true }, 'its slot is free again');
    assert.is(backend.limitedPeers, 1);
  } finally {
    backend.close();
  }
});

const unavailable = otherUserUnavailable();
if (unavailable) {
  console.log(`vhost-user.limits: per-uid limit with a second uid skipped: ${unavailable}`);
  test(`SKIP: maxConnectionsPerUid with a second uid: ${unavailable}`, () => {
    assert.type(unavailable, 'string');
  });
} else {
  test('over maxConnectionsPerUid one uid is turned away while another uid still gets in', async () => {
    const path = `${traversableTempDir()}/per-uid.sock`;
    const { backend, refusals } = startBackend(path, {
      maxConnectionsPerUid: 1,
      socketMode: 0o666,
      allowUids: [OTHER_UID],
    });
    try {
      const mine = await attach(path);
      assert.equal(mine.outcome, { ok: true, echoed: true });
      const again = await attach(path);
      assert.equal(
        [again.outcome.code, again.outcome.reason],
        ['ERR_VRING_LIMIT_EXCEEDED', 'uid-connection-limit'],
        JSON.stringify(again.outcome),
      );
      assert.is(refusals[0]?.reason, 'uid-connection-limit');
      assert.is(refusals[0]?.peer?.uid, process.getuid!());
      const theirs = await attach(path, {}, true);
      assert.equal(theirs.outcome, { ok: true, echoed: true }, 'another uid has its own slot');
      assert.is(backend.ports.size, 2);
      assert.is(backend.limitedPeers, 1);
    } finally {
      backend.close();
    }
  });
}

test.run();
