// VIRTIO_F_IN_ORDER on split rings against unmodified DPDK 22.11, both roles:
// - our VirtioUser on testpmd net_vhost, which offers IN_ORDER: it is negotiated unless the
//   VirtioUser is told not to, and 10 000 frames of mixed sizes come back intact. (DPDK's
//   split-ring device writes one used entry per chain; batched entries are covered by the
//   native unit tests.)
// - testpmd virtio_user `in_order=1` (with mergeable buffers on and off) on our backend
//   offering IN_ORDER: it is negotiated, and frames our port sends come back intact and in
//   order through testpmd's in-order receive and transmit paths.
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath } from '../../../test-support/index.js';
import { runPingSession, warmUpPing } from '../src/cli/ping-session.js';
import { VhostUserBackend } from '../src/vhost-user/backend.js';
import { BACKEND_DEFAULT_FEATURES } from '../src/vhost-user/backend-options.js';
import type { VhostUserPort } from '../src/vhost-user/backend-port.js';
import { VIRTIO_F_IN_ORDER, VIRTIO_NET_F_MRG_RXBUF } from '../src/vhost-user/features.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { echoThroughQueuePair } from './fixtures/queue-pair-echo.js';
import { DpdkTestCleanup, requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';

const cleanup = new DpdkTestCleanup();
const { opened } = cleanup;

test.after.each(() => cleanup.run());

if (requireTestpmd()) {
  for (const inOrder of [true, false]) {
    test(`VirtioUser on net_vhost with inOrder ${inOrder}: IN_ORDER ${inOrder ? '' : 'not '}negotiated, 10 000 frames intact`, async () => {
      const socket = socketPath('mq17');
      const testpmd = Testpmd.start(socket, { timeoutSeconds: 90 });
      await testpmd.waitForSocket();
      const port = await VirtioUser.open(socket, { inOrder, signal: AbortSignal.timeout(30_000) });
      opened.add(port);
      assert.is((port.features & VIRTIO_F_IN_ORDER) !== 0n, inOrder);
      assert.ok(await warmUpPing(port, { timeoutMs: 30_000 }), 'testpmd echoes');
      const result = await runPingSession(port, {
        count: 10_000,
        sizeOf: (seq) => 60 + ((seq * 7919) % 1455),
        window: 128,
        timeoutMs: 60_000,
      });
      assert.equal(result.problems, [], `no corrupted frames\n${testpmd.output.slice(-2000)}`);
      assert.is(result.received, 10_000);
      port.close();
    });
  }

  for (const devargs of [',in_order=1', ',in_order=1,mrg_rxbuf=0']) {
    test(`virtio_user${devargs} on our backend offering IN_ORDER: negotiated, frames echo intact and in order`, async () => {
      const socket = socketPath('mq17');
      let portArrived!: (port: VhostUserPort) => void;
      const arrived = new Promise<VhostUserPort>((resolve) => {
        portArrived = resolve;
      });
      const backend = new VhostUserBackend(socket, {
        features: BACKEND_DEFAULT_FEATURES | VIRTIO_F_IN_ORDER,
        onPort: (port) => portArrived(port),
      });
      opened.add(backend);
      const testpmd = cleanup.startVirtioUser(socket, devargs, [
        '--forward-mode=io',
        '--stats-period',
        '1',
      ]);
      const port = await arrived;
      const result = await echoThroughQueuePair(port, 0, {
        count: 5000,
        window: 64,
        timeoutMs: 60_000,
      });
      assert.equal(result.problems, [], `no problems\n${testpmd.child.output().slice(-3000)}`);
      assert.is(result.intact, 5000);
      assert.is.not((port.features ?? 0n) & VIRTIO_F_IN_ORDER, 0n, 'IN_ORDER negotiated');
      assert.is(
        ((port.features ?? 0n) & VIRTIO_NET_F_MRG_RXBUF) !== 0n,
        !devargs.includes('mrg_rxbuf=0'),
      );
      assert.is(await cleanup.stopVirtioUser(testpmd), 0, 'testpmd stops cleanly');
    });
  }
}

test.run();
