import { VringError } from '@vring/core';
import { Observable } from 'rxjs';
import type { Link } from '../link/link.js';
import type { MessageCodec } from '../message-codec.js';
import { CheckedTopics } from '../topic.js';
import { checkHeaders, type MessageHeaders, receivedHeaders } from '../wire/headers.js';
import { Kind, ReplyStatus } from '../wire/message-kinds.js';
import { Deadlines, type Expiring } from './deadlines.js';
import { IdTable } from './id-table.js';
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

const DEFAULT_TIMEOUT_MS = 10_000;

/** The options of a request given none: no object per call for them. */
const NO_OPTIONS: RequestOptions = Object.freeze({});

/**
 * The settlers of the promise being made: one executor for every `request()`, not a
 * closure per call.
 */
let takeResolve: (value: unknown) => void = () => {};
let takeReject: (error: unknown) => void = () => {};
function captureSettlers(resolve: (value: unknown) => void, reject: (error: unknown) => void) {
  takeResolve = resolve;
  takeReject = reject;
}

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
  readonly #pending = new IdTable<Call>();
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

  request<R>(name: string, value: unknown, options: RequestOptions = NO_OPTIONS): Promise<R> {
    const promise = new Promise<unknown>(captureSettlers) as Promise<R>;
    const call = new Call(this, name, undefined);
    call.resolve = takeResolve;
    call.reject = takeReject;
    this.#start(Kind.REQUEST, value, options, call);
    return promise;
  }

  /** Sends a REQUEST_MANY, which only a bus understands (see {@link Replies}). */
  requestMany<R>(name: string, value: unknown, options: RequestManyOptions = {}): Replies<R> {
    return replies<R>((sink, signal) => {
      const call = new Call(this, name, sink);
      this.#start(
        Kind.REQUEST_MANY,
        value,
        {
          timeout: Infinity,
          ...(signal && { signal }),
          ...(options.headers && { headers: options.headers }),
        },
        call,
      );
      return () => call.cancel(undefined);
    }, options);
  }

  requestStream<R>(
    name: string,
    value: unknown,
    options: RequestOptions = NO_OPTIONS,
  ): Observable<R> {
    return new Observable<R>((subscriber) => {
      const call = new Call(this, name, {
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
      });
      this.#start(Kind.REQUEST, value, { timeout: Infinity, ...options }, call);
      return () => call.cancel(undefined);
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
    const call = this.#pending.get(id);
    if (reply.length === 4) {
      const headers = receivedHeaders(reply[3]);
      call?.onHeaders?.(headers);
    }
    if (call?.reply(status, value)) this.#finish(id);
  }

  /** Fails every request in flight (the peer is gone). */
  failAll(error: VringError): void {
    const all = this.#pending.values();
    this.#pending.clear();
    if (all.length > 0) this.#onActivity();
    for (const p of all) p.fail(error);
  }

  /** Sends the request of `call` (it fails at once if it cannot go). */
  #start(kind: number, value: unknown, options: RequestOptions, call: Call): void {
    const { signal, headers } = options;
    const name = call.name;
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
      call.fail(error as VringError);
      return;
    }
    call.id = id;
    call.timeout = timeout;
    call.onHeaders = options.onReplyHeaders;
    // The link keeps the process alive while a request is out; the deadline need not.
    if (Number.isFinite(timeout)) this.#deadlines.watch(timeout, call);
    if (signal) call.unwatch = onAbort(signal, () => call.cancel(aborted(signal)));
    this.#pending.add(call);
    this.#nextId = (id % 0xffff_ffff) + 1;
    if (this.#pending.size === 1) this.#onActivity();
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
    if (this.#pending.delete(id) !== undefined && this.#pending.size === 0) this.#onActivity();
  }
}

/**
 * One request in flight: its id, its deadline (it is its own entry on the deadlines), its
 * abort watch, and where its replies go: the settlers of a `request()` promise, or a
 * {@link ReplySink} (a stream's subscriber, a `requestMany`). A class rather than closures:
 * a request/response turn allocates one object for its bookkeeping.
 */
class Call implements Expiring {
  id = 0;
  timeout = 0;
  expiresAt = 0;
  over = false;
  unwatch: (() => void) | undefined = undefined;
  /** Takes the headers of the replies that have some. */
  onHeaders: ((headers: MessageHeaders) => void) | undefined = undefined;
  resolve: (value: unknown) => void = ignore;
  reject: (error: unknown) => void = ignore;

  constructor(
    readonly requester: Requester,
    readonly name: string,
    readonly sink: ReplySink | undefined,
  ) {}

  /** Takes a reply; returns whether the request is over. */
  reply(status: number, value: unknown): boolean {
    const sink = this.sink;
    if (sink) {
      const done = sink.reply(status, value);
      if (done) this.#end();
      return done;
    }
    // A `request()`: the first reply ends it.
    this.#end();
    if (status === ReplyStatus.VALUE || status === ReplyStatus.NEXT) this.resolve(value);
    else if (status === ReplyStatus.END) {
      this.reject(
        new VringError('ERR_VRING_PROTOCOL', `${this.name} answered with an empty stream`),
      );
    } else this.reject(fromWireError(value));
    return true;
  }

  fail(error: VringError): void {
    this.#end();
    if (this.sink) this.sink.fail(error);
    else this.reject(error);
  }

  /** The deadline passed. */
  expire(): void {
    this.cancel(
      new VringError('ERR_VRING_TIMEOUT', `no reply to ${this.name} within ${this.timeout} ms`),
    );
  }

  cancel(error: VringError | undefined): void {
    if (this.over) return;
    this.#end();
    this.requester.cancelled(this.id);
    if (!error) return;
    if (this.sink) this.sink.fail(error);
    else this.reject(error);
  }

  #end(): void {
    this.over = true;
    this.unwatch?.();
  }
}

function ignore(): void {}

function aborted(signal: AbortSignal): VringError {
  return new VringError('ERR_VRING_ABORTED', 'the request was aborted', { cause: signal.reason });
}
