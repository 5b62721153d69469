// Link: the message layer under Channel and the bus, specified by what its owners rely on:
// ordering per lane, pausing, restarting a session, keep-alive, closing and draining.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  DeviceQueuePair,
  DriverQueuePair,
  type FramePort,
  MessageBatch,
  VringError,
} from '@vring/core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InProcessTransport } from '../src/bus/in-process-transport.js';
import { Link, type LinkOptions } from '../src/link/link.js';

type Received = Array<{ kind: number; body: Buffer }>;

/** A sender and a receiver over a real queue pair; the receiver records what it is given. */
function linkedPair(receiverOptions: Partial<LinkOptions> = {}) {
  const driver = DriverQueuePair.create({ notification: 'adaptive' });
  const { descriptor, fds } = driver.share();
  const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'adaptive' });
  const got: Received = [];
  const sender = new Link(driver, { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
  const receiver = new Link(device, {
    maxFrame: 1514,
    maxMessage: 1 << 20,
    onMessage: (kind, data, start, end) =>
      got.push({ kind, body: Buffer.from(data.subarray(start, end)) }),
    ...receiverOptions,
  });
  return {
    sender,
    receiver,
    got,
    close() {
      sender.close();
      receiver.close();
    },
  };
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(1);
  }
}

/**
 * A port that takes frames only while it has room, recording each; the test opens and
 * closes it (a ring the peer empties, or does not). It never has frames to deliver.
 */
class GatedPort implements FramePort {
  readonly maxMessage = 1514;
  readonly notification = 'event';
  readonly peerInThread = false;
  readonly polling = undefined;
  readonly lending = undefined;
  readonly closed: Promise<VringError | undefined>;
  readonly frames: Buffer[] = [];
  room: number;
  #roomWaiters: Array<() => void> = [];
  #close!: (error: VringError | undefined) => void;

  constructor(room = Infinity) {
    this.room = room;
    this.closed = new Promise((resolve) => {
      this.#close = resolve;
    });
  }

