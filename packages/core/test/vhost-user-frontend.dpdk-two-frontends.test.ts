// Two of our VirtioUser front-ends exchanging frames through unmodified DPDK 22.11: one
// dpdk-testpmd with two net_vhost ports in io forwarding, which pairs them (what arrives on
// port 0 leaves on port 1 and vice versa). Front-end A is attached to port 0, B to port 1.
// Both send at once; each must receive exactly the other's frames, in order, intact, and
// testpmd's per-port counters must agree with what the front-ends saw.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { socketPath } from '../../../test-support/index.js';
import { MessageBatch } from '../src/message-batch.js';
import { VirtioUser } from '../src/vhost-user/virtio-user.js';
import { requireTestpmd, Testpmd } from './fixtures/testpmd-echo.js';
import { fdsOpenedSince, openFds } from './fixtures/vring-assert.js';

/** Data frames each side sends. */
const FRAMES = 20_000;
/**
 * Frames a side may have on their way to the other at once: fewer than the receiving ring's
 * buffers (256), because io forwarding drops what it cannot place in the receiving ring.
 */
const WINDOW = 128;
const ETHERTYPE = 0x88b5;
const KIND_PROBE = 1;
const KIND_DATA = 2;
const HEADER = 24;
const SIDES = ['A', 'B'] as const;

/** 60..1514 B, different sequences of sizes for A (0) and B (1). */
const sizeOf = (side: number, seq: number) => 60 + ((seq * 7919 + side * 509) % 1455);
const patternByte = (side: number, seq: number, i: number) =>
  (seq * 31 + i * 7 + side * 101) & 0xff;

/**
 * dst broadcast, src 02:00:00:00:00:<side>, EtherType, kind, side, seq (u32), size (u16),
 * then a pattern that depends on side, seq and offset.
 */
function writeFrame(out: Buffer, side: number, kind: number, seq: number, size: number): Buffer {
  const f = out.subarray(0, size);
  f.fill(0xff, 0, 6);
  f.writeUIntBE(0x02_00_00_00_00_00 + side, 6, 6);
  f.writeUInt16BE(ETHERTYPE, 12);
  f[14] = kind;
  f[15] = side;
  f.writeUInt32BE(seq, 16);
  f.writeUInt16BE(size, 20);
  f.writeUInt16BE(0, 22);
  for (let i = HEADER; i < size; i++) f[i] = patternByte(side, seq, i);
  return f;
}

/** What is wrong with a data frame that should be `seq` from `side`, or '' if it is intact. */
function checkData(frame: Uint8Array, side: number, seq: number): string {
  const f = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const size = sizeOf(side, seq);
  if (f.byteLength < HEADER) return `runt of ${f.byteLength} B`;
  if (f[14] !== KIND_DATA) return `kind ${f[14]} instead of data`;
  if (f[15] !== side) return `from side ${f[15]}, expected ${side}`;
  const got = f.readUInt32BE(16);
  if (got !== seq) return `sequence ${got}, expected ${seq}`;
  if (f.byteLength !== size) return `seq ${seq}: ${f.byteLength} B, expected ${size}`;
  for (let i = HEADER; i < size; i++) {
    if (f[i] !== patternByte(side, seq, i)) return `seq ${seq}: byte ${i} differs`;
  }
  return '';
}

const ends = new Set<VirtioUser>();

test.after.each(async () => {
  for (const end of ends) end.close();
  ends.clear();
  await Testpmd.stopAll();
});

interface Seen {
  /** Every frame this side received, warm-up probes included. */
  total: number;
  probes: number;
}

/**
 * Warm-up: testpmd drops frames sent right after a handshake, and a port's frames are dropped
 * while the other port has no front-end. Each side sends probes until one of its probes
 * arrives on the other side; then both drain until nothing has arrived for a while.
 */
