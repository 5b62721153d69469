// DPDK across a container boundary, without Docker. The app runs in its own PID, mount,
// network, IPC and UTS namespaces as nobody, sharing only the bind-mounted vhost-user socket
// with the host (root), in both roles:
// - a VirtioUser (`vring ping`) inside against testpmd with a net_vhost port outside: every
//   frame must come back through testpmd's io forwarding;
// - DPDK's virtio_user (testpmd, unprivileged, without hugepages) inside against `vring echo`
//   outside: every frame testpmd sends must come back byte for byte.
// Without testpmd, root or the namespaces the file says why and runs nothing that could not
// fail.
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  containerUnavailable,
  OTHER_UID,
  scriptCommand,
  spawnInContainer,
  spawnScript,
  traversableTempDir,
} from '../../../test-support/index.js';
import { assertEveryFrameEchoed, parseCaptureReport } from './fixtures/capture-report.js';
import { stopEcho } from './fixtures/echo-counters.js';
import { requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';

const CONTAINER_SOCKET = '/run/vring/port.sock';
const FRAMES = 2000;
/**
 * Frames DPDK's virtio_user sends. testpmd reads them from the file far faster than any
 * back-end returns them, and drops what its transmit ring cannot take: with queue_size=1024
 * and two descriptors a frame, 512 fit whatever the echo's pace.
 */
const DPDK_FRAMES = 500;

const unavailable = containerUnavailable();
if (unavailable) {
  console.log(`vhost-user.container.dpdk: skipped: ${unavailable}`);
  test(`SKIP: ${unavailable}`, () => {
    assert.type(unavailable, 'string');
  });
} else if (requireTestpmd()) {
  test('a VirtioUser in its own namespaces as nobody pings DPDK testpmd on the host through the bind-mounted socket', async () => {
    const hostSocket = join(traversableTempDir(), 'port.sock');
    const testpmd = Testpmd.start(hostSocket, { timeoutSeconds: 90 });
    try {
      await testpmd.waitForSocket();
      // testpmd leaves the mode to its umask; the container's user needs write permission.
      chmodSync(hostSocket, 0o666);
      const app = spawnInContainer(
        hostSocket,
        CONTAINER_SOCKET,
        scriptCommand(new URL('./fixtures/container-ping.ts', import.meta.url), [
          CONTAINER_SOCKET,
          String(FRAMES),
        ]),
        { name: 'container-ping', stderr: 'capture', killAfterMs: 60_000 },
      );
      const code = await app.exited;
      assert.is(code, 0, `ping failed:\n${app.output()}\ntestpmd:\n${testpmd.output}`);
      assert.match(app.output(), new RegExp(`sent ${FRAMES}\\b.*received ${FRAMES}\\b`));
    } finally {
      await testpmd.stop();
    }
  });

  test("DPDK's virtio_user in its own namespaces as nobody sends frames through vring echo on the host and gets each back intact", async () => {
    const hostSocket = join(traversableTempDir(), 'echo.sock');
    // The echo admits the container's user: by the socket file's mode and by its uid.
    const echo = spawnScript(
      new URL('./fixtures/echo-process.ts', import.meta.url),
      [hostSocket, '--allow-uid', String(OTHER_UID)],
      { stderr: 'capture', name: 'vring echo', killAfterMs: 60_000 },
    );
    try {
      await echo.waitFor(/listening on/);
      const app = spawnInContainer(
        hostSocket,
        CONTAINER_SOCKET,
        scriptCommand(new URL('./fixtures/dpdk-virtio-user-capture.ts', import.meta.url), [
          CONTAINER_SOCKET,
          String(DPDK_FRAMES),
        ]),
        { name: 'dpdk-virtio-user-capture', stderr: 'capture', killAfterMs: 60_000 },
      );
      const code = await app.exited;
      assert.is(code, 0, `testpmd in the container stops cleanly\n${app.output()}`);
      const context = `app:\n${app.output()}\necho:\n${echo.output()}`;
      assertEveryFrameEchoed(parseCaptureReport(app.output()), DPDK_FRAMES, context);
      assert.equal(
        await stopEcho(echo),
        { received: DPDK_FRAMES, sent: DPDK_FRAMES, dropped: 0 },
        'the echo received and returned exactly those frames, dropping none',
      );
      assert.not.match(echo.output(), /refused/, 'the container was admitted');
    } finally {
      echo.kill();
      await echo.exited;
    }
  });
}

test.run();
