// Packed rings across a back-end restart, between our two roles in real processes: a
// VirtioUser with `packedRings` (listening) streams numbered frames to `vring echo --packed
// --client`, which is killed with SIGKILL mid-stream while frames are in flight both ways;
// a new echo process connects and the stream goes on. The new back-end resumes each ring
// from the base the front-end gives it (slot | wrap counter << 15): the old one had written
// used descriptors over slots it was given (and the front-end reaps transmit completions
// lazily, so some of those were not yet seen), so the front-end takes what the old one
// returned and makes every chain it had not returned available again from that base. Every
// frame that comes back is intact; every frame sent after the restart comes back; frames
// the killed process had taken and not yet returned may be lost (no in-flight record on
// packed rings), at most what a ring holds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Child, killChildren, socketPath, spawnScript } from '../../../test-support/index.js';
import { VIRTIO_F_IN_ORDER, VIRTIO_F_RING_PACKED } from '../src/vhost-user/features.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { frame } from './fixtures/echo-backend.js';

test.after.each(() => killChildren('SIGKILL'));

const QUEUE_SIZE = 256;
/** Every third frame is 9000 B, which the echo reads in place and returns out of order. */
const sizeOf = (seq: number): number => (seq % 3 === 0 ? 9000 : 60 + ((seq * 7919) % 1455));

function startEcho(path: string, inOrder: boolean): Child {
  return spawnScript(
    new URL('./fixtures/echo-process.ts', import.meta.url),
    [path, '--client', '--packed', ...(inOrder ? ['--in-order'] : [])],
    { name: 'vring echo', stderr: 'capture', killAfterMs: 60_000 },
  );
}

async function restartUnderTraffic(inOrder: boolean): Promise<void> {
  const path = socketPath('pq17-packed-reconnect');
  const opening = VirtioUser.open(path, {
    server: true,
    packedRings: true,
    queueSize: QUEUE_SIZE,
    // One buffer holds a whole 9000-byte frame, so the echo can read it in place.
    bufferSize: 16384,
    signal: AbortSignal.timeout(30_000),
  });
  let echo = startEcho(path, inOrder);
  const user = await opening;
  try {
    assert.is.not(user.features & VIRTIO_F_RING_PACKED, 0n, 'packed rings negotiated');
    assert.is((user.features & VIRTIO_F_IN_ORDER) !== 0n, inOrder, 'in-order as offered');
    const total = 4000;
    const killAt = 1500;
    const seen = new Set<number>();
    let corrupted = 0;
    let wake: () => void = () => {};
    const progress = () =>
      new Promise<void>((resolve) => {
        wake = resolve;
      });
    const receiving = (async () => {
      for await (const f of user) {
        const seq = f.readUInt32BE(14);
        if (seq >= total || !f.equals(frame(seq, sizeOf(seq)))) corrupted++;
        else seen.add(seq);
        wake();
      }
    })();
    let sent = 0;
    const sendUpTo = async (end: number) => {
      for (; sent < end; sent += 100) {
        await user.send(Array.from({ length: 100 }, (_, i) => frame(sent + i, sizeOf(sent + i))));
      }
    };
    // A stalled ring fails the test here rather than hanging it.
    const within = <T>(promise: Promise<T>, what: string): Promise<T> =>
      Promise.race([
        promise,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`timed out: ${what}`)), 20_000).unref(),
        ),
      ]);
    const waitFor = async (done: () => boolean, what: string) => {
      const deadline = Date.now() + 20_000;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out: ${what} (${seen.size} frames back)`);
        await Promise.race([progress(), new Promise((r) => setTimeout(r, 50))]);
      }
    };

    // Frames keep going out while the echo is killed: it dies with chains taken on both
    // rings, and with transmit completions the front-end has not reaped.
    const sending = sendUpTo(killAt + 600);
    await waitFor(() => seen.size >= killAt, `${killAt} frames before the kill`);
    echo.kill('SIGKILL');
    assert.is(await echo.exited, 'SIGKILL');
    echo = startEcho(path, inOrder);
    await within(sending, 'sends after the restart'); // they waited while no echo ran
    const afterRestart = sent;
    await within(sendUpTo(total), 'sends after the restart');
    await waitFor(() => {
      for (let seq = afterRestart; seq < total; seq++) if (!seen.has(seq)) return false;
      return true;
    }, 'every frame sent after the restart');

    assert.is(user.connections, 2, 'the front-end reconnected once');
    assert.is(corrupted, 0, 'every frame that came back is intact');
    const lost = total - seen.size;
    assert.ok(lost <= 2 * QUEUE_SIZE, `${lost} frames lost, no more than the rings held`);
    user.close();
    await receiving;
  } finally {
    user.close();
    echo.kill('SIGTERM');
  }
}

for (const inOrder of [false, true]) {
  test(`packed rings: vring echo killed under traffic and restarted, the stream resumes intact (IN_ORDER ${inOrder ? 'on' : 'off'})`, () =>
    restartUnderTraffic(inOrder));
}

test.run();