  /** Takes up to `frames` more frames (all, by default), waking a sender that waits. */
  open(frames = Infinity): void {
    this.room = frames;
    for (const wake of this.#roomWaiters.splice(0)) wake();
  }

  trySend(batch: MessageBatch, start = 0): number {
    let offset = 0;
    for (let i = 0; i < start; i++) offset += batch.lengths[i]!;
    let i = start;
    for (; i < batch.count && this.room > 0; i++, this.room--) {
      this.frames.push(Buffer.from(batch.data.subarray(offset, offset + batch.lengths[i]!)));
      offset += batch.lengths[i]!;
    }
    return i - start;
  }

  waitSendable(): Promise<void> {
    if (this.room > 0) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  async sendBatch(batch: MessageBatch): Promise<void> {
    for (let start = 0; start < batch.count; await this.waitSendable()) {
      start += this.trySend(batch, start);
    }
  }

  receive(): Promise<MessageBatch> {
    return new Promise(() => {});
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  close(): void {
    this.#close(undefined);
  }
}

test('a large message on one lane does not hold up a small one on another; one lane keeps send order', async () => {
  const { sender, receiver, got, close } = linkedPair();
  receiver.resume();
  // 64 KiB in 1514-byte frames: some 45 frames, more than one turn of the send queue.
  const large = Buffer.alloc(64 * 1024, 1);
  const small = Buffer.from('small');
  await Promise.all([
    sender.send(1, large, undefined, 'a'),
    sender.send(2, small, undefined, 'b'),
    sender.send(3, small, undefined, 'a'),
  ]);
  await until(() => got.length === 3, 'three messages');
  assert.equal(
    got.map((m) => m.kind),
    [2, 1, 3],
    'lane b overtakes the large message; lane a waits for it',
  );
  assert.ok(got[1]!.body.equals(large));
  close();
});

test('resume() never delivers inside the caller: messages waiting in the ring come a turn later', async () => {
  const { sender, receiver, got, close } = linkedPair();
  for (let kind = 1; kind <= 3; kind++) await sender.sendValue(kind, { kind });
  // A router resumes a member in the middle of its own bookkeeping (the bus's hold/release of
  // publishers): routing that member's messages right there would re-enter it.
  receiver.resume();
  assert.equal(got, [], 'nothing delivered during resume()');
  await until(() => got.length === 3, 'three messages');
  assert.equal(
    got.map((m) => m.kind),
    [1, 2, 3],
  );
  close();
});

test('pause() stops reading after the batch in hand; reading resumes once every reason is lifted', async () => {
  const { sender, receiver, got, close } = linkedPair({
    onMessage: (kind) => {
      got.push({ kind, body: Buffer.alloc(0) });
      if (kind === 1) {
        receiver.pause('a');
        receiver.pause('b');
      }
    },
  });
  // All three wait in the ring, so the reader takes them in one batch.
  for (let kind = 1; kind <= 3; kind++) await sender.sendValue(kind, kind);
  receiver.resume();
  await until(() => got.length === 3, 'the batch in hand');
  await sender.sendValue(4, 4);
  await delay(50);
  assert.is(got.length, 3, 'nothing read while paused');
  receiver.resume('a');
  await delay(50);
  assert.is(got.length, 3, 'still paused for the other reason');
  receiver.resume('b');
  await until(() => got.length === 4, 'the message sent while paused');
  assert.equal(
    got.map((m) => m.kind),
    [1, 2, 3, 4],
  );
  close();
});

test('restart(): the preamble goes first, a message half written starts again, and the peer drops what came before its sync kind', async () => {
  const HELLO = 9;
  const port = new GatedPort(4);
  const sender = new Link(port, { maxFrame: 94, maxMessage: 1 << 20, onMessage() {} });
  // 64 body bytes per 94-byte frame: ten frames, of which the ring takes four.
  const body = Buffer.alloc(640);
  for (let i = 0; i < body.length; i++) body[i] = i & 0xff;
  const sent = sender.send(5, body);
  await until(() => port.frames.length === 4, 'the ring to fill');
  const before = port.frames.length;

  // A new peer behind the same transport; the ring drains again.
  sender.restart([{ kind: HELLO, body: Buffer.from('hello') }]);
  port.open();
  await sent;

  // The new peer reads everything written since the restart: first the rest of the batch
  // that was on its way (the old session's), then the new session.
  const [near, far] = InProcessTransport.pair(1514, 256);
  const got: Received = [];
  const peer = new Link(far, {
    maxFrame: 1514,
    maxMessage: 1 << 20,
    syncKind: HELLO,
    onMessage: (kind, data, start, end) =>
      got.push({ kind, body: Buffer.from(data.subarray(start, end)) }),
  });
  peer.resume();
  const batch = new MessageBatch();
  for (const frame of port.frames.slice(before)) batch.push(frame);
  near.trySend(batch);
  await until(() => got.length === 2, 'the new session');
  assert.equal(
    got.map((m) => m.kind),
    [HELLO, 5],
  );
  assert.ok(got[1]!.body.equals(body), 'the message arrives whole, from its first frame');
  assert.not.ok(peer.done, 'the old session’s fragments were dropped, not taken for garbage');
  sender.close();
  peer.close();
});

test('keepAlive(false) lets the process exit while its reader waits; keepAlive(true) keeps it running', async () => {
  // A child process with a link reading an empty ring, in event mode (asleep on the eventfd).
  const child = `
    const { DeviceQueuePair, DriverQueuePair } = await import(process.env.CORE_URL);
    const { Link } = await import(process.env.LINK_URL);
    const driver = DriverQueuePair.create({ notification: 'event' });
    const { descriptor, fds } = driver.share();
    const device = DeviceQueuePair.attach(descriptor, fds, { notification: 'event' });
    const link = new Link(device, { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
    link.keepAlive(process.env.WANTED === 'true');
    link.resume();
    console.log('reading');
  `;
  const env = {
    ...process.env,
    CORE_URL: import.meta.resolve('@vring/core'),
    LINK_URL: new URL('../src/link/link.ts', import.meta.url).href,
  };
  /** Whether the child exits by itself within two seconds of starting to read. */
  async function exitsAlone(wanted: boolean): Promise<boolean> {
    const proc = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '--eval', child],
      { env: { ...env, WANTED: String(wanted) }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = once(proc, 'exit');
    const [line] = (await once(proc.stdout!, 'data')) as [Buffer];
    assert.is(line.toString().trim(), 'reading');
    const outcome = await Promise.race([exited.then(() => 'exited'), delay(2000)]);
    if (outcome === 'exited') {
      assert.is(proc.exitCode, 0);
      return true;
    }
    proc.kill('SIGKILL');
    await exited;
    return false;
  }
  assert.ok(await exitsAlone(false), 'nobody expects traffic: the process exits');
  assert.not.ok(await exitsAlone(true), 'the owner expects traffic: the reader holds it');
});

test('after close, sends reject with the closing error and posts are dropped', async () => {
  const port = new GatedPort(0);
  const link = new Link(port, { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
  const queued = link.send(1, Buffer.from('queued')).catch((error: unknown) => error);
  const failure = new VringError('ERR_VRING_PROTOCOL', 'the peer sent garbage');
  link.close(failure);
  assert.is(await queued, failure, 'a message still queued fails with it');
  assert.is(await link.send(1, Buffer.from('late')).catch((error: unknown) => error), failure);
  assert.is(await link.sendValue(1, 'late').catch((error: unknown) => error), failure);
  assert.not.throws(() => link.post(1, Buffer.from('late')));
  assert.is(await link.closed, failure);

  const plain = new Link(new GatedPort(), { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
  plain.close();
  const error = (await plain.send(1, Buffer.from('late')).catch((e: unknown) => e)) as VringError;
  assert.is(error.code, 'ERR_VRING_CLOSED');
  assert.is(await plain.closed, undefined, 'a plain close is no failure');
});

test('drain() resolves once everything queued is in the ring, at once when nothing is', async () => {
  const port = new GatedPort(0);
  const link = new Link(port, { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
  let drained = false;
  await link.drain();
  for (let kind = 1; kind <= 3; kind++) link.post(kind, Buffer.from('queued'));
  const draining = link.drain().then(() => {
    drained = true;
  });
  await delay(20);
  assert.not.ok(drained, 'the ring has no room: nothing is in it yet');
  port.open();
  await draining;
  assert.ok(port.frames.length > 0, 'the messages are in the ring');
  assert.is(link.queued, 0);

  // A link that closes with messages queued ends the wait too: they will never get there.
  const stuck = new Link(new GatedPort(0), { maxFrame: 1514, maxMessage: 1 << 20, onMessage() {} });
  stuck.post(1, Buffer.from('never'));
  const waiting = stuck.drain();
  stuck.close();
  await waiting;
});

test('a turn of sends to a peer in this thread leaves as one frame: nothing is written ahead', async () => {
  const [near, far] = InProcessTransport.pair(9216, 256);
  const link = new Link(near, { maxFrame: 9216, maxMessage: 1 << 20, onMessage() {} });
  const sent = [1, 2, 3].map((kind) => link.sendValue(kind, { kind }));
  await Promise.all(sent);
  const batch = new MessageBatch();
  await far.receive(batch);
  // Written through, the first would have gone alone (two frames); the peer would read it
  // alone in a microtask and route it alone.
  assert.is(batch.count, 1);
  link.close();
});

test.run();
