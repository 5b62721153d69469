import { VringError } from '@vring/core';
import { Observable } from 'rxjs';
import type { Link } from '../link.js';
import type { MessageCodec } from '../message-codec.js';
import { checkTopic } from '../topic.js';
import { Kind, ReplyStatus } from '../wire/message-kinds.js';
import { type Deadline, Deadlines } from './deadlines.js';
import { fromWireError } from './remote-error.js';

/** Options of a request. */
export interface RequestOptions {
  /**
   * Milliseconds to wait for the reply (default 10 000; `Infinity` waits for ever). A
   * request that times out rejects with `ERR_VRING_TIMEOUT` and the responder is told to
   * stop.
   */
  timeout?: number;
  /** Aborting rejects the request with `ERR_VRING_ABORTED` and tells the responder to stop. */
  signal?: AbortSignal;
}

interface Pending {
  /** Takes one reply; returns whether the request is over. */
  reply(status: number, value: unknown): boolean;
  fail(error: VringError): void;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * One 'abort' listener per signal, however many requests share it: a signal passed to
 * thousands of requests would otherwise trip Node's MaxListenersExceededWarning.
 */
const abortWatchers = new WeakMap<AbortSignal, Set<() => void>>();

function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let callbacks = abortWatchers.get(signal);
  if (!callbacks) {
    const set = new Set<() => void>();
    callbacks = set;
    abortWatchers.set(signal, set);
    signal.addEventListener(
      'abort',
      () => {
        for (const c of [...set]) c();
        set.clear();
      },
      { once: true },
    );
  }
  callbacks.add(callback);
  return () => callbacks.delete(callback);
}

function protocolError(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed reply: ${what}`, {
    reason: 'bad-reply',
  });
}

/**
 * The requesting half of RPC over one link: request ids, replies matched to their requests,
 * timeouts and aborts that cancel the remote work. @internal
 */
export class Requester {
  readonly #link: Link;
  readonly #codec: MessageCodec;
  readonly #onActivity: () => void;
  readonly #pending = new Map<number, Pending>();
  readonly #checkedNames = new Set<string>();
  readonly #deadlines = new Deadlines();
  #nextId = 1;

  /** `onActivity` is called when the number of requests in flight goes to or from zero. */
  constructor(link: Link, codec: MessageCodec, onActivity: () => void) {
    this.#link = link;
    this.#codec = codec;
    this.#onActivity = onActivity;
  }

  /** Requests in flight. */
  get pending(): number {
    return this.#pending.size;
  }

  request<R>(name: string, value: unknown, options: RequestOptions = {}): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#start(name, value, options, {
        reply: (status, v) => {
          if (status === ReplyStatus.VALUE || status === ReplyStatus.NEXT) resolve(v as R);
          else if (status === ReplyStatus.END) {
            reject(new VringError('ERR_VRING_PROTOCOL', `${name} answered with an empty stream`));
          } else reject(fromWireError(v));
          return true;
        },
        fail: reject,
      });
    });
  }

  requestStream<R>(name: string, value: unknown, options: RequestOptions = {}): Observable<R> {
    return new Observable<R>((subscriber) => {
      const stop = this.#start(
        name,
        value,
        { timeout: Infinity, ...options },
        {
          reply: (status, v) => {
            switch (status) {
              case ReplyStatus.NEXT:
                subscriber.next(v as R);
                return false;
              case ReplyStatus.VALUE:
                subscriber.next(v as R);
                subscriber.complete();
                return true;
              case ReplyStatus.END:
                subscriber.complete();
                return true;
              default:
                subscriber.error(fromWireError(v));
                return true;
            }
          },
          fail: (error) => subscriber.error(error),
        },
      );
      return stop;
    });
  }

  /** Takes a REPLY message. @throws VringError `ERR_VRING_PROTOCOL` for a malformed one. */
  onReply(data: Uint8Array, start: number, end: number, owned: boolean): void {
    const reply = this.#codec.decode(data, start, end, owned);
    if (!Array.isArray(reply) || reply.length !== 3) throw protocolError('not [id, status, value]');
    const [id, status, value] = reply as [unknown, unknown, unknown];
    if (typeof id !== 'number' || typeof status !== 'number' || status < 0 || status > 3) {
      throw protocolError('bad id or status');
    }
    // A reply to a request that timed out or was aborted is late, not wrong.
    const pending = this.#pending.get(id);
    if (pending?.reply(status, value)) this.#finish(id);
  }

  /** Fails every request in flight (the peer is gone). */
  failAll(error: VringError): void {
    const all = [...this.#pending.values()];
    this.#pending.clear();
    if (all.length > 0) this.#onActivity();
    for (const p of all) p.fail(error);
  }

  /** Sends the request; returns what cancels it. */
  #start(name: string, value: unknown, options: RequestOptions, pending: Pending): () => void {
    const { signal } = options;
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    let body: Uint8Array;
    try {
      if (!this.#checkedNames.has(name)) {
        checkTopic(name);
        // A caller uses a handful of names: check each once, not once per request.
        if (this.#checkedNames.size >= 1024) this.#checkedNames.clear();
        this.#checkedNames.add(name);
      }
      if (!(timeout > 0)) {
        throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'timeout must be a positive number');
      }
      if (signal?.aborted) throw aborted(signal);
      if (this.#link.done) throw this.#link.closedError;
      body = this.#encode(this.#nextFreeId(), name, value);
    } catch (error) {
      pending.fail(error as VringError);
      return () => {};
    }
    const id = this.#nextId;
    let deadline: Deadline | undefined;
    let over = false;
    let unwatch: (() => void) | undefined;
    const end = () => {
      over = true;
      deadline?.cancel();
      unwatch?.();
    };
    const cancel = (error: VringError | undefined) => {
      if (over) return;
      end();
      this.#finish(id);
      // Same lane as the request: a cancel never overtakes it.
      this.#link.post(Kind.CANCEL, this.#codec.encode([id]), undefined, id);
      if (error) pending.fail(error);
    };
    if (Number.isFinite(timeout)) {
      // The link keeps the process alive while a request is out; the deadline need not.
      deadline = this.#deadlines.add(timeout, () =>
        cancel(new VringError('ERR_VRING_TIMEOUT', `no reply to ${name} within ${timeout} ms`)),
      );
    }
    if (signal) unwatch = onAbort(signal, () => cancel(aborted(signal)));
    this.#pending.set(id, {
      reply: (status, v) => {
        const done = pending.reply(status, v);
        if (done) end();
        return done;
      },
      fail: (error) => {
        end();
        pending.fail(error);
      },
    });
    this.#nextId = (id % 0xffff_ffff) + 1;
    if (this.#pending.size === 1) this.#onActivity();
    this.#link.post(Kind.REQUEST, body, undefined, id);
    return () => cancel(undefined);
  }

  #encode(id: number, name: string, value: unknown): Uint8Array {
    try {
      return this.#codec.encode([id, name, value]);
    } catch (error) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'value cannot be encoded as msgpack', {
        cause: error,
      });
    }
  }

  /** Picks the next id not in flight (ids are u32 and wrap). */
  #nextFreeId(): number {
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id % 0xffff_ffff) + 1;
    this.#nextId = id;
    return id;
  }

  #finish(id: number): void {
    if (this.#pending.delete(id) && this.#pending.size === 0) this.#onActivity();
  }
}

function aborted(signal: AbortSignal): VringError {
  return new VringError('ERR_VRING_ABORTED', 'the request was aborted', { cause: signal.reason });
}
