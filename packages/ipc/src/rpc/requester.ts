import { VringError } from '@vring/core';
import { Observable } from 'rxjs';
import type { Link } from '../link/link.js';
import type { MessageCodec } from '../message-codec.js';
import { CheckedTopics } from '../topic.js';
import { checkHeaders, type MessageHeaders, receivedHeaders } from '../wire/headers.js';
import { Kind, ReplyStatus } from '../wire/message-kinds.js';
import { type Deadline, Deadlines } from './deadlines.js';
import { fromWireError } from './remote-error.js';
import { type Replies, type ReplySink, type RequestManyOptions, replies } from './replies.js';

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
  /**
   * Headers sent with the request; its handler reads them in `context.headers`. On a bus,
   * needs a bus that supports `headers` (else `ERR_VRING_FEATURE_MISMATCH`); on a Channel, a
   * peer of this version or later.
   */
  headers?: MessageHeaders;
  /** Called with the headers of each reply that has some (see `RequestContext.replyHeaders`). */
  onReplyHeaders?: (headers: MessageHeaders) => void;
}

/** What a request's replies go to: a promise's settlers or an Observable's subscriber. */
type Pending = ReplySink;

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * One 'abort' listener per signal, however many requests share it: a signal passed to
 * thousands of requests would otherwise trip Node's MaxListenersExceededWarning. (Not a
 * WaiterQueue wait: a request waits for its reply by id, and aborting it also cancels the
 * work at the responder.)
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
  readonly #checkedNames = new CheckedTopics();
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
    const pending = new OneReply(name);
    const promise = new Promise<R>((resolve, reject) => {
      pending.resolve = resolve as (value: unknown) => void;
      pending.reject = reject;
    });
    this.#start(Kind.REQUEST, name, value, options, pending);
    return promise;
  }

  /** Sends a REQUEST_MANY, which only a bus understands (see {@link Replies}). */
  requestMany<R>(name: string, value: unknown, options: RequestManyOptions = {}): Replies<R> {
    return replies<R>(
      (sink, signal) =>
        this.#start(
          Kind.REQUEST_MANY,
          name,
          value,
          {
            timeout: Infinity,
            ...(signal && { signal }),
            ...(options.headers && { headers: options.headers }),
          },
          sink,
        ),
      options,
    );
  }

  requestStream<R>(name: string, value: unknown, options: RequestOptions = {}): Observable<R> {
    return new Observable<R>((subscriber) => {
      const stop = this.#start(
        Kind.REQUEST,
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
    if (!Array.isArray(reply) || (reply.length !== 3 && reply.length !== 4)) {
      throw protocolError('not [id, status, value]');
    }
    const [id, status, value] = reply as [unknown, unknown, unknown];
    if (typeof id !== 'number' || typeof status !== 'number' || status < 0 || status > 3) {
      throw protocolError('bad id or status');
    }
    // A reply to a request that timed out or was aborted is late, not wrong.
    const pending = this.#pending.get(id);
    if (reply.length === 4) {
      const headers = receivedHeaders(reply[3]);
      if (pending instanceof Call) pending.onHeaders?.(headers);
    }
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
  #start(
    kind: number,
    name: string,
    value: unknown,
    options: RequestOptions,
    pending: Pending,
  ): () => void {
    const { signal, headers } = options;
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    const id = this.#nextFreeId();
    try {
      this.#checkedNames.check(name);
      if (!(timeout > 0)) {
        throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'timeout must be a positive number');
      }
      if (signal?.aborted) throw aborted(signal);
      if (this.#link.done) throw this.#link.closedError;
      // Encoded straight into the send batch; the reply cannot come before the call below is
      // registered (it is read in a later turn). Headers, when there are some, go last.
      if (headers !== undefined && checkHeaders(headers)) {
        this.#link.postValue(kind, [id, name, value, headers], id);
      } else this.#link.postValue(kind, [id, name, value], id);
    } catch (error) {
      pending.fail(error as VringError);
      return () => {};
    }
    const call = new Call(this, id, name, timeout, pending);
    call.onHeaders = options.onReplyHeaders;
    // The link keeps the process alive while a request is out; the deadline need not.
    if (Number.isFinite(timeout)) call.deadline = this.#deadlines.add(timeout, call);
    if (signal) call.unwatch = onAbort(signal, () => call.cancel(aborted(signal)));
    this.#pending.set(id, call);
    this.#nextId = (id % 0xffff_ffff) + 1;
    if (this.#pending.size === 1) this.#onActivity();
    return () => call.cancel(undefined);
  }

  /** A call ends early (timeout, abort, unsubscribe): forget it and tell the responder. */
  cancelled(id: number): void {
    this.#finish(id);
    // Same lane as the request: a cancel never overtakes it.
    this.#link.post(Kind.CANCEL, this.#codec.encode([id]), undefined, id);
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

/**
 * One request in flight: its deadline, its abort watch, and where its replies go. A class
 * rather than closures: a request/response turn allocates one object for its bookkeeping.
 */
class Call implements Pending {
  deadline: Deadline | undefined = undefined;
  unwatch: (() => void) | undefined = undefined;
  /** Takes the headers of the replies that have some. */
  onHeaders: ((headers: MessageHeaders) => void) | undefined = undefined;
  #over = false;

  constructor(
    readonly requester: Requester,
    readonly id: number,
    readonly name: string,
    readonly timeout: number,
    readonly pending: Pending,
  ) {}

  reply(status: number, value: unknown): boolean {
    const done = this.pending.reply(status, value);
    if (done) this.#end();
    return done;
  }

  fail(error: VringError): void {
    this.#end();
    this.pending.fail(error);
  }

  /** The deadline passed. */
  expire(): void {
    this.cancel(
      new VringError('ERR_VRING_TIMEOUT', `no reply to ${this.name} within ${this.timeout} ms`),
    );
  }

  cancel(error: VringError | undefined): void {
    if (this.#over) return;
    this.#end();
    this.requester.cancelled(this.id);
    if (error) this.pending.fail(error);
  }

  #end(): void {
    this.#over = true;
    this.deadline?.cancel();
    this.unwatch?.();
  }
}

/** The settlers of a `request()` promise: the first reply ends it. */
class OneReply implements Pending {
  resolve!: (value: unknown) => void;
  reject!: (error: unknown) => void;

  constructor(readonly name: string) {}

  reply(status: number, value: unknown): boolean {
    if (status === ReplyStatus.VALUE || status === ReplyStatus.NEXT) this.resolve(value);
    else if (status === ReplyStatus.END) {
      this.reject(
        new VringError('ERR_VRING_PROTOCOL', `${this.name} answered with an empty stream`),
      );
    } else this.reject(fromWireError(value));
    return true;
  }

  fail(error: VringError): void {
    this.reject(error);
  }
}

function aborted(signal: AbortSignal): VringError {
  return new VringError('ERR_VRING_ABORTED', 'the request was aborted', { cause: signal.reason });
}
