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
        scriptCommand(new URL('./fixtures/container-dpdk-virtio-user.ts', import.meta.url), [
          CONTAINER_SOCKET,
          String(DPDK_FRAMES),
        ]),
        { name: 'container-dpdk-virtio-user', stderr: 'capture', killAfterMs: 60_000 },
      );
      const code = await app.exited;
      const report = `app:\n${app.output()}\necho:\n${echo.output()}`;
      assert.is(code, 0, `testpmd in the container stops cleanly\n${report}`);
      const counts = app
        .output()
        .match(/sent (\d+), echoed (\d+), identical (\d+), dropped by testpmd (\d+)/);
      assert.ok(counts, report);
      assert.is(Number(counts![1]), DPDK_FRAMES);
      assert.is(Number(counts![4]), 0, `testpmd dropped nothing\n${report}`);
      assert.is(Number(counts![2]), DPDK_FRAMES, `every frame came back\n${report}`);
      assert.is(Number(counts![3]), DPDK_FRAMES, `every frame came back unchanged\n${report}`);
      echo.kill('SIGINT');
      assert.is(await echo.exited, 0, report);
      const port = echo
        .output()
        .match(
          /port 1 \([^)]*\): received (\d+) frames \d+ B, sent (\d+) frames \d+ B, dropped (\d+)/,
        );
      assert.ok(port, `the echo printed its port counters\n${report}`);
      assert.equal(
        port!.slice(1).map(Number),
        [DPDK_FRAMES, DPDK_FRAMES, 0],
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
