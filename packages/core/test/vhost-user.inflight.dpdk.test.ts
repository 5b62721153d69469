// In-flight recovery (INFLIGHT_SHMFD) against unmodified DPDK 22.11 (dpdk-testpmd): neither
// of DPDK's net roles speaks it, so there it is tested between our own two roles
// (vhost-user.inflight.test.ts). These tests pin down what DPDK does instead:
// - DPDK virtio_user → our back-end, which offers INFLIGHT_SHMFD and CONFIGURE_MEM_SLOTS:
//   virtio_user leaves both out of SET_PROTOCOL_FEATURES (it takes MQ | REPLY_ACK | STATUS
//   only), so no in-flight record is made, its memory comes with SET_MEM_TABLE, and frames
//   flow as before;
// - our front-end with `inflight: true` → DPDK net_vhost, which does not offer it (lib/vhost
//   offers it only to applications that add it, like DPDK's vhost-blk example): the front-end
//   goes on without a record, sends no GET_INFLIGHT_FD, and frames echo.
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, until } from '../../../test-support/index.js';
import { warmUpPing } from '../src/cli/ping-session.js';
import { VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD } from '../src/vhost-user/features.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { echoBackend } from './fixtures/echo-backend.js';
import {
  requireTestpmd,
  startVirtioUserTestpmd,
  stopVirtioUserTestpmd,
  Testpmd,
} from './fixtures/testpmd-echo.js';

test.after.each(async () => {
  await Testpmd.stopAll();
});

if (requireTestpmd()) {
  test('DPDK virtio_user → our back-end: INFLIGHT_SHMFD and CONFIGURE_MEM_SLOTS are offered but not taken, and frames flow', async () => {
    const h = echoBackend(socketPath('inf17-dpdk'));
    const pmd = startVirtioUserTestpmd(h.path, '', [
      '--forward-mode=io',
      '--tx-first',
      '--stats-period',
      '1',
    ]);
    try {
      await until(
        () => (h.ports[0]?.stats.framesReceived ?? 0) > 0,
        'virtio_user frames reach the port',
      );
      const port = h.ports[0]!;
      assert.is(
        port.protocolFeatures,
        0x10009n,
        `virtio_user took MQ | REPLY_ACK | STATUS only (0x${port.protocolFeatures.toString(16)})`,
      );
      assert.is(port.stats.resubmitted, 0);
      assert.is(port.stats.regionsAdded, 0, 'its memory came with SET_MEM_TABLE');
      assert.is(h.errors.length, 0);
    } finally {
      await stopVirtioUserTestpmd(pmd);
      h.backend.close();
    }
  });

  test('our front-end with inflight → DPDK net_vhost: not offered, so no record, and frames echo', async () => {
    const socket = socketPath('inf17-dpdk');
    const testpmd = Testpmd.start(socket);
    await testpmd.waitForSocket();
    const port = await VirtioUser.open(socket, {
      inflight: true,
      signal: AbortSignal.timeout(60_000),
    });
    try {
      assert.is(port.protocolFeatures & VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, 0n);
      assert.ok(await warmUpPing(port, { timeoutMs: 30_000 }), 'testpmd echoed a probe');
    } finally {
      port.close();
      await testpmd.stop();
    }
  });
}

test.run();
