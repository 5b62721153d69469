// Multiqueue (VIRTIO_NET_F_MQ) against unmodified DPDK 22.11, two queue pairs each way:
// - our VirtioUser (queuePairs: 2) on testpmd `net_vhost,queues=2` with --rxq=2 --txq=2: io
//   forwarding echoes each queue on itself, so frames sent on one of our pairs must come
//   back on that pair, in order and intact, on both pairs at once.
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath } from '../../../test-support/index.js';
import { VIRTIO_NET_F_MQ } from '../src/vhost-user/features.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { echoThroughQueuePair } from './fixtures/queue-pair-echo.js';
import { requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';

const FRAMES_PER_PAIR = 5000;

const opened = new Set<{ close(): void }>();

test.after.each(async () => {
  for (const port of opened) port.close();
  opened.clear();
  await Testpmd.stopAll();
});

if (requireTestpmd()) {
  test('VirtioUser with 2 queue pairs on net_vhost queues=2: each pair echoes its own frames intact', async () => {
    const socket = socketPath();
    const testpmd = Testpmd.start(socket, { queues: 2, timeoutSeconds: 90 });
    await testpmd.waitForSocket();
    const port = await VirtioUser.open(socket, {
      queuePairs: 2,
      signal: AbortSignal.timeout(30_000),
    });
    opened.add(port);
    assert.is(port.queuePairs, 2);
    assert.is.not(port.features & VIRTIO_NET_F_MQ, 0n, 'MQ negotiated');
    assert.is(port.queuePair(0), port.queuePair(0), 'a pair is one object');
    const results = await Promise.all(
      [0, 1].map((pair) =>
        echoThroughQueuePair(port.queuePair(pair), pair, {
          count: FRAMES_PER_PAIR,
          window: 64,
          timeoutMs: 60_000,
        }),
      ),
    );
    const context = `testpmd:\n${testpmd.output.slice(-3000)}`;
    for (const [pair, result] of results.entries()) {
      assert.equal(result.problems, [], `pair ${pair}: no problems\n${context}`);
      assert.is(result.intact, FRAMES_PER_PAIR, `pair ${pair}: every frame came back`);
    }
    port.close();
    const counts = await testpmd.stop();
    assert.ok(counts.rx >= 2 * FRAMES_PER_PAIR, `testpmd forwarded ${counts.rx}`);
  });
}

test.run();
