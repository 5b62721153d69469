import { VringError } from '@vring/core';
import { Observable } from 'rxjs';

/** One message delivered to a subscription. */
export interface BusMessage<T = unknown> {
  /** The topic it was published on (a subscription to a pattern sees many). */
  topic: string;
  value: T;
}

/**
 * What a subscription does when its queue is full: `block` stops taking messages, so the
 * bus holds back the publishers (nothing is lost); `drop` discards new messages and counts
 * them in {@link Subscription.dropped}.
 */
export type BackpressurePolicy = 'block' | 'drop';

/** Options of {@link BusClient.subscribe}. */
export interface SubscribeOptions {
  /** See {@link BackpressurePolicy} (default `block`). */
  policy?: BackpressurePolicy;
  /** Messages queued for this subscription before the policy applies (default 1024). */
  highWaterMark?: number;
  /** Bytes queued before the policy applies, whatever the count (default 64 MiB). */
  highWaterBytes?: number;
  /** Aborting unsubscribes. */
  signal?: AbortSignal;
}

/** How a subscription talks to the connection that owns it. @internal */
export interface SubscriptionOwner {
  /** The subscription's queue is full (`true`) or has room again (`false`): block policy. */
  setFull(subscription: Subscription<unknown>, full: boolean): void;
  /** Whether a consumer is waiting changed: the connection keeps the process alive for it. */
  waitingChanged(): void;
  unsubscribe(subscription: Subscription<unknown>): void;
}

interface Waiter<T> {
  resolve(result: IteratorResult<BusMessage<T>, undefined>): void;
  reject(error: unknown): void;
}

/**
 * Messages published on the topics that match a pattern, in publish order per publisher
 * and topic. Iterate it (`for await`), or turn it into an Observable with
 * {@link Subscription.observe}. Unsubscribing (or leaving the loop, or disposing) tells the
 * bus to stop sending.
 */
export class Subscription<T = unknown>
  implements AsyncIterable<BusMessage<T>>, AsyncIterator<BusMessage<T>, undefined>, AsyncDisposable
{
  /** The pattern subscribed to. */
  readonly pattern: string;
  /** The backpressure policy. */
  readonly policy: BackpressurePolicy;
  /** @internal */
  readonly id: number;
  readonly #owner: SubscriptionOwner;
  readonly #highWaterMark: number;
  readonly #highWaterBytes: number;
  #queue: Array<BusMessage<T>> = [];
  #sizes: number[] = [];
  #head = 0;
  #bytes = 0;
  #full = false;
  #dropped = 0;
  #waiter: Waiter<T> | undefined;
  #ended: VringError | undefined | null = null;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: (() => void) | undefined;

  /** @internal */
  constructor(id: number, pattern: string, options: SubscribeOptions, owner: SubscriptionOwner) {
    const policy = options.policy ?? 'block';
    if (policy !== 'block' && policy !== 'drop') {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', `unknown policy ${String(policy)}`);
    }
    this.#highWaterMark = positive(options.highWaterMark, 1024, 'highWaterMark');
    this.#highWaterBytes = positive(options.highWaterBytes, 64 * 1024 * 1024, 'highWaterBytes');
    this.id = id;
    this.pattern = pattern;
    this.policy = policy;
    this.#owner = owner;
    this.#signal = options.signal;
    if (this.#signal) {
      this.#onAbort = () => this.unsubscribe();
      this.#signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Messages discarded by the `drop` policy (here and at the bus) so far. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Messages waiting to be taken. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }

  /** Whether a consumer waits for the next message. @internal */
  get waiting(): boolean {
    return this.#waiter !== undefined;
  }

  /** Whether the subscription still receives. */
  get active(): boolean {
    return this.#ended === null;
  }

  /** The next message; `done` once unsubscribed (or the connection closed). */
  next(): Promise<IteratorResult<BusMessage<T>, undefined>> {
    if (this.#head < this.#queue.length)
      return Promise.resolve({ done: false, value: this.#take() });
    if (this.#ended !== null) {
      return this.#ended
        ? Promise.reject(this.#ended)
        : Promise.resolve({ done: true, value: undefined });
    }
    if (this.#waiter) {
      return Promise.reject(
        new VringError('ERR_VRING_INVALID_ARGUMENT', 'a subscription has one consumer at a time'),
      );
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#owner.waitingChanged();
    });
  }

  /** Leaving a `for await` loop unsubscribes. */
  async return(): Promise<IteratorResult<BusMessage<T>, undefined>> {
    this.unsubscribe();
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * The messages as an Observable. It takes them from this subscription (one consumer at a
   * time); unsubscribing from the Observable unsubscribes from the bus.
   */
  observe(): Observable<BusMessage<T>> {
    return new Observable<BusMessage<T>>((subscriber) => {
      void (async () => {
        for (;;) {
          let result: IteratorResult<BusMessage<T>, undefined>;
          try {
            result = await this.next();
          } catch (error) {
            subscriber.error(error);
            return;
          }
          if (result.done) {
            subscriber.complete();
            return;
          }
          // The Observable's consumer runs synchronously here, so a slow one slows the
          // loop: the block policy still holds.
          subscriber.next(result.value);
          if (subscriber.closed) return;
        }
      })();
      return () => this.unsubscribe();
    });
  }

  /** Stops the subscription here and at the bus. Messages already queued are still yielded. */
  unsubscribe(): void {
    if (this.#ended !== null) return;
    this.#owner.unsubscribe(this as Subscription<unknown>);
    this.end(undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.unsubscribe();
  }

  /** Takes a delivered message. @internal */
  push(message: BusMessage<T>, bytes: number): void {
    if (this.#ended !== null) return;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      this.#owner.waitingChanged();
      waiter.resolve({ done: false, value: message });
      return;
    }
    if (this.policy === 'drop' && this.#atLimit()) {
      this.#dropped++;
      return;
    }
    this.#queue.push(message);
    this.#sizes.push(bytes);
    this.#bytes += bytes;
    if (this.policy === 'block' && !this.#full && this.#atLimit()) {
      this.#full = true;
      this.#owner.setFull(this as Subscription<unknown>, true);
    }
  }

  /** Counts messages the bus dropped for this subscription. @internal */
  addDropped(count: number): void {
    this.#dropped += count;
  }

  /** Ends the subscription: with an error, pending and later `next()` calls reject. @internal */
  end(error: VringError | undefined): void {
    if (this.#ended !== null) return;
    this.#ended = error;
    if (this.#signal && this.#onAbort) this.#signal.removeEventListener('abort', this.#onAbort);
    if (this.#full) {
      this.#full = false;
      this.#owner.setFull(this as Subscription<unknown>, false);
    }
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter) {
      this.#owner.waitingChanged();
      if (error) waiter.reject(error);
      else waiter.resolve({ done: true, value: undefined });
    }
  }

  #atLimit(divisor = 1): boolean {
    return (
      (this.#queue.length - this.#head) * divisor >= this.#highWaterMark ||
      this.#bytes * divisor >= this.#highWaterBytes
    );
  }

  #take(): BusMessage<T> {
    const message = this.#queue[this.#head]!;
    this.#bytes -= this.#sizes[this.#head]!;
    this.#head++;
    // Compact now and then rather than shift() per message.
    if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
    // Resume at half the limit, not just under it: one resume per many messages.
    if (this.#full && !this.#atLimit(2)) {
      this.#full = false;
      this.#owner.setFull(this as Subscription<unknown>, false);
    }
    return message;
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${name} must be a positive integer`);
  }
  return value;
}
