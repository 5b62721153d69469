// REPLY_ACK against unmodified DPDK 22.11 (dpdk-testpmd), both directions:
// - DPDK virtio_user → our back-end: virtio_user negotiates REPLY_ACK with us (it then sets
//   NEED_REPLY on SET_MEM_TABLE and SET_STATUS and waits for our acks), and frames flow;
// - our front-end → DPDK's net_vhost back-end: DPDK NACKs an unknown request and an
//   un-offered feature bit sent with NEED_REPLY and keeps the connection, as ours does; our
//   FrontendConnection reports the NACK as ERR_VRING_PROTOCOL (`nack`), then the handshake
//   completes on the same connection and testpmd echoes frames back intact.
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, until } from '../../../test-support/index.js';
import { VHOST_USER_PROTOCOL_F_REPLY_ACK } from '../src/vhost-user/features.js';
import { echoBackend, roundTrip, untilEchoing } from './fixtures/echo-backend.js';
import { nackThenHandshake } from './fixtures/nack-then-handshake.js';
import {
  requireTestpmd,
  startVirtioUserTestpmd,
  stopVirtioUserTestpmd,
  Testpmd,
} from './fixtures/testpmd-echo.js';
import { createDriver } from './fixtures/vhost-user-raw-client.js';

test.after.each(async () => {
  await Testpmd.stopAll();
});

if (requireTestpmd()) {
  test('DPDK virtio_user → our back-end: REPLY_ACK is negotiated and frames flow', async () => {
    const h = echoBackend();
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
      assert.is.not(
        port.protocolFeatures & VHOST_USER_PROTOCOL_F_REPLY_ACK,
        0n,
        `REPLY_ACK negotiated (protocol features 0x${port.protocolFeatures.toString(16)})`,
      );
      assert.ok(port.live);
      assert.is(h.errors.length, 0, 'virtio_user accepted every ack');
    } finally {
      await stopVirtioUserTestpmd(pmd);
      h.backend.close();
    }
  });

  test('our front-end → DPDK net_vhost: NACKs keep the connection, then frames echo intact', async () => {
    const socket = socketPath('nack');
    const testpmd = Testpmd.start(socket);
    await testpmd.waitForSocket();
    const driver = createDriver();
    try {
      const { socket: control } = await nackThenHandshake(socket, driver).catch((error) => {
        throw new Error(`${String(error)}\n${testpmd.output}`);
      });
      try {
        // testpmd starts forwarding a moment after it acknowledged the handshake.
        await untilEchoing(driver);
        // Rounds of five (60 B to 4000 B): roundTrip's sixth size, 9000 B, is more than
        // testpmd forwards.
        for (let round = 0; round < 20; round++) await roundTrip(driver, 5, round * 5);
      } finally {
        control.close();
      }
    } finally {
      driver.close();
      await testpmd.stop();
    }
  });
}

test.run();
