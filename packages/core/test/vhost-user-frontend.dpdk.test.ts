// Our VirtioUser (vhost-user front-end) against unmodified DPDK 22.11: dpdk-testpmd with one
// net_vhost port in io forwarding echoes every frame. 100,000 frames of mixed sizes 60–1514 B
// must all come back with their content intact, in both socket modes (net_vhost listening:
// our client mode; net_vhost `client=1`: our server mode). Frames written in place into the
// transmit area (FrameLending) come back the same way. Then `vring ping` against it, and
// reconnects: testpmd is stopped and a new one started while traffic runs, and traffic
// resumes on the same VirtioUser handle. Then the same against testpmd on 2 MiB hugepages,
// from a hugetlbfs mount and in memory only, where they are reserved (else those say why).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath, until } from '../../../test-support/index.js';
import { checkPingFrame, writePingFrame } from '../src/cli/ping-frame.js';
import { runPingSession, warmUpPing } from '../src/cli/ping-session.js';
import { InPlaceBatch } from '../src/in-place-batch.js';
import { MessageBatch } from '../src/message-batch.js';
import {
  VIRTIO_F_VERSION_1,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_RING_F_EVENT_IDX,
} from '../src/vhost-user/features.js';
import {
  VirtioUser,
  type VirtioUserEvent,
  type VirtioUserOptions,
} from '../src/vhost-user/virtio-user.js';
import {
  HUGEPAGE_RUNS,
  requireHugepages,
  requireTestpmd,
  Testpmd,
  type TestpmdMemory,
} from './fixtures/testpmd-echo.js';
import { fdsOpenedSince, openFds } from './fixtures/vring-assert.js';

const FRAMES = 100_000;
// Mixed sizes covering 60..1514 B (1455 values; 7919 is prime, so consecutive frames differ).
const mixedSize = (seq: number) => 60 + ((seq * 7919) % 1455);

const ports = new Set<VirtioUser>();

function track(port: VirtioUser): VirtioUser {
  ports.add(port);
  return port;
}

// A failed assertion must not leave testpmd running or a VirtioUser open.
test.after.each(async () => {
  for (const port of ports) port.close();
  ports.clear();
  await Testpmd.stopAll();
});

/** Opens a VirtioUser on testpmd in the given mode and waits until frames echo. */
async function openOnTestpmd(
  server: boolean,
  extra: VirtioUserOptions = {},
  memory: TestpmdMemory = 'no-huge',
): Promise<{ port: VirtioUser; testpmd: Testpmd; socket: string }> {
  const socket = socketPath();
  let testpmd: Testpmd;
  let opening: Promise<VirtioUser>;
  const options = { ...extra, server, signal: AbortSignal.timeout(60_000) };
  if (server) {
    // Our side listens; testpmd (net_vhost client=1) connects. The socket exists at once.
    opening = VirtioUser.open(socket, options);
    testpmd = Testpmd.start(socket, { client: true, memory });
  } else {
    testpmd = Testpmd.start(socket, { memory });
    await testpmd.waitForSocket();
    opening = VirtioUser.open(socket, options);
  }
  let port: VirtioUser;
  try {
    port = track(await opening);
  } catch (error) {
    throw new Error(`open failed: ${String(error)}\n${testpmd.output}`);
  }
  assert.ok(await warmUpPing(port, { timeoutMs: 30_000 }), 'testpmd never echoed a probe');
  return { port, testpmd, socket };
}

