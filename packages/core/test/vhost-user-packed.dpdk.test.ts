// Packed virtqueues against DPDK 22.11 (dpdk-testpmd, unmodified), both directions:
// - our VirtioUser with `packedRings` on testpmd's net_vhost (io forwarding echoes every
//   frame): 20,000 frames of 60..1514 B come back intact, mergeable buffers on and off,
//   in both socket modes. net_vhost offers IN_ORDER and the VirtioUser takes it, so
//   net_vhost returns the frames we send in batches, one used descriptor naming a batch's
//   last chain; one case declines IN_ORDER for the one-descriptor-per-chain path;
// - DPDK virtio_user with `packed_vq=1` attached to `vring echo --packed` in its own
//   process: frames of 60..1514 B from a capture file come back byte for byte, with
//   mergeable receive buffers on and off, and with `in_order=1` on `vring echo --packed
//   --in-order` (DPDK's in-order packed transmit path), and on rings of 1000 descriptors
//   (virtio 1.1 lets a packed ring's size be any number up to 32768), in order and not.
// Each side checks the negotiated features include RING_PACKED, and IN_ORDER when it is
// meant to be used: a silent fallback fails the test.
//
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, spawnScript } from '../../../test-support/index.js';
import { runPingSession, warmUpPing } from '../src/cli/ping-session.js';
import {
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_NET_F_MRG_RXBUF,
} from '../src/vhost-user/features.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { assertEveryFrameEchoed, parseCaptureReport } from './fixtures/capture-report.js';
import { stopEcho } from './fixtures/echo-counters.js';
import { requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';

const PING_FRAMES = 20_000;
const mixedSize = (seq: number) => 60 + ((seq * 7919) % 1455);

test.after.each(async () => {
  await Testpmd.stopAll();
});

async function frontendOnNetVhost(
  server: boolean,
  mergeable: boolean,
  inOrder = true,
): Promise<void> {
  const socket = socketPath('pk17-packed-fe');
  const options = {
    packedRings: true,
    mergeable,
    server,
    inOrder,
    signal: AbortSignal.timeout(60_000),
  };
  let testpmd: Testpmd;
  let opening: Promise<VirtioUser>;
  if (server) {
    opening = VirtioUser.open(socket, options);
    testpmd = Testpmd.start(socket, { client: true });
  } else {
    testpmd = Testpmd.start(socket, {});
    await testpmd.waitForSocket();
    opening = VirtioUser.open(socket, options);
  }
  const port = await opening;
  try {
    assert.is.not(port.features & VIRTIO_F_RING_PACKED, 0n, 'packed rings negotiated');
    assert.is((port.features & VIRTIO_NET_F_MRG_RXBUF) !== 0n, mergeable, 'mergeable as asked');
    assert.is((port.features & VIRTIO_F_IN_ORDER) !== 0n, inOrder, 'in-order as asked');
    assert.ok(await warmUpPing(port, { timeoutMs: 30_000 }), 'testpmd never echoed a probe');
    const result = await runPingSession(port, {
      count: PING_FRAMES,
      sizeOf: mixedSize,
      window: 128,
      timeoutMs: 60_000,
    });
    assert.equal(result.problems, [], 'no corrupted frames');
    assert.is(result.received, PING_FRAMES, `received (testpmd:\n${testpmd.output.slice(-2000)})`);
    assert.is(result.lost, 0);
    assert.is(result.corrupted, 0);
    port.close();
    assert.is(await port.closed, undefined);
    const counts = await testpmd.stop();
    assert.is(counts.rx, counts.tx, 'testpmd forwarded every frame it received');
  } finally {
    port.close();
  }
}

const FRAMES = 500;

async function packedEcho(
  devargs: string,
  mergeable: boolean,
  inOrder = false,
  queueSize = 1024, // dpdk-virtio-user-capture's queue_size unless devargs give one
): Promise<void> {
  const socket = socketPath('pk17-packed');
  const echo = spawnScript(
    new URL('./fixtures/echo-process.ts', import.meta.url),
    [socket, '--packed', ...(inOrder ? ['--in-order'] : [])],
    { stderr: 'capture', name: 'vring echo' },
  );
  await echo.waitFor(/listening on/);
  const client = spawnScript(
    new URL('./fixtures/dpdk-virtio-user-capture.ts', import.meta.url),
    [socket, String(FRAMES), 'no-huge', devargs],
    { stderr: 'capture', name: 'dpdk-virtio-user-capture', killAfterMs: 60_000 },
  );
  const code = await client.exited;
  const context = `testpmd:\n${client.output()}\necho:\n${echo.output()}`;
  assert.is(code, 0, `testpmd stops cleanly\n${context}`);
  assertEveryFrameEchoed(parseCaptureReport(client.output()), FRAMES, context);
  assert.equal(
    await stopEcho(echo),
    { received: FRAMES, sent: FRAMES, dropped: 0 },
    'the echo returned every frame',
  );
  const features = BigInt(echo.output().match(/port 1 .*features (0x[0-9a-f]+)/)![1]!);
  assert.ok((features & VIRTIO_F_RING_PACKED) !== 0n, `packed rings negotiated\n${context}`);
  assert.is((features & VIRTIO_NET_F_MRG_RXBUF) !== 0n, mergeable, 'mergeable buffers as asked');
  assert.is((features & VIRTIO_F_IN_ORDER) !== 0n, inOrder, `in-order as offered\n${context}`);
  assert.match(echo.output(), new RegExp(`port 1 .*, queue size ${queueSize}\n`), 'ring size');
}

if (requireTestpmd()) {
  for (const server of [false, true]) {
    const mode = server ? 'server mode (net_vhost client=1)' : 'client mode (net_vhost listens)';
    for (const mergeable of [true, false]) {
      test(`VirtioUser packedRings → DPDK net_vhost, ${mode}, mergeable ${mergeable ? 'on' : 'off'}, IN_ORDER negotiated: ${PING_FRAMES} frames intact`, () =>
        frontendOnNetVhost(server, mergeable));
    }
  }
  test(`VirtioUser packedRings with inOrder false → DPDK net_vhost: IN_ORDER not negotiated, ${PING_FRAMES} frames intact`, () =>
    frontendOnNetVhost(false, true, false));
  test('DPDK virtio_user packed_vq=1 → vring echo on packed rings: frames back byte for byte', () =>
    packedEcho(',packed_vq=1', true));
  test('DPDK virtio_user packed_vq=1,mrg_rxbuf=0,in_order=0 → vring echo on packed rings', () =>
    packedEcho(',packed_vq=1,mrg_rxbuf=0,in_order=0', false));
  for (const mergeable of [true, false]) {
    const devargs = `,packed_vq=1,in_order=1${mergeable ? '' : ',mrg_rxbuf=0'}`;
    test(`DPDK virtio_user${devargs} → vring echo --packed --in-order: IN_ORDER negotiated, frames back byte for byte`, () =>
      packedEcho(devargs, mergeable, true));
  }
  // 1000: not a power of two, and large enough that testpmd's burst of 500 never finds the
  // transmit ring full (DPDK itself refuses sizes whose quarter is not a multiple of 4).
  for (const inOrder of [false, true]) {
    const devargs = `,packed_vq=1,queue_size=1000,in_order=${inOrder ? 1 : 0}`;
    test(`DPDK virtio_user${devargs} → vring echo --packed${inOrder ? ' --in-order' : ''}: a ring size that is not a power of two, frames back byte for byte`, () =>
      packedEcho(devargs, true, inOrder, 1000));
  }
}

test.run();
