// DPDK across a container boundary, without Docker: testpmd with a net_vhost port on the
// host (root), and a VirtioUser (`vring ping`) in its own PID, mount, network, IPC and UTS
// namespaces as nobody, sharing only the bind-mounted vhost-user socket. Every frame must
// come back through testpmd's io forwarding. Without testpmd, root or the namespaces the
// file says why and runs nothing that could not fail.
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  containerUnavailable,
  scriptCommand,
  spawnInContainer,
  traversableTempDir,
} from '../../../test-support/index.js';
import { requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';

const CONTAINER_SOCKET = '/run/vring/port.sock';
const FRAMES = 2000;

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
}

test.run();