if (requireTestpmd()) {
  for (const server of [false, true]) {
    const mode = server ? 'server mode (net_vhost client=1)' : 'client mode (net_vhost listens)';

    test(`${mode}: ${FRAMES} frames of 60–1514 B come back intact, none lost`, async () => {
      const fdsBefore = openFds();
      const { port, testpmd } = await openOnTestpmd(server);
      // net_vhost offers all three; the rings must be driven in the mode agreed.
      for (const bit of [VIRTIO_F_VERSION_1, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_RING_F_EVENT_IDX]) {
        assert.is.not(port.features & bit, 0n, `feature 0x${bit.toString(16)} negotiated`);
      }
      const result = await runPingSession(port, {
        count: FRAMES,
        sizeOf: mixedSize,
        window: 128,
        timeoutMs: 120_000,
      });
      assert.equal(result.problems, [], 'no corrupted frames');
      assert.is(result.sent, FRAMES);
      assert.is(result.received, FRAMES, `received (testpmd:\n${testpmd.output.slice(-2000)})`);
      assert.is(result.lost, 0);
      assert.is(result.corrupted, 0);
      assert.is(result.foreign, 0);
      assert.is(port.connections, 1);
      port.close();
      assert.is(await port.closed, undefined);
      // Everything the VirtioUser opened (socket, memfd, eventfds) is released by close();
      // testpmd's pipes are gone once it has exited.
      const counts = await testpmd.stop();
      assert.is(counts.rx, counts.tx, 'testpmd forwarded every frame it received');
      assert.ok(counts.rx >= FRAMES, `testpmd received ${counts.rx}`);
      assert.equal(fdsOpenedSince(fdsBefore), [], 'no fd left open');
    });
  }

  test('frames written in place (reserve, commit) cross testpmd and come back intact, read through FrameLending', async () => {
    const { port, testpmd } = await openOnTestpmd(false);
    const lending = port.lending;
    // Source MAC 02:6c:65:6e:64:00 marks these frames apart from warm-up probes still in flight.
    const marker = Buffer.from([0x02, 0x6c, 0x65, 0x6e, 0x64, 0x00]);
    const frameOf = (seq: number) => {
      const f = Buffer.alloc(mixedSize(seq));
      f.fill(0xff, 0, 6);
      marker.copy(f, 6);
      f.writeUInt16BE(0x88b5, 12);
      f.writeUInt32BE(seq, 14);
      for (let i = 18; i < f.length; i++) f[i] = (seq * 13 + i) & 0xff;
      return f;
    };
    const total = 5000;
    const window = 64;
    const batch = new InPlaceBatch();
    const received: Buffer[] = [];
    let sent = 0;
    const deadline = Date.now() + 60_000;
    while (received.length < total && Date.now() < deadline) {
      while (sent < total && sent - received.length < window) {
        const frame = frameOf(sent);
        const room = lending.reserve(frame.length);
        if (!room) break;
        frame.copy(room);
        lending.commit(frame.length);
        sent++;
      }
      const n = lending.tryReceiveInPlace(batch);
      for (let i = 0; i < n; i++) {
        const frame = batch.dataOf(i).subarray(batch.startOf(i), batch.endOf(i));
        if (frame.subarray(6, 12).equals(marker)) received.push(Buffer.from(frame));
      }
      lending.release(batch.held);
      if (n === 0) {
        await port.waitReceivable({ signal: AbortSignal.timeout(200) }).catch(() => undefined);
      }
    }
    assert.is(received.length, total, `received (testpmd:\n${testpmd.output.slice(-2000)})`);
    const damaged = received.filter((frame, seq) => !frame.equals(frameOf(seq))).length;
    assert.is(damaged, 0, 'every frame intact and in order');
    port.close();
    const counts = await testpmd.stop();
    assert.is(counts.rx, counts.tx, 'testpmd forwarded every frame it received');
  });

  test('without MRG_RXBUF, EVENT_IDX and IN_ORDER, event notification: 20,000 frames of 60–1514 B intact', async () => {
    const { port, testpmd } = await openOnTestpmd(false, {
      mergeable: false,
      eventIdx: false,
      inOrder: false,
      notification: 'event',
    });
    // VERSION_1 | PROTOCOL_FEATURES only: each receive buffer holds a whole frame, and
    // notifications go through the NO_NOTIFY/NO_INTERRUPT flags.
    assert.is(port.features, VIRTIO_F_VERSION_1 | (1n << 30n));
    const result = await runPingSession(port, {
      count: 20_000,
      sizeOf: mixedSize,
      window: 128,
      timeoutMs: 120_000,
    });
    assert.equal(result.problems, []);
    assert.is(result.received, 20_000);
    assert.is(result.lost, 0);
    assert.is(result.corrupted, 0);
    port.close();
    await testpmd.stop();
  });

  for (const server of [false, true]) {
    test(`vring ping ${server ? '--server' : ''} against testpmd: 1000 × 64 B, exit code 0`, async () => {
      const { ping } = await import('../src/cli/ping.js');
      const socket = socketPath();
      let testpmd: Testpmd;
      const lines: string[] = [];
      let run: Promise<number>;
      if (server) {
        run = ping({ socket, server, count: 1000, size: 64, log: (l) => lines.push(l) });
        testpmd = Testpmd.start(socket, { client: true });
      } else {
        testpmd = Testpmd.start(socket);
        await testpmd.waitForSocket();
        run = ping({ socket, server, count: 1000, size: 64, log: (l) => lines.push(l) });
      }
      assert.is(await run, 0, lines.join('\n'));
      assert.is(lines.length, 1, 'one summary line');
      assert.match(lines[0]!, /sent 1000, received 1000, lost 0, corrupted 0/);
      await testpmd.stop();
    });
  }

  /**
   * Traffic that tolerates loss: keeps up to `window` frames in flight and checks every frame
   * that comes back. Frames die with a stopped back-end or in the new testpmd's start-up
   * flush of its receive queues, so when nothing has come back for a while the sender writes
   * off what is in flight and carries on (as any protocol over Ethernet would retransmit).
   */
  function backgroundTraffic(port: VirtioUser, window: number) {
    const stats = { sent: 0, received: 0, corrupted: 0, forgotten: 0 };
    let stopped = false;
    void port.closed.then(() => {
      stopped = true;
    });
    const scratch = Buffer.alloc(2048);
    let lastProgress = Date.now();
    const sending = (async () => {
      const batch = new MessageBatch({ messages: 32 });
      while (!stopped) {
        const inFlight = stats.sent - stats.received - stats.forgotten;
        if (inFlight >= window) {
          if (Date.now() - lastProgress > 500) {
            stats.forgotten = stats.sent - stats.received;
            lastProgress = Date.now();
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
          continue;
        }
        batch.clear();
        for (let i = 0; i < Math.min(32, window - inFlight); i++) {
          batch.push(writePingFrame(scratch, stats.sent + i, mixedSize(stats.sent + i)));
        }
        stats.sent += batch.count;
        await port.sendBatch(batch);
      }
    })();
    const receiving = (async () => {
      const batch = new MessageBatch();
      while (!stopped) {
        try {
          await port.receive(batch, { signal: AbortSignal.timeout(100) });
        } catch (error) {
          if ((error as Error).name === 'TimeoutError') continue;
          throw error;
        }
        lastProgress = Date.now();
        for (const frame of batch) {
          const check = checkPingFrame(frame);
          if (check.kind === 'intact') stats.received++;
          else if (check.kind !== 'warm-up') stats.corrupted++;
        }
      }
    })();
    // Settled here so a test that fails mid-traffic (and closes the port) leaves no unhandled
    // rejection behind; stop() rethrows.
    const done = Promise.all([sending, receiving]);
    done.catch(() => {});
    return {
      stats,
      async stop() {
        stopped = true;
        await done;
      },
    };
  }

  for (const { memory, flags } of HUGEPAGE_RUNS) {
    const what = `testpmd on 2 MiB hugepages (${flags})`;
    if (!requireHugepages(memory, what)) continue;
    test(`client mode against ${what}: 20,000 frames of 60–1514 B come back intact`, async () => {
      const { port, testpmd } = await openOnTestpmd(false, {}, memory);
      assert.ok(
        testpmd.hugepageKib() >= 128 * 1024,
        `testpmd's memory is on 2 MiB pages (${testpmd.hugepageKib()} KiB)`,
      );
      const result = await runPingSession(port, {
        count: 20_000,
        sizeOf: mixedSize,
        window: 128,
        timeoutMs: 60_000,
      });
      assert.equal(result.problems, []);
      assert.is(result.received, 20_000, `received (testpmd:\n${testpmd.output.slice(-2000)})`);
      assert.is(result.lost, 0);
      assert.is(result.corrupted, 0);
      port.close();
      const counts = await testpmd.stop();
      assert.is(counts.rx, counts.tx, 'testpmd forwarded every frame it received');
    });
  }

  for (const server of [false, true]) {
    const mode = server ? 'server mode' : 'client mode';
    test(`${mode}: testpmd stopped and restarted while traffic runs; traffic resumes on the same handle`, async () => {
      const events: VirtioUserEvent[] = [];
      const { port, testpmd, socket } = await openOnTestpmd(server, {
        onEvent: (e) => events.push(e),
      });
      const traffic = backgroundTraffic(port, 64);
      await until(
        () => traffic.stats.received >= 2000,
        'traffic through the first testpmd',
        60_000,
      );
      await testpmd.stop();
      await until(() => !port.connected, 'the VirtioUser to notice the disconnect', 60_000);
      const before = traffic.stats.received;

      const second = Testpmd.start(socket, { client: server });
      await until(() => port.connections === 2 && port.connected, 'the replayed handshake', 60_000);
      await until(
        () => traffic.stats.received >= before + 2000,
        `traffic through the second testpmd (received ${traffic.stats.received}, before ${before})\n${second.output.slice(0, 6000)}`,
        60_000,
      );
      await traffic.stop();
      assert.is(traffic.stats.corrupted, 0, 'every frame that came back is intact');
      assert.equal(
        events.map((e) => e.type),
        ['connected', 'disconnected', 'connected'],
        'one disconnect, one reconnect',
      );
      port.close();
      const counts = await second.stop();
      assert.ok(counts.rx >= 2000, `second testpmd forwarded ${counts.rx}`);
      // The replay set each ring's base to the device's used index, so DPDK had nothing to
      // resynchronise (with base 0, as DPDK's virtio_user sends, it logs a mismatch).
      assert.match(second.output, /vring base idx:1 last_used_idx:\d+/);
      assert.not.match(second.output, /mismatches/);
    });
  }
}

test.run();
