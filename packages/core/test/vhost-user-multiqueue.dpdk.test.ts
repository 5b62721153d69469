// Multiqueue (VIRTIO_NET_F_MQ) against unmodified DPDK 22.11, two queue pairs each way:
// - our VirtioUser (queuePairs: 2) on testpmd `net_vhost,queues=2` with --rxq=2 --txq=2: io
//   forwarding echoes each queue on itself, so frames sent on one of our pairs must come
//   back on that pair, in order and intact, on both pairs at once.
// - testpmd `virtio_user,queues=2` with --rxq=2 --txq=2 on our VhostUserBackend
//   (queuePairs: 2): frames our port sends on each pair come back on the same pair. testpmd
//   enables its second pair only once its port starts (after DRIVER_OK), so that pair goes
//   live on its own, later.
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath } from '../../../test-support/index.js';
import { VhostUserBackend } from '../src/vhost-user/backend.js';
import type { VhostUserPort } from '../src/vhost-user/backend-port.js';
import { VIRTIO_NET_F_MQ } from '../src/vhost-user/features.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { echoThroughQueuePair, type QueuePairEchoResult } from './fixtures/queue-pair-echo.js';
import { DpdkTestCleanup, requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';

const FRAMES_PER_PAIR = 5000;

const cleanup = new DpdkTestCleanup();
const { opened } = cleanup;

test.after.each(() => cleanup.run());

/** Runs both pairs' echoes at once and asserts each came back whole on its own pair. */
async function echoOnBothPairs(
  pairOf: (index: number) => Parameters<typeof echoThroughQueuePair>[0],
  peerOutput: () => string,
): Promise<void> {
  const results: QueuePairEchoResult[] = await Promise.all(
    [0, 1].map((pair) =>
      echoThroughQueuePair(pairOf(pair), pair, {
        count: FRAMES_PER_PAIR,
        window: 64,
        timeoutMs: 60_000,
      }),
    ),
  );
  for (const [pair, result] of results.entries()) {
    assert.equal(result.problems, [], `pair ${pair}: no problems\n${peerOutput().slice(-3000)}`);
    assert.is(result.intact, FRAMES_PER_PAIR, `pair ${pair}: every frame came back`);
  }
}

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
    await echoOnBothPairs(
      (pair) => port.queuePair(pair),
      () => testpmd.output,
    );
    port.close();
    const counts = await testpmd.stop();
    assert.ok(counts.rx >= 2 * FRAMES_PER_PAIR, `testpmd forwarded ${counts.rx}`);
  });

  test('virtio_user queues=2 on a VhostUserBackend with 2 queue pairs: each pair echoes its own frames intact', async () => {
    const socket = socketPath('mq17');
    const ports: VhostUserPort[] = [];
    let portArrived!: () => void;
    const arrived = new Promise<void>((resolve) => {
      portArrived = resolve;
    });
    const backend = new VhostUserBackend(socket, {
      queuePairs: 2,
      onPort: (port) => {
        ports.push(port);
        portArrived();
      },
    });
    opened.add(backend);
    const testpmd = cleanup.startVirtioUser(
      socket,
      ',queues=2',
      ['--forward-mode=io', '--rxq=2', '--txq=2', '--stats-period', '1'],
      90,
    );
    await arrived;
    const port = ports[0]!;
    assert.is(port.queuePairs, 2);
    assert.is(port.queuePair(0), port);
    await echoOnBothPairs((pair) => port.queuePair(pair), testpmd.child.output);
    assert.is.not((port.features ?? 0n) & VIRTIO_NET_F_MQ, 0n, 'MQ negotiated');
    assert.ok(port.queuePair(1).stats.framesReceived >= FRAMES_PER_PAIR, 'pair 1 counts its own');
    assert.is(await cleanup.stopVirtioUser(testpmd), 0, `testpmd stops cleanly`);
    assert.is(await port.closed, undefined, 'the port closes when testpmd leaves');
  });
}

test.run();
