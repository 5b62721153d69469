import { VringError } from '@vring/core';
import { Observable } from 'rxjs';
import { Fifo } from '../fifo.js';
import type { MessageHeaders } from '../wire/headers.js';
import { ReplyStatus } from '../wire/message-kinds.js';
import { fromWireError } from './remote-error.js';

/** Options of {@link BusClient.requestMany}. */
export interface RequestManyOptions {
  /** Replies to collect before the request ends (default: no limit). */
  maxReplies?: number;
  /**
   * Milliseconds the whole request may take (default 10 000; `Infinity` for no limit). When
   * it passes, the replies end normally: this is a collection window, not a failure.
   */
  timeout?: number;
  /**
   * Milliseconds to wait for another reply after the last one (default: no limit). Before
   * the first reply only `timeout` applies.
   */
  stall?: number;
  /** Aborting ends the replies with `ERR_VRING_ABORTED` and cancels the responders' work. */
  signal?: AbortSignal;
  /** Headers sent with the request to every responder (see `RequestOptions.headers`). */
  headers?: MessageHeaders;
}

/**
 * Where a request's replies go: `reply` takes one (and says whether the request is over),
 * `fail` ends it with an error. @internal
 */
export interface ReplySink {
  reply(status: number, value: unknown): boolean;
  fail(error: VringError): void;
}

/** Sends a request whose replies go to `sink`; returns what cancels it. @internal */
export type StartRequest = (sink: ReplySink, signal: AbortSignal | undefined) => () => void;

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The replies of {@link BusClient.requestMany}: an RxJS Observable (`pipe`, `subscribe`) that
 * is also an AsyncIterable (`for await`). Each subscription or iteration sends the request
 * anew. The replies end, normally, once `maxReplies` have come, the `timeout` or the `stall`
 * passed, or every responder has answered; unsubscribing or leaving the loop ends them
 * early. Either way, responders still at work are told to stop.
 *
 * They fail with `ERR_VRING_NO_RESPONDERS` at once when nobody serves the name, with a
 * responder's own error when one fails (the replies before it were delivered), with
 * `ERR_VRING_ABORTED` on the signal, and with `ERR_VRING_PEER_DISCONNECTED` when the bus goes.
 */
export type Replies<R> = Observable<R> & AsyncIterable<R>;

/** Makes the {@link Replies} of the request that `start` sends. @internal */
export function replies<R>(start: StartRequest, options: RequestManyOptions): Replies<R> {
  const source = new Observable<R>((subscriber) => {
    const { maxReplies = Infinity, timeout = DEFAULT_TIMEOUT_MS, stall, signal } = options;
    const invalid = checkOptions(maxReplies, timeout, stall);
    if (invalid) {
      subscriber.error(invalid);
      return;
    }
    let count = 0;
    let stallTimer: NodeJS.Timeout | undefined;
    let stop = () => {};
    // Timers never keep the process alive: the link does while the request is out.
    const timeoutTimer = Number.isFinite(timeout)
      ? setTimeout(() => end(), timeout).unref()
      : undefined;
    const clearTimers = () => {
      clearTimeout(timeoutTimer);
      clearTimeout(stallTimer);
    };
    const end = () => {
      clearTimers();
      stop();
      subscriber.complete();
    };
    stop = start(
      {
        reply: (status, value) => {
          if (subscriber.closed) return true;
          if (status === ReplyStatus.END) {
            clearTimers();
            subscriber.complete();
            return true;
          }
          if (status === ReplyStatus.ERROR) {
            clearTimers();
            subscriber.error(fromWireError(value));
            return true;
          }
          count++;
          subscriber.next(value as R);
          if (subscriber.closed) return true;
          if (count >= maxReplies) {
            end();
            return true;
          }
          if (stall !== undefined) {
            clearTimeout(stallTimer);
            stallTimer = setTimeout(() => end(), stall).unref();
          }
          return false;
        },
        fail: (error) => {
          clearTimers();
          subscriber.error(error);
        },
      },
      signal,
    );
    return () => {
      clearTimers();
      stop();
    };
  });
  return Object.assign(source, {
    [Symbol.asyncIterator]: () => iterate(source),
  });
}

/** The values of `source` one by one; leaving the loop early unsubscribes. */
function iterate<R>(source: Observable<R>): AsyncIterator<R, undefined> {
  const queued = new Fifo<R>();
  let over = false;
  let failure: unknown;
  let waiter:
    | { resolve: (r: IteratorResult<R, undefined>) => void; reject: (e: unknown) => void }
    | undefined;
  const settle = () => {
    const w = waiter;
    if (!w) return;
    waiter = undefined;
    if (queued.length > 0) w.resolve({ value: queued.shift(), done: false });
    else if (failure !== undefined) w.reject(failure);
    else w.resolve({ value: undefined, done: true });
  };
  const subscription = source.subscribe({
    next: (value) => {
      queued.push(value);
      settle();
    },
    error: (error: unknown) => {
      over = true;
      failure = error;
      settle();
    },
    complete: () => {
      over = true;
      settle();
    },
  });
  return {
    next: () => {
      if (queued.length > 0) return Promise.resolve({ value: queued.shift(), done: false });
      if (failure !== undefined) {
        const error = failure;
        failure = undefined; // reported once; then the iterator is done
        return Promise.reject(error);
      }
      if (over) return Promise.resolve({ value: undefined, done: true });
      if (waiter) {
        return Promise.reject(
          new VringError('ERR_VRING_INVALID_ARGUMENT', 'wait for one reply before the next'),
        );
      }
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    return: () => {
      over = true;
      queued.clear();
      subscription.unsubscribe();
      return Promise.resolve({ value: undefined, done: true });
    },
  };
}

function checkOptions(
  maxReplies: number,
  timeout: number,
  stall: number | undefined,
): VringError | undefined {
  if (maxReplies !== Infinity && (!Number.isSafeInteger(maxReplies) || maxReplies < 1)) {
    return new VringError('ERR_VRING_INVALID_ARGUMENT', 'maxReplies must be a positive integer');
  }
  if (!(timeout > 0)) {
    return new VringError('ERR_VRING_INVALID_ARGUMENT', 'timeout must be a positive number');
  }
  if (stall !== undefined && !(stall > 0 && Number.isFinite(stall))) {
    return new VringError('ERR_VRING_INVALID_ARGUMENT', 'stall must be a positive number');
  }
  return undefined;
}
