import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  type FramePolling,
  type FramePort,
  InPlaceBatch,
  type MessageBatch,
  pooledCopyWantsTurn,
  VringError,
} from '@vring/core';
import type { Reassembler } from '../wire/reassembler.js';
import { HeldFrames } from './held-frames.js';
import { PollBudget } from './poll-budget.js';
import { pollUntil } from './polling.js';
import type { SessionStart } from './session.js';

/** What the reader needs of its link. @internal */
export interface ReaderLink {
  readonly transport: FramePort;
  /** The link has closed: reading stops, and frames left in hand are not delivered. */
  readonly done: boolean;
  /** The owner expects traffic: in `poll` mode the reader then polls on and never sleeps. */
  readonly wanted: boolean;
  /** Has every send call `wake` until called again (undefined stops it). */
  wakeOnSend(wake: (() => void) | undefined): void;
  /** Ends the link: the peer sent something that cannot be read. */
  close(error: VringError): void;
}

const RESOLVED = Promise.resolve();
const NO_AREAS: readonly Buffer[] = [];

/**
 * The receiving half of a {@link Link}: takes frames from the transport, polling an empty
 * ring for a while before it sleeps, and hands them to the reassembler, which delivers the
 * messages. The owner pauses it (for any number of reasons at once) to hold the peer back:
 * the peer then fills the ring and waits. @internal
 */
export class Reader {
  readonly #link: ReaderLink;
  readonly #batch: MessageBatch;
  readonly #reassembler: Reassembler;
  readonly #session: SessionStart;
  #reading = false;
  readonly #pausedBy = new Set<string>();
  /** The pending sleep (one at a time): a send may end the reader's wait before it does. */
  #sleeping: Promise<void> | undefined;
  /** Where frames read in place are listed (made on first use). */
  #lent: InPlaceBatch | undefined;
  /** Frames read in place and not given back yet. */
  #held: HeldFrames | undefined;
  /** The frame being delivered, when it lies in shared memory (-1 otherwise). */
  #current = -1;
  /** How long to poll before sleeping: learnt from how waits ended (made on first read). */
  #budget: PollBudget | undefined;

  constructor(
    link: ReaderLink,
    batch: MessageBatch,
    reassembler: Reassembler,
    session: SessionStart,
  ) {
    this.#link = link;
    this.#batch = batch;
    this.#reassembler = reassembler;
    this.#session = session;
  }

