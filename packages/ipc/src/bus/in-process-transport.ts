import { type FramePort, type MessageBatch, VringError, WaiterQueue } from '@vring/core';
import { Fifo } from '../fifo.js';

/**
 * One end of a connection between a bus and a client in the same process: frames are handed
 * over in memory, as a queue pair would carry them between processes, with the same
 * bounded capacity (a full peer holds the sender back). No rings, no eventfds, no native
 * calls: a process that hosts a bus reaches it in microtasks, not through its own rings
 * (whose reader and writer would share one thread and wait on each other). @internal
 */
export class InProcessTransport implements FramePort {
  readonly closed: Promise<VringError | undefined>;
  /**
   * A message written through alone would be routed alone: the bus reads it in a microtask,
   * before the rest of the sender's turn arrives, and every subscriber's ring then takes two
   * sends (and possibly two wakeups) where one does.
   */
  readonly peerInThread = true;
  /**
   * Not pollable: a send in this thread fills the peer's inbox synchronously, so polling could
   * only find what waiting in {@link InProcessTransport.receive} finds.
   */
  readonly polling = undefined;
  /** Frames are handed over in memory already: nothing to lend. */
  readonly lending = undefined;
  /** Frames are handed over in memory: nothing spins and nothing sleeps on an eventfd. */
  readonly notification = 'event';
  #peer!: InProcessTransport;
  /** Frames the peer sent, not yet received. */
  readonly #inbox = new Fifo<Buffer>();
  /** Receivers waiting for frames in this end's inbox. */
  readonly #receivable = new WaiterQueue<void>();
  /** Senders waiting for room in the peer's inbox. */
  readonly #sendable = new WaiterQueue<void>();
  #failure: VringError | undefined;
  #done = false;
  #resolveClosed!: (error: VringError | undefined) => void;

  /** Two connected ends; each takes frames of up to `maxMessage` bytes, `capacity` at a time. */
  static pair(maxMessage: number, capacity: number): [InProcessTransport, InProcessTransport] {
    const a = new InProcessTransport(maxMessage, capacity);
    const b = new InProcessTransport(maxMessage, capacity);
    a.#peer = b;
    b.#peer = a;
    return [a, b];
  }

  private constructor(
    readonly maxMessage: number,
    readonly capacity: number,
  ) {
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  /** Whether the peer is still there. */
  get connected(): boolean {
    return !this.#done;
  }

  trySend(batch: MessageBatch, start = 0): number {
    this.#check();
    const peer = this.#peer;
    let offset = 0;
    for (let i = 0; i < start; i++) offset += batch.lengths[i]!;
    let i = start;
    for (; i < batch.count && peer.#inbox.length < peer.capacity; i++) {
      const length = batch.lengths[i]!;
      if (length > peer.maxMessage) {
        throw new VringError(
          'ERR_VRING_OVERSIZED_MESSAGE',
          `frame of ${length} bytes exceeds maxMessage ${peer.maxMessage}`,
        );
      }
      // A copy: the batch is the sender's to refill at once.
      peer.#inbox.push(Buffer.from(batch.data.subarray(offset, offset + length)));
      offset += length;
    }
    if (i > start) wake(peer.#receivable);
    return i - start;
  }

  async sendBatch(batch: MessageBatch): Promise<void> {
    let start = 0;
    for (;;) {
      start += this.trySend(batch, start);
      if (start === batch.count) return;
      await this.waitSendable();
    }
  }

  #tryReceive(batch: MessageBatch): number {
    this.#check();
    batch.clear();
    const inbox = this.#inbox;
    let n = 0;
    while (inbox.length > 0 && batch.push(inbox.peek()!)) {
      inbox.shift();
      n++;
    }
    if (n > 0) wake(this.#peer.#sendable);
    return n;
  }

  async receive(batch: MessageBatch): Promise<MessageBatch> {
    while (this.#tryReceive(batch) === 0) await this.#waitReceivable();
    return batch;
  }

  #waitReceivable(): Promise<void> {
    if (this.#done) return Promise.reject(this.#closedError());
    if (this.#inbox.length > 0) return Promise.resolve();
    return this.#receivable.wait();
  }

  waitSendable(): Promise<void> {
    if (this.#done) return Promise.reject(this.#closedError());
    if (this.#peer.#inbox.length < this.#peer.capacity) return Promise.resolve();
    return this.#sendable.wait();
  }

  /** Nothing to keep alive: the other end is in this process, and so is whoever waits. */
  ref(): this {
    return this;
  }

  /** See {@link InProcessTransport.ref}. */
  unref(): this {
    return this;
  }

  /** Closes this end; the peer fails with `ERR_VRING_PEER_DISCONNECTED`. */
  close(): void {
    this.#finish(undefined);
    this.#peer.#finish(new VringError('ERR_VRING_PEER_DISCONNECTED', 'the peer went away'));
  }

  #check(): void {
    if (this.#done) throw this.#closedError();
  }

  #closedError(): VringError {
    return this.#failure ?? new VringError('ERR_VRING_CLOSED', 'connection is closed');
  }

  #finish(error: VringError | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.#failure = error;
    this.#inbox.clear();
    const reason = this.#closedError();
    this.#receivable.rejectAll(reason);
    this.#sendable.rejectAll(reason);
    this.#resolveClosed(error);
  }
}

/** Wakes everyone waiting on `waiters` (checked first: resolving none still swaps arrays). */
function wake(waiters: WaiterQueue<void>): void {
  if (waiters.size > 0) waiters.resolveAll();
}
