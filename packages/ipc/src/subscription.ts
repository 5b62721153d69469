import { VringError } from '@vring/core';
import { Observable } from 'rxjs';
import { Inbox } from './inbox.js';
import type { MessageHeaders } from './wire/headers.js';

/** One message delivered to a subscription. */
export interface BusMessage<T = unknown> {
  /** The topic it was published on (a subscription to a pattern sees many). */
  topic: string;
  /** The published value, as msgpack decoded it. */
  value: T;
  /** The headers it was published with; absent when it had none. */
  headers?: MessageHeaders;
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
  /**
   * Joins the queue group of this name (and this pattern): each message on a matching topic
   * goes to one member of the group, taken in turn, skipping members whose queue at the bus
   * is full. Plain subscriptions and other groups still get their own copy. Same syntax as a
   * topic (`workers`).
   */
  queue?: string;
}

/** How a subscription talks to the connection that owns it. @internal */
export interface SubscriptionOwner {
  /** The subscription's queue is full (`true`) or has room again (`false`): block policy. */
  setFull(subscription: Subscription<unknown>, full: boolean): void;
  /** Whether a consumer is waiting changed: the connection keeps the process alive for it. */
  waitingChanged(): void;
  unsubscribe(subscription: Subscription<unknown>): void;
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
  /** The queue group joined, if any (see {@link SubscribeOptions.queue}). */
  readonly queue: string | undefined;
  /** @internal */
  readonly id: number;
  readonly #owner: SubscriptionOwner;
  readonly #inbox: Inbox<BusMessage<T>>;
  /** Messages the bus dropped for this subscription (those dropped here are the inbox's). */
  #droppedAtBus = 0;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: (() => void) | undefined;

  /** @internal */
  constructor(id: number, pattern: string, options: SubscribeOptions, owner: SubscriptionOwner) {
    const policy = options.policy ?? 'block';
    if (policy !== 'block' && policy !== 'drop') {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', `unknown policy ${String(policy)}`);
    }
    this.#inbox = new Inbox<BusMessage<T>>({
      highWaterMark: positive(options.highWaterMark, 1024, 'highWaterMark'),
      highWaterBytes: positive(options.highWaterBytes, 64 * 1024 * 1024, 'highWaterBytes'),
      policy,
      onFull: (full) => owner.setFull(this as Subscription<unknown>, full),
      onDemand: () => owner.waitingChanged(),
    });
    this.id = id;
    this.pattern = pattern;
    this.policy = policy;
    this.queue = options.queue;
    this.#owner = owner;
    this.#signal = options.signal;
    // Not a wait: the signal bounds the subscription's life, whoever is consuming it.
    if (this.#signal) {
      this.#onAbort = () => this.unsubscribe();
      this.#signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Messages discarded by the `drop` policy (here and at the bus) so far. */
  get dropped(): number {
    return this.#droppedAtBus + this.#inbox.dropped;
  }

  /** Messages waiting to be taken. */
  get pending(): number {
    return this.#inbox.length;
  }

  /** Whether a consumer waits for the next message. @internal */
  get waiting(): boolean {
    return this.#inbox.consumers > 0;
  }

  /** Whether the subscription still receives. */
  get active(): boolean {
    return !this.#inbox.ended;
  }

  /**
   * The next message; `done` once unsubscribed (or the connection closed), after the
   * messages that had arrived.
   */
  next(): Promise<IteratorResult<BusMessage<T>, undefined>> {
    const inbox = this.#inbox;
    if (inbox.length === 0 && !inbox.ended && inbox.consumers > 0) {
      return Promise.reject(oneConsumer());
    }
    return inbox.next();
  }

  /** Leaving a `for await` loop unsubscribes. */
  async return(): Promise<IteratorResult<BusMessage<T>, undefined>> {
    this.unsubscribe();
    return { done: true, value: undefined };
  }

  /** The subscription is its own iterator: `for await (const { topic, value } of sub)`. */
  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * The messages as an Observable. It takes them from this subscription (one consumer at a
   * time); unsubscribing from the Observable unsubscribes from the bus. Messages are handed
   * over as they are read, no promise each: an observer that takes its time holds the
   * reader, and with it the publishers (`block`), or has messages dropped (`drop`).
   */
  observe(): Observable<BusMessage<T>> {
    return new Observable<BusMessage<T>>((subscriber) => {
      if (this.#inbox.consumers > 0) {
        subscriber.error(oneConsumer());
        return;
      }
      const detach = this.#inbox.attach(subscriber);
      return () => {
        detach?.();
        this.unsubscribe();
      };
    });
  }

  /** Stops the subscription here and at the bus. Messages already queued are still yielded. */
  unsubscribe(): void {
    if (this.#inbox.ended) return;
    this.#owner.unsubscribe(this as Subscription<unknown>);
    this.end(undefined);
  }

  /** Same as {@link Subscription.unsubscribe}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.unsubscribe();
  }

  /** Takes a delivered message; returns false when it was not kept (dropped, or ended). @internal */
  push(message: BusMessage<T>, bytes: number): boolean {
    return this.#inbox.push(message, bytes);
  }

  /** Counts messages the bus dropped for this subscription. @internal */
  addDropped(count: number): void {
    this.#droppedAtBus += count;
  }

  /** Ends the subscription: with an error, pending and later `next()` calls reject. @internal */
  end(error: VringError | undefined): void {
    if (this.#inbox.ended) return;
    if (this.#signal && this.#onAbort) this.#signal.removeEventListener('abort', this.#onAbort);
    this.#inbox.end(error);
  }
}

function oneConsumer(): VringError {
  return new VringError('ERR_VRING_INVALID_ARGUMENT', 'a subscription has one consumer at a time');
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${name} must be a positive integer`);
  }
  return value;
}
