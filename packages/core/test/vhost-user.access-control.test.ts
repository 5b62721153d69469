// Access control of vhost-user's listening sockets with two real uids: a VhostUserBackend
// (and a VirtioUser in server mode) here, as root, and its peer as nobody (setpriv). A
// refused peer is refused before any of its messages is read, so none of its memory is ever
// mapped here. Without root or setpriv the file registers no test and says why.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Child,
  OTHER_UID,
  otherUserUnavailable,
  rejection,
  spawnScriptAsOtherUser,
  traversableTempDir,
  until,
} from '../../../test-support/index.js';
import { echoPort } from '../src/cli/echo.js';
import type { PeerRefusal } from '../src/peer-access.js';
import { VhostUserBackend, type VhostUserBackendOptions } from '../src/vhost-user/backend.js';
import type { VhostUserPort } from '../src/vhost-user/backend-port.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';

const FIXTURE = new URL('./fixtures/access-peer.ts', import.meta.url);

let dir = '';
let serial = 0;

function nextPath(): string {
  return join(dir, `vu-${++serial}.sock`);
}

function startBackend(options: VhostUserBackendOptions = {}) {
  const path = nextPath();
  const refusals: PeerRefusal[] = [];
  const ports: VhostUserPort[] = [];
  const backend = new VhostUserBackend(path, {
    onRefused: (r) => refusals.push(r),
    onPort: (port) => {
      ports.push(port);
      void echoPort(port);
    },
    ...options,
  });
  return { backend, path, refusals, ports };
}

async function frontendAsNobody(path: string, options: object = {}) {
  const child = spawnScriptAsOtherUser(FIXTURE, ['frontend', path, JSON.stringify(options)], {
    killAfterMs: 30_000,
  });
  const result = JSON.parse(await child.line()) as {
    ok: boolean;
    echoed?: boolean;
    code?: string;
    reason?: string;
  };
  assert.is(await child.exited, 0, child.output());
  return { pid: child.process.pid!, result };
}

const unavailable = otherUserUnavailable();
if (unavailable) {
  console.log(`vhost-user.access-control: skipped: ${unavailable}`);
  // The runner fails a file without tests: this one states why nothing else ran.
  test(`SKIP: ${unavailable}`, () => {
    assert.type(unavailable, 'string');
  });
} else {
  test.before(() => {
    dir = traversableTempDir();
  });

  test('VhostUserBackend: 0600 by default, so another uid cannot connect at all', async () => {
    const { backend, path, refusals } = startBackend();
    try {
      assert.is(statSync(path).mode & 0o777, 0o600);
      const { result } = await frontendAsNobody(path);
      assert.is(result.code, 'ERR_VRING_PERMISSION', JSON.stringify(result));
      assert.is(backend.refusedPeers, 0);
      assert.is(refusals.length, 0);
    } finally {
      backend.close();
    }
  });

  test('VhostUserBackend: a refused front-end gets ERR_VRING_PEER_REFUSED and never gets a port (so no memory mapped)', async () => {
    const { backend, path, refusals, ports } = startBackend({ socketMode: 0o660 });
    try {
      assert.is(statSync(path).mode & 0o777, 0o660);
      // 0660 and root's group: nobody is still shut out by the file mode...
      assert.is((await frontendAsNobody(path)).result.code, 'ERR_VRING_PERMISSION');
      backend.close();
      const open = startBackend({ socketMode: 0o666 });
      try {
        // ...and with 0666 by its credentials.
        const { pid, result } = await frontendAsNobody(open.path);
        assert.is(result.code, 'ERR_VRING_PEER_REFUSED', JSON.stringify(result));
        assert.is(result.reason, 'refused-by-peer');
        assert.is(open.backend.refusedPeers, 1);
        assert.equal(
          open.refusals.map((r) => [r.peer?.pid, r.peer?.uid, r.reason]),
          [[pid, OTHER_UID, 'not-allowed']],
        );
        // Memory is mapped only by a port's session (SET_MEM_TABLE): no port, no mapping.
        assert.is(open.ports.length, 0, 'no port was ever created');
      } finally {
        open.backend.close();
      }
      assert.is(ports.length, 0);
      assert.is(refusals.length, 0);
    } finally {
      backend.close();
    }
  });

  test('VhostUserBackend: allowUids admits the other uid, whose frames are echoed through its mapped memory', async () => {
    const { backend, path, refusals, ports } = startBackend({
      socketMode: 0o666,
      allowUids: [OTHER_UID],
    });
    try {
      const { result } = await frontendAsNobody(path, { expectPeerUid: 0 });
      assert.equal(result, { ok: true, echoed: true });
      assert.is(ports.length, 1);
      assert.is(ports[0]!.stats.framesReceived, 1, 'the frame came through its mapped memory');
      assert.is(backend.refusedPeers, 0);
      assert.is(refusals.length, 0);
    } finally {
      backend.close();
    }
  });

  test('VirtioUser expectPeerUid: a back-end of another uid is refused before the handshake', async () => {
    const { backend, path } = startBackend();
    try {
      const error = await rejection(VirtioUser.open(path, { expectPeerUid: OTHER_UID }));
      assert.is(error.code, 'ERR_VRING_PEER_REFUSED');
      assert.is(error.reason, 'peer-not-allowed');
      assert.is(backend.ports.size, 0);
    } finally {
      backend.close();
    }
  });

  test('VirtioUser in server mode: refuses a back-end of another uid, admits it when allowed', async () => {
    const refusedPath = nextPath();
    const refusals: PeerRefusal[] = [];
    const abort = new AbortController();
    const opening = VirtioUser.open(refusedPath, {
      server: true,
      socketMode: 0o666,
      signal: abort.signal,
      onRefused: (r) => refusals.push(r),
    });
    const abandoned = rejection(opening); // handled now, checked below
    let peer: Child | undefined;
    try {
      assert.is(statSync(refusedPath).mode & 0o777, 0o666);
      peer = spawnScriptAsOtherUser(FIXTURE, ['backend', refusedPath], { killAfterMs: 30_000 });
      // The back-end's port opens on connect, then ends on the refusal with its own code
      // (and the back-end retries).
      assert.equal(JSON.parse(await peer.line()), { port: 1 });
      assert.equal(JSON.parse(await peer.line()), {
        code: 'ERR_VRING_PEER_REFUSED',
        reason: 'refused-by-peer',
      });
      await until(() => refusals.length > 0, 'the refusal was reported');
      assert.is(refusals[0]!.peer?.uid, OTHER_UID);
      assert.is(refusals[0]!.peer?.pid, peer.process.pid);
    } finally {
      peer?.kill();
      abort.abort();
    }
    assert.is((await abandoned).name, 'AbortError', 'no back-end was admitted before the abort');

    const allowedPath = nextPath();
    const admitting = VirtioUser.open(allowedPath, {
      server: true,
      socketMode: 0o666,
      allowUids: [OTHER_UID],
      signal: AbortSignal.timeout(20_000),
    });
    const backendPeer = spawnScriptAsOtherUser(FIXTURE, ['backend', allowedPath], {
      killAfterMs: 30_000,
    });
    try {
      const device = await admitting;
      try {
        assert.is(device.refusedPeers, 0);
        const frame = Buffer.alloc(80, 0x33);
        await device.send(frame);
        const [echoed] = [...(await device.receive())];
        assert.equal(echoed, frame);
      } finally {
        device.close();
      }
    } finally {
      backendPeer.kill();
    }
  });
}

test.run();
