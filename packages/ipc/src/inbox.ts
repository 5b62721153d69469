import { type VringError, WaiterQueue } from '@vring/core';
import { Fifo } from './fifo.js';

/** Options of an {@link Inbox}. @internal */
export interface InboxOptions {
  /** Values held before the inbox is full. */
  highWaterMark: number;
  /** Bytes held before the inbox is full, whatever the count (default: no limit). */
  highWaterBytes?: number;
  /**
   * What a full inbox does (default `block`): `block` tells its owner to stop feeding it
   * (see `onFull`); `drop` discards new values and counts them in {@link Inbox.dropped}.
   */
  policy?: 'block' | 'drop';
  /**
   * `block` policy: the inbox is full (`true`), or has room again (`false`). Room means half
   * the limits, not just under them: the owner resumes once per many values, not per value.
   */
  onFull?(full: boolean): void;
  /** Whether a consumer waits (a pending `next()`, an attached observer) has changed. */
  onDemand?(): void;
}

/** A consumer that takes every value it is given as it comes (an Observable's subscriber). */
export interface InboxObserver<T> {
  readonly closed: boolean;
  next(value: T): void;
  error(error: unknown): void;
  complete(): void;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/**
 * Values on their way from a producer (a link's reader) to consumers, in order. A value goes
 * straight to a consumer that waits for one (a pending {@link Inbox.next}, first; else the
 * attached observers, in turns), and is held otherwise until taken, within the limits of its
 * policy. Once ended, the values held are still taken; after them `next()`
 * reports the end: done, or the error it ended with. @internal
 */
export class Inbox<T> {
  readonly #options: InboxOptions;
  readonly #highWaterBytes: number;
  readonly #values = new Fifo<T>();
  /** Byte size of each value held, kept only under a byte limit. */
  readonly #sizes: Fifo<number> | undefined;
  #bytes = 0;
  readonly #waiters = new WaiterQueue<IteratorResult<T, undefined>>(() => this.#demandChanged());
  #observers: Array<InboxObserver<T>> = [];
  #demand = false;
  #full = false;
  #dropped = 0;
  /** null while open; then undefined (ended) or the error it ended with. */
  #ended: VringError | undefined | null = null;

  constructor(options: InboxOptions) {
    this.#options = options;
    this.#highWaterBytes = options.highWaterBytes ?? Infinity;
    this.#sizes = options.highWaterBytes === undefined ? undefined : new Fifo<number>();
  }

  /** Values held, waiting to be taken. */
  get length(): number {
    return this.#values.length;
  }

  /** Values the `drop` policy discarded. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Consumers waiting for a value: pending `next()` calls and attached observers. */
  get consumers(): number {
    return this.#waiters.size + this.#observers.length;
  }

  /** Whether the inbox has ended (values held may still be taken). */
  get ended(): boolean {
    return this.#ended !== null;
  }

  /**
   * Takes `value` (of `bytes`, counted against `highWaterBytes`); ignored once ended. Returns
   * whether it was taken: false once ended, or when the `drop` policy discarded it.
   */
  push(value: T, bytes = 0): boolean {
    if (this.#ended !== null) return false;
    if (this.#waiters.size > 0) {
      this.#waiters.resolveOne({ done: false, value });
      return true;
    }
    const observers = this.#observers;
    if (observers.length > 0) {
      const observer = observers[0]!;
      // Observers take turns: the one served goes to the back of the line.
      if (observers.length > 1) observers.push(observers.shift()!);
      observer.next(value);
      return true;
    }
    const policy = this.#options.policy;
    if (policy === 'drop' && this.#atLimit(1)) {
      this.#dropped++;
      return false;
    }
    this.#values.push(value);
    if (this.#sizes) {
      this.#sizes.push(bytes);
      this.#bytes += bytes;
    }
    if (policy !== 'drop' && !this.#full && this.#atLimit(1)) {
      this.#full = true;
      this.#options.onFull?.(true);
    }
    return true;
  }

  /** Takes the oldest value held. Check `length` first: a value may itself be undefined. */
  take(): T {
    const value = this.#values.shift();
    if (this.#sizes) this.#bytes -= this.#sizes.shift();
    if (this.#full && !this.#atLimit(2)) {
      this.#full = false;
      this.#options.onFull?.(false);
    }
    return value;
  }

  /**
   * The next value: one held, else the next to arrive, else the end. Aborting the wait
   * rejects it with the signal's reason and takes nothing.
   */
  next(signal?: AbortSignal): Promise<IteratorResult<T, undefined>> {
    // An aborted wait takes nothing: a value handed to it would be lost.
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#values.length > 0) return Promise.resolve({ done: false, value: this.take() });
    if (this.#ended !== null) {
      return this.#ended ? Promise.reject(this.#ended) : Promise.resolve(DONE);
    }
    return this.#waiters.wait(signal);
  }

  /**
   * Hands `observer` the values held, then each value as it arrives (in turns with other
   * observers), until it closes, is detached, or the inbox ends (then it completes, or
   * errors with the inbox's error). Returns what detaches it, unless it is already done.
   */
  attach(observer: InboxObserver<T>): (() => void) | undefined {
    while (this.#values.length > 0 && !observer.closed) observer.next(this.take());
    if (observer.closed) return undefined;
    if (this.#ended !== null) {
      if (this.#ended) observer.error(this.#ended);
      else observer.complete();
      return undefined;
    }
    this.#observers.push(observer);
    this.#demandChanged();
    return () => {
      const i = this.#observers.indexOf(observer);
      if (i === -1) return;
      this.#observers.splice(i, 1);
      this.#demandChanged();
    };
  }

  /**
   * Ends the inbox: consumers waiting get the end (done, or `error`), later values are
   * ignored, and a full inbox stops holding its owner back.
   */
  end(error: VringError | undefined): void {
    if (this.#ended !== null) return;
    this.#ended = error;
    if (this.#full) {
      this.#full = false;
      this.#options.onFull?.(false);
    }
    if (error) this.#waiters.rejectAll(error);
    else this.#waiters.resolveAll(DONE);
    const observers = this.#observers;
    this.#observers = [];
    for (const o of observers) {
      if (error) o.error(error);
      else o.complete();
    }
    this.#demandChanged();
  }

  #atLimit(divisor: number): boolean {
    return (
      this.#values.length * divisor >= this.#options.highWaterMark ||
      this.#bytes * divisor >= this.#highWaterBytes
    );
  }

  #demandChanged(): void {
    const demand = this.#waiters.size > 0 || this.#observers.length > 0;
    if (demand === this.#demand) return;
    this.#demand = demand;
    this.#options.onDemand?.();
  }
}
