import { VringError } from '@vring/core';
import { isObservable, type Observable, type Subscription as RxSubscription } from 'rxjs';
import type { Link } from '../link/link.js';
import type { MessageCodec } from '../message-codec.js';
import { checkTopic } from '../topic.js';
import { checkHeaders, type MessageHeaders, receivedHeaders } from '../wire/headers.js';
import { Kind, ReplyStatus } from '../wire/message-kinds.js';
import { IdTable } from './id-table.js';
import { toWireError } from './remote-error.js';

/** What a handler learns about the request it serves. */
export interface RequestContext {
  /** The name the request was sent to. */
  readonly name: string;
  /** Aborted when the requester cancels (abort, timeout, unsubscribe) or goes away. */
  readonly signal: AbortSignal;
  /** The headers the request came with, if any. */
  readonly headers: MessageHeaders | undefined;
  /**
   * Headers to send with the replies from now on (each streamed value, and the last reply).
   * A bus without `headers` support gets the replies without them.
   */
  replyHeaders: MessageHeaders | undefined;
}

/**
 * Serves one RPC name. Return (or resolve to) the reply; throw to send an error (its `code`,
 * `message` and `data` travel); return an Observable or an AsyncIterable to stream replies.
 */
export type RpcHandler<Q = unknown, R = unknown> = (
  request: Q,
  context: RequestContext,
) => R | PromiseLike<R> | Observable<R> | AsyncIterable<R>;

/** A name being served: dispose it (or call `stop()`) to stop serving. */
export interface Service extends Disposable {
  /** The name being served. */
  readonly name: string;
  /** Stops serving {@link Service.name}. */
  stop(): void;
}

/** Traces the requests a responder handles (the bus client's OpenTelemetry spans). @internal */
export interface HandlerTracer {
  /** Starts tracing a request to `name` that came with `headers`. */
  start(name: string, headers: MessageHeaders | undefined): HandlerTrace;
}

/** One handled request's trace. @internal */
export interface HandlerTrace {
  /** Runs the handler (in the trace's context). */
  run<T>(fn: () => T): T;
  /** The request is over: answered, or failed or cancelled with `error`. */
  end(error?: unknown): void;
}

/** Options of a responder. @internal */
export interface ResponderOptions {
  /** Requests handled at once before the link stops reading (default 4096). */
  maxConcurrent?: number;
  /** Stream replies queued unsent before a stream fails with `ERR_VRING_QUEUE_FULL` (default 1024). */
  maxQueuedReplies?: number;
  /** Whether the peer reads reply headers now (default: always); else they are left out. */
  sendsHeaders?: () => boolean;
  /** Traces each request handled (default: none). */
  tracer?: HandlerTracer | undefined;
}

/**
 * What a responder tells its owner: a name served or no longer served; at (`busy`) or back
 * under (`idle`) its concurrency bound; no handler running any more (`quiet`). @internal
 */
export type ResponderEvent = 'serve' | 'unserve' | 'busy' | 'idle' | 'quiet';

/**
 * A request being handled. Its AbortController is made only if the handler looks at
 * `context.signal`: creating one (and a DOMException when it aborts) was a sixth of a small
 * request's cost.
 */
class Active implements RequestContext {
  finished = false;
  subscription: RxSubscription | undefined;
  #abort: AbortController | undefined;
  #reason: VringError | undefined;

  replyHeaders: MessageHeaders | undefined = undefined;
  trace: HandlerTrace | undefined = undefined;

  /** The handler's context is the request itself: no object per request for it. */
  constructor(
    readonly id: number,
    readonly name: string,
    readonly headers: MessageHeaders | undefined,
  ) {}

  get signal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController();
      if (this.#reason) this.#abort.abort(this.#reason);
    }
    return this.#abort.signal;
  }

  /** Ends the request: normally (no reason) or cancelled (the handler's signal aborts). */
  finish(reason?: VringError): void {
    this.finished = true;
    this.subscription?.unsubscribe();
    if (reason) {
      this.#reason = reason;
      this.#abort?.abort(reason);
    }
  }
}