  /** Starts reading, or resumes after `pause(reason)` once no other reason holds it. */
  resume(reason = ''): void {
    this.#pausedBy.delete(reason);
    if (this.#reading || this.#link.done || this.#pausedBy.size > 0) return;
    this.#reading = true;
    // Never inside the caller: a router resuming a member must not have that member's
    // messages routed (and the member paused again) in the middle of its own bookkeeping.
    RESOLVED.then(this.#startReading);
  }

  /**
   * Stops reading, for `reason`, after the batch in hand: the peer then fills the ring and
   * waits. Messages of that batch are still delivered.
   */
  pause(reason = ''): void {
    this.#pausedBy.add(reason);
  }

  readonly #startReading = (): void => {
    void this.#read();
  };

  async #read(): Promise<void> {
    const link = this.#link;
    const transport = link.transport;
    const batch = this.#batch;
    const polling = transport.polling;
    this.#budget ??= new PollBudget(transport);
    const budget = this.#budget;
    // Large frames are read where the peer wrote them when the port lends its memory: each
    // is decoded (its binary values copied out) before the batch is released.
    const lending = polling ? transport.lending : undefined;
    const inPlace = lending ? this.#inPlaceBatch(transport) : undefined;
    const take = inPlace
      ? () => lending!.tryReceiveInPlace(inPlace)
      : () => polling!.tryReceive(batch);
    try {
      while (!link.done && this.#pausedBy.size === 0) {
        if (!polling) {
          await transport.receive(batch);
        } else if (take() > 0) {
          // Frames at once: handled in this turn.
        } else {
          const began = performance.now();
          const pollMs = budget.next();
          if (pollMs > 0 && (await this.#poll(take, pollMs))) {
            budget.ended(performance.now() - began, false);
          } else {
            if (link.done || this.#pausedBy.size > 0) break;
            // A send wakes the reader to poll for the answer only while polls catch answers.
            const byFrames = await this.#sleep(polling, budget.pays && budget.maxMs > 0);
            if (byFrames) budget.ended(performance.now() - began, true);
            continue;
          }
        }
        if (inPlace) {
          this.#held ??= new HeldFrames((n) => lending!.release(n));
          const held = this.#held;
          try {
            if (!this.#deliverInPlace(inPlace, held)) return;
          } finally {
            this.#current = -1;
            held.flush();
            // The batch must not keep the peer's memory mapped while the reader waits.
            inPlace.areas = NO_AREAS;
          }
        } else if (!this.#deliver(batch)) return;
        // Whoever these messages resumed (the caller of a request, a consumer) runs before
        // the ring is checked again: a reply's caller then goes on now, not after a check
        // that most likely finds nothing.
        if (pooledCopyWantsTurn()) {
          // A peer that keeps the ring full would keep the event loop from ever reaching
          // the phase where collected copies give their memory back to the pool.
          await nextTurn();
        } else if (polling) await undefined;
      }
    } catch (error) {
      // A peer that sends garbage is cut off: nothing after a bad frame can be trusted.
      const failure =
        error instanceof VringError
          ? error
          : new VringError('ERR_VRING_PROTOCOL', String(error), { cause: error });
      link.close(failure);
    } finally {
      this.#reading = false;
    }
  }

  /** Hands the frames of `batch` on; false once the link has closed. */
  #deliver(batch: MessageBatch): boolean {
    const link = this.#link;
    const session = this.#session;
    const reassembler = this.#reassembler;
    // By index rather than the batch's iterator: no generator step per frame.
    const { data, lengths } = batch;
    const count = batch.count;
    for (let i = 0, offset = 0; i < count; i++) {
      const start = offset;
      offset += lengths[i]!;
      if (link.done) return false;
      if (!session.synced && !session.begins(data, start, offset)) continue;
      reassembler.push(data, start, offset);
    }
    return true;
  }

  /**
   * {@link Reader.#deliver} for frames that may lie in the peer's memory. Every frame held
   * in place is listed, in order, for as long as the reader or a value needs it.
   */
  #deliverInPlace(batch: InPlaceBatch, held: HeldFrames): boolean {
    const link = this.#link;
    const session = this.#session;
    const reassembler = this.#reassembler;
    const count = batch.count;
    const locations = batch.locations;
    let first = -1;
    for (let i = 0; i < count; i++) {
      if (locations[3 * i]! < 0) continue;
      const seq = held.add();
      if (first < 0) first = seq;
    }
    let seq = first - 1;
    for (let i = 0; i < count; i++) {
      const inPlace = locations[3 * i]! >= 0;
      if (inPlace) seq++;
      this.#current = inPlace ? seq : -1;
      try {
        if (link.done) return false;
        const data = batch.dataOf(i);
        const start = batch.startOf(i);
        const end = batch.endOf(i);
        if (!session.synced && !session.begins(data, start, end)) continue;
        reassembler.push(data, start, end);
      } finally {
        // Give the frame back as soon as it is delivered (unless a value views it): a frame
        // of many small messages takes a while to decode, and holding every frame of the
        // batch until the end kept the sender from refilling the ring meanwhile.
        if (inPlace) {
          held.drop(seq);
          held.flush();
        }
      }
    }
    return true;
  }

  /**
   * Keeps the frame being delivered (during the message callback) in shared memory until
   * the returned function is called: for a value whose binary parts are views of it.
   * Undefined when the frame is not in shared memory (it was copied, or reassembled).
   */
  retainFrame(): (() => void) | undefined {
    const seq = this.#current;
    const held = this.#held;
    if (seq < 0 || !held) return undefined;
    held.retain(seq);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      held.drop(seq);
      held.flush();
    };
  }

  #inPlaceBatch(transport: FramePort): InPlaceBatch {
    this.#lent ??= new InPlaceBatch({
      scratchBytes: Math.max(256 * 1024, transport.maxMessage),
      frames: 1024,
    });
    return this.#lent;
  }

  /**
   * Sleeps until frames arrive, or (when `wakeOnSend`) until the link sends something:
   * whoever sends expects an answer, so the reader goes back to polling, and the reply of a
   * request/response turn is then caught by the poll instead of costing a wakeup. Returns
   * whether the port woke it (false: a send did).
   */
  async #sleep(polling: FramePolling, wakeOnSend: boolean): Promise<boolean> {
    if (!this.#sleeping) {
      const sleeping = polling.waitReceivable().finally(() => {
        if (this.#sleeping === sleeping) this.#sleeping = undefined;
      });
      // A wait left behind when a send woke the reader fails quietly; the next poll reports.
      sleeping.catch(() => {});
      this.#sleeping = sleeping;
    }
    if (!wakeOnSend) {
      await this.#sleeping;
      return true;
    }
    const link = this.#link;
    let bySend = false;
    await Promise.race([
      this.#sleeping,
      new Promise<void>((resolve) => {
        link.wakeOnSend(() => {
          bySend = true;
          resolve();
        });
      }),
    ]);
    link.wakeOnSend(undefined);
    return !bySend;
  }

  /**
   * Polls the ring for up to `ms`. Returns whether the batch got frames; false when the
   * time is up or reading should stop (in `poll` mode, also once the owner expects nothing).
   */
  #poll(take: () => number, ms: number): Promise<boolean> {
    const link = this.#link;
    return pollUntil(
      () => take() > 0,
      ms,
      () => link.done || this.#pausedBy.size > 0 || (ms === Infinity && !link.wanted),
      this.#budget?.contended,
    );
  }
}
