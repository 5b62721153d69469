// Packed virtqueues against DPDK 22.11 (dpdk-testpmd, unmodified): virtio_user with
// `packed_vq=1` attached to `vring echo --packed` in its own process. Frames of 60..1514 B
// from a capture file go out through virtio_user and must come back byte for byte, with
// mergeable receive buffers on and off. The echo reports the negotiated features, which
// must include RING_PACKED: a silent fallback to split rings fails the test.
//
// Without /usr/bin/dpdk-testpmd the file registers no test and says why.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, spawnScript } from '../../../test-support/index.js';
import { VIRTIO_F_RING_PACKED, VIRTIO_NET_F_MRG_RXBUF } from '../src/vhost-user/features.js';
import { assertEveryFrameEchoed, parseCaptureReport } from './fixtures/capture-report.js';
import { stopEcho } from './fixtures/echo-counters.js';
import { requireTestpmd } from './fixtures/testpmd-echo.js';

const FRAMES = 500;

async function packedEcho(devargs: string, mergeable: boolean): Promise<void> {
  const socket = socketPath('pk17-packed');
  const echo = spawnScript(
    new URL('./fixtures/echo-process.ts', import.meta.url),
    [socket, '--packed'],
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
}

if (requireTestpmd()) {
  test('DPDK virtio_user packed_vq=1 → vring echo on packed rings: frames back byte for byte', () =>
    packedEcho(',packed_vq=1', true));
  test('DPDK virtio_user packed_vq=1,mrg_rxbuf=0,in_order=0 → vring echo on packed rings', () =>
    packedEcho(',packed_vq=1,mrg_rxbuf=0,in_order=0', false));
}

test.run();