function protocolError(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed ${what}`, { reason: 'bad-request' });
}

/**
 * The serving half of RPC over one link: runs handlers, sends their replies (one value, a
 * stream, or an error), stops them when the requester cancels, and bounds how much work a
 * requester can start. @internal
 */
export class Responder {
  readonly #link: Link;
  readonly #codec: MessageCodec;
  readonly #handlers = new Map<string, RpcHandler>();
  readonly #active = new IdTable<Active>();
  readonly #maxConcurrent: number;
  readonly #maxQueuedReplies: number;
  readonly #onChange: (event: ResponderEvent, name?: string) => void;
  readonly #sendsHeaders: () => boolean;
  readonly #tracer: HandlerTracer | undefined;
  #busy = false;

  constructor(
    link: Link,
    codec: MessageCodec,
    onChange: (event: ResponderEvent, name?: string) => void,
    options: ResponderOptions = {},
  ) {
    this.#link = link;
    this.#codec = codec;
    this.#onChange = onChange;
    this.#maxConcurrent = options.maxConcurrent ?? 4096;
    this.#maxQueuedReplies = options.maxQueuedReplies ?? 1024;
    this.#sendsHeaders = options.sendsHeaders ?? (() => true);
    this.#tracer = options.tracer;
  }

  /** Requests being handled. */
  get active(): number {
    return this.#active.size;
  }

  /** Names served. */
  get names(): string[] {
    return [...this.#handlers.keys()];
  }

  /** Whether any name is served (asked on every request's start and end: no array). */
  get serving(): boolean {
    return this.#handlers.size > 0;
  }

  serve<Q, R>(name: string, handler: RpcHandler<Q, R>): Service {
    checkTopic(name);
    if (typeof handler !== 'function') {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'handler must be a function');
    }
    if (this.#handlers.has(name)) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${name} is already served here`);
    }
    this.#handlers.set(name, handler as RpcHandler);
    this.#onChange('serve', name);
    const stop = () => {
      if (this.#handlers.get(name) !== handler) return;
      this.#handlers.delete(name);
      this.#onChange('unserve', name);
    };
    return { name, stop, [Symbol.dispose]: stop };
  }

  /** Stops serving every name (requests that arrive later get NO_RESPONDERS). */
  stopServing(): void {
    for (const name of [...this.#handlers.keys()]) {
      this.#handlers.delete(name);
      this.#onChange('unserve', name);
    }
  }

  /** Takes a REQUEST. @throws VringError `ERR_VRING_PROTOCOL` for a malformed one. */
  onRequest(data: Uint8Array, start: number, end: number, owned: boolean): void {
    const request = this.#codec.decode(data, start, end, owned);
    if (!Array.isArray(request) || (request.length !== 3 && request.length !== 4)) {
      throw protocolError('request');
    }
    const [id, name, value] = request as [unknown, unknown, unknown];
    if (typeof id !== 'number' || !Number.isInteger(id) || typeof name !== 'string') {
      throw protocolError('request id or name');
    }
    // A second request with an id in flight would orphan the first: the peer is broken.
    if (this.#active.has(id)) throw protocolError(`request: id ${id} is already in flight`);
    const handler = this.#handlers.get(name);
    if (!handler) {
      this.#reply(id, ReplyStatus.ERROR, {
        code: 'ERR_VRING_NO_RESPONDERS',
        message: `nobody serves ${name}`,
      });
      return;
    }
    const headers = request.length === 4 ? receivedHeaders(request[3]) : undefined;
    const active = new Active(id, name, headers);
    this.#active.add(active);
    this.#updateBusy();
    this.#run(id, handler, value, active);
  }

  /** Takes a CANCEL. */
  onCancel(data: Uint8Array, start: number, end: number, owned: boolean): void {
    const cancel = this.#codec.decode(data, start, end, owned);
    if (!Array.isArray(cancel) || typeof cancel[0] !== 'number') throw protocolError('cancel');
    this.#stop(cancel[0], new VringError('ERR_VRING_ABORTED', 'the requester cancelled'));
  }

  /** Stops every handler (the link is gone). */
  stopAll(error: VringError): void {
    for (const active of this.#active.values()) this.#stop(active.id, error);
  }

  #run(id: number, handler: RpcHandler, value: unknown, active: Active): void {
    let result: unknown;
    try {
      const tracer = this.#tracer;
      if (tracer) {
        const trace = tracer.start(active.name, active.headers);
        active.trace = trace;
        result = trace.run(() => handler(value, active));
      } else result = handler(value, active);
    } catch (error) {
      this.#fail(id, active, error);
      return;
    }
    // A handler that answers at once is answered in this turn: no promise hop before the
    // reply goes into the ring.
    if (isPromiseLike(result)) {
      result.then(
        (v) => this.#answer(id, v, active),
        (error: unknown) => this.#fail(id, active, error),
      );
    } else {
      this.#answer(id, result, active);
    }
  }

  /** Replies with what the handler produced: a value, an Observable or an AsyncIterable. */
  #answer(id: number, result: unknown, active: Active): void {
    if (active.finished) return;
    try {
      if (isObservable(result)) {
        this.#streamObservable(id, result, active);
      } else if (isAsyncIterable(result)) {
        this.#streamIterable(id, result, active).catch((error: unknown) =>
          this.#fail(id, active, error),
        );
      } else {
        this.#finish(id, ReplyStatus.VALUE, result);
      }
    } catch (error) {
      this.#fail(id, active, error);
    }
  }

  #fail(id: number, active: Active, error: unknown): void {
    if (!active.finished) this.#finish(id, ReplyStatus.ERROR, toWireError(error));
  }

  #streamObservable(id: number, source: Observable<unknown>, active: Active): void {
    let queued = 0;
    active.subscription = source.subscribe({
      next: (v) => {
        if (active.finished) return;
        if (queued >= this.#maxQueuedReplies) {
          // An Observable cannot be paused: past the bound the stream fails rather than
          // buffering without limit.
          this.#finish(id, ReplyStatus.ERROR, {
            code: 'ERR_VRING_QUEUE_FULL',
            message: `more than ${this.#maxQueuedReplies} stream replies queued unsent`,
          });
          return;
        }
        queued++;
        const sent = this.#send(id, ReplyStatus.NEXT, v, active.replyHeaders);
        if (sent)
          void sent.then(
            () => queued--,
            () => {},
          );
      },
      error: (error) => this.#finish(id, ReplyStatus.ERROR, toWireError(error)),
      complete: () => this.#finish(id, ReplyStatus.END, null),
    });
  }

  async #streamIterable(id: number, source: AsyncIterable<unknown>, active: Active) {
    const iterator = source[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await iterator.next();
        if (active.finished) return;
        if (next.done) break;
        // Waiting for each reply to reach the ring is the iterable's backpressure.
        await this.#send(id, ReplyStatus.NEXT, next.value, active.replyHeaders);
      }
      this.#finish(id, ReplyStatus.END, null);
    } finally {
      if (active.finished) await iterator.return?.();
    }
  }

  /** Sends the last reply of a request and forgets it. */
  #finish(id: number, status: number, value: unknown): void {
    const active = this.#active.get(id);
    if (!active || active.finished) return;
    this.#active.delete(id);
    active.finish();
    this.#updateBusy();
    this.#reply(id, status, value, active.replyHeaders);
    active.trace?.end(status === ReplyStatus.ERROR ? value : undefined);
  }

  #stop(id: number, reason: VringError): void {
    const active = this.#active.get(id);
    if (!active) return;
    this.#active.delete(id);
    active.finish(reason);
    this.#updateBusy();
    active.trace?.end(reason);
  }

  #send(
    id: number,
    status: number,
    value: unknown,
    headers: MessageHeaders | undefined,
  ): Promise<void> | undefined {
    const body = this.#encodeReply(id, status, value, headers);
    return this.#link.done
      ? undefined
      : this.#link.send(Kind.REPLY, body, undefined, id).catch(() => {});
  }

  #reply(id: number, status: number, value: unknown, headers?: MessageHeaders): void {
    // The request id is the lane: a stream's replies arrive in order whatever their sizes.
    try {
      if (this.#withHeaders(headers))
        this.#link.postValue(Kind.REPLY, [id, status, value, headers], id);
      else this.#link.postValue(Kind.REPLY, [id, status, value], id);
    } catch (error) {
      this.#link.post(Kind.REPLY, this.#unencodable(id, error), undefined, id);
    }
  }

  #encodeReply(
    id: number,
    status: number,
    value: unknown,
    headers: MessageHeaders | undefined,
  ): Uint8Array {
    try {
      if (this.#withHeaders(headers)) return this.#codec.encode([id, status, value, headers]);
      return this.#codec.encode([id, status, value]);
    } catch (error) {
      return this.#unencodable(id, error);
    }
  }

  /**
   * Whether a reply goes with `headers`: there are some, and the peer reads them.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for headers that break the bounds (the
   * reply becomes that error).
   */
  #withHeaders(headers: MessageHeaders | undefined): headers is MessageHeaders {
    return headers !== undefined && checkHeaders(headers) && this.#sendsHeaders();
  }

  /** The error reply that stands for a reply msgpack cannot encode. */
  #unencodable(id: number, error: unknown): Uint8Array {
    return this.#codec.encode([
      id,
      ReplyStatus.ERROR,
      toWireError(
        error instanceof VringError && error.reason === 'bad-headers'
          ? error
          : new VringError('ERR_VRING_INVALID_ARGUMENT', 'the reply cannot be encoded as msgpack', {
              cause: error,
            }),
      ),
    ]);
  }

  #updateBusy(): void {
    if (this.#active.size === 0) this.#onChange('quiet');
    const busy = this.#active.size >= this.#maxConcurrent;
    if (busy === this.#busy) return;
    this.#busy = busy;
    this.#onChange(busy ? 'busy' : 'idle');
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
  );
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
  );
}