async function warmUp(ports: VirtioUser[], seen: Seen[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const scratch = Buffer.alloc(2048);
  const batches = ports.map(() => new MessageBatch({ bytes: 256 * 1024 }));
  const gotProbeFrom = [false, false];
  const problems: string[] = [];
  const take = (side: number) => {
    for (const frame of batches[side]!) {
      seen[side]!.total++;
      const f = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
      if (f[14] === KIND_PROBE && f[15] === 1 - side) {
        seen[side]!.probes++;
        gotProbeFrom[1 - side] = true;
      } else problems.push(`side ${SIDES[side]} got a non-probe during warm-up`);
    }
  };
  const receiveFor = async (side: number, ms: number) => {
    const signal = AbortSignal.timeout(ms);
    let got = 0;
    for (;;) {
      try {
        await ports[side]!.receive(batches[side]!, { signal });
      } catch (error) {
        if (signal.aborted) return got;
        throw error;
      }
      got += batches[side]!.count;
      take(side);
    }
  };
  for (let seq = 0; !(gotProbeFrom[0] && gotProbeFrom[1]); seq++) {
    if (Date.now() > deadline) throw new Error(`no probe crossed testpmd: ${gotProbeFrom}`);
    for (const side of [0, 1]) {
      if (!gotProbeFrom[side])
        await ports[side]!.send(writeFrame(scratch, side, KIND_PROBE, seq, 60));
    }
    await Promise.all([receiveFor(0, 100), receiveFor(1, 100)]);
  }
  // Drain: probes still in flight must not be taken for data.
  for (;;) {
    const got = await Promise.all([receiveFor(0, 300), receiveFor(1, 300)]);
    if (got[0] === 0 && got[1] === 0) break;
  }
  assert.equal(problems, [], 'only probes during warm-up');
}

interface Flow {
  received: number;
  problems: string[];
  duplicates: number;
  gaps: number;
}

/**
 * A sends FRAMES to B and B sends FRAMES to A, at the same time. A sender keeps at most
 * WINDOW frames ahead of what the other side has received.
 */
async function exchange(ports: VirtioUser[], seen: Seen[], timeoutMs: number): Promise<Flow[]> {
  const stop = AbortSignal.timeout(timeoutMs);
  const flows: Flow[] = ports.map(() => ({ received: 0, problems: [], duplicates: 0, gaps: 0 }));
  const sent = [0, 0];
  // Wakes the sender of side s when side 1 - s has received something.
  const wake: Array<(() => void) | undefined> = [undefined, undefined];
  const progress = (side: number) => new Promise<void>((resolve) => (wake[side] = resolve));

  const send = async (side: number) => {
    const port = ports[side]!;
    const batch = new MessageBatch({ messages: 32, bytes: 64 * 1024 });
    const scratch = Buffer.alloc(2048);
    while (sent[side]! < FRAMES && !stop.aborted) {
      const room = WINDOW - (sent[side]! - flows[1 - side]!.received);
      if (room <= 0) {
        await progress(side);
        continue;
      }
      batch.clear();
      const n = Math.min(32, room, FRAMES - sent[side]!);
      for (let i = 0; i < n; i++) {
        const seq = sent[side]! + i;
        batch.push(writeFrame(scratch, side, KIND_DATA, seq, sizeOf(side, seq)));
      }
      await port.sendBatch(batch);
      sent[side]! += n;
    }
  };

  const receive = async (side: number) => {
    const port = ports[side]!;
    const flow = flows[side]!;
    const from = 1 - side;
    const batch = new MessageBatch({ bytes: 256 * 1024 });
    let next = 0;
    try {
      while (flow.received < FRAMES) {
        await port.receive(batch, { signal: stop });
        for (const frame of batch) {
          seen[side]!.total++;
          flow.received++;
          const seq = frame.byteLength >= 20 ? Buffer.from(frame).readUInt32BE(16) : -1;
          if (seq < next) flow.duplicates++;
          else if (seq > next) flow.gaps++;
          const problem = checkData(frame, from, next);
          if (problem && flow.problems.length < 5) flow.problems.push(problem);
          next = Math.max(next, seq) + 1;
        }
        const w = wake[from];
        wake[from] = undefined;
        w?.();
      }
    } catch (error) {
      if (!stop.aborted) throw error;
    } finally {
      // A sender waiting for room must see the end too.
      const w = wake[from];
      wake[from] = undefined;
      w?.();
    }
  };

  await Promise.all([send(0), send(1), receive(0), receive(1)]);
  assert.equal(sent, [FRAMES, FRAMES], 'both sides sent everything');
  return flows;
}

async function attachPair(server: boolean) {
  const sockets = [socketPath('a'), socketPath('b')];
  const signal = AbortSignal.timeout(60_000);
  let opening: Promise<VirtioUser[]>;
  let testpmd: Testpmd;
  if (server) {
    // Our front-ends listen; net_vhost (client=1) connects to both.
    opening = Promise.all(sockets.map((s) => VirtioUser.open(s, { server: true, signal })));
    testpmd = Testpmd.start(sockets[0]!, {
      client: true,
      secondSocket: sockets[1]!,
      timeoutSeconds: 90,
    });
  } else {
    testpmd = Testpmd.start(sockets[0]!, { secondSocket: sockets[1]!, timeoutSeconds: 90 });
    for (const s of sockets) await testpmd.waitForSocket(30_000, s);
    opening = Promise.all(sockets.map((s) => VirtioUser.open(s, { signal })));
  }
  let ports: VirtioUser[];
  try {
    ports = await opening;
  } catch (error) {
    throw new Error(`open failed: ${String(error)}\n${testpmd.output}`);
  }
  for (const p of ports) ends.add(p);
  return { ports, testpmd };
}

function registerInterop(server: boolean) {
  const mode = server ? 'our front-ends listen (net_vhost client=1)' : 'net_vhost listens';
  test(`${mode}: A ↔ testpmd port 0 ↔ port 1 ↔ B, ${FRAMES} frames of 60–1514 B each way at once, exact, in order, intact`, async () => {
    const fdsBefore = openFds();
    const { ports, testpmd } = await attachPair(server);
    const seen: Seen[] = [
      { total: 0, probes: 0 },
      { total: 0, probes: 0 },
    ];
    await warmUp(ports, seen, 30_000);
    const flows = await exchange(ports, seen, 60_000);
    for (const side of [0, 1]) {
      const flow = flows[side]!;
      const what = `side ${SIDES[side]} receiving ${SIDES[1 - side]}'s frames`;
      assert.equal(flow.problems, [], `${what}: every frame intact and in order`);
      assert.is(flow.received, FRAMES, `${what}: count (testpmd:\n${testpmd.output.slice(-1500)})`);
      assert.is(flow.duplicates, 0, `${what}: no duplicates`);
      assert.is(flow.gaps, 0, `${what}: no gaps`);
    }
    // Nothing more arrives: neither side got a frame the other did not send.
    const extra = await Promise.all(
      ports.map(async (p) => {
        const signal = AbortSignal.timeout(300);
        try {
          return (await p.receive(new MessageBatch(), { signal })).count;
        } catch (error) {
          if (signal.aborted) return 0;
          throw error;
        }
      }),
    );
    assert.equal(extra, [0, 0], 'no frame after the exchange');
    for (const p of ports) {
      assert.is(p.connections, 1, 'one connection, no reconnect');
      p.close();
      assert.is(await p.closed, undefined);
      ends.delete(p);
    }
    const counts = await testpmd.stop();
    const [port0, port1] = counts.ports;
    assert.ok(port0 && port1, `per-port statistics parsed:\n${testpmd.output.slice(-3000)}`);
    // What port 1 transmitted is exactly what B received, probes included, and vice versa.
    assert.is(port1!.tx, seen[1]!.total, 'port 1 TX = frames B received');
    assert.is(port0!.tx, seen[0]!.total, 'port 0 TX = frames A received');
    // Every frame received on one port was transmitted on the other or dropped there
    // (drops can only be warm-up probes sent while the other port had no front-end).
    assert.is(port0!.rx, port1!.tx + port1!.txDropped, 'port 0 RX = port 1 TX + dropped');
    assert.is(port1!.rx, port0!.tx + port0!.txDropped, 'port 1 RX = port 0 TX + dropped');
    assert.is(counts.rx, port0!.rx + port1!.rx);
    assert.equal(fdsOpenedSince(fdsBefore), [], 'no fd left open');
  });
}

if (requireTestpmd()) {
  registerInterop(false);
  registerInterop(true);
}

test.run();
