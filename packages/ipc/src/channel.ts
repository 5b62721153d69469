import { type FramePort, VringError, WaiterQueue } from '@vring/core';
import { Observable } from 'rxjs';
import { Inbox } from './inbox.js';
import { Link } from './link/link.js';
import { MessageCodec } from './message-codec.js';
import { Requester, type RequestOptions } from './rpc/requester.js';
import { Responder, type RpcHandler, type Service } from './rpc/responder.js';
import { sendWithin } from './send-deadline.js';
import { ValueViews } from './value-views.js';
import { Kind } from './wire/message-kinds.js';

/** Lane of a channel's values: one lane, so they arrive in send order. */
const VALUES_LANE = '';

/** Options of a {@link Channel}. */
export interface ChannelOptions {
  /** Largest message body, encoded (default 64 MiB). Both ends should agree. */
  maxMessage?: number;
  /**
   * Largest frame (default: the port's `maxMessage`, capped at 64 KiB). 1514 keeps frames
   * switchable by an Ethernet switch such as DPDK testpmd.
   */
  maxFrame?: number;
  /**
   * Decoded messages held for the application before the channel stops reading the ring
   * (default 1024). The peer then blocks on a full ring: backpressure, nothing lost.
   */
  highWaterMark?: number;
  /**
   * Hand out the binary values of a large message that was read in place as views of the
   * shared memory it lies in, instead of copies (default false). The memory stays held, and
   * the peer's window smaller, until {@link Channel.release} is called with the value (or its
   * process ends): release each value promptly. A view is of memory the peer wrote and can
   * still write: trust a peer before reading its memory through views, or copy what you
   * check. Small messages, and messages that were not contiguous, are copies as ever.
   */
  views?: boolean;
  /**
   * A large value that finds the ring full is encoded only when room comes, straight into
   * shared memory: one copy of its bytes instead of two (default false). The value is then
   * read when it goes, not when `send()` is called: do not change it until its send
   * settles. Values of 8 KiB and more (judged by the value sent before) only.
   */
  lazyEncoding?: boolean;
}

/** Options of a single wait. */
export interface ChannelWaitOptions {
  /** Ends the wait early: it rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link Channel.send}. */
export interface ChannelSendOptions extends ChannelWaitOptions {
  /**
   * Milliseconds the value may wait for room in the ring (by default it waits as long as it
   * takes). Past it the send rejects with `ERR_VRING_TIMEOUT` and the value is withdrawn,
   * unless part of it is in the ring already.
   */
  timeout?: number;
}

/**
 * A point-to-point channel of msgpack values over one {@link FramePort} (either end of a
 * queue pair, a `VirtioUser`, or a vhost-user backend port). `send(value)` resolves when the
 * value is in the ring; values arrive in order as an AsyncIterable, an RxJS Observable, or
 * one at a time with `receive()`. Either side can also serve and call RPC names over it.
 *
 * Many concurrent `send` calls share batches: one native crossing moves many messages.
 * Values arrive in the order they were sent, whatever their sizes.
 *
 * @example
 * ```ts
 * // Each process wraps its own end of one queue pair (see DriverQueuePair).
 * const channel = new Channel<{ n: number }>(driverEnd);
 * channel.serve<[number, number], number>('add', ([a, b]) => a + b);
 * await channel.send({ n: 1 });
 *
 * // In the peer process:
 * const peer = new Channel<{ n: number }>(deviceEnd);
 * for await (const { n } of peer) console.log(n); // 1
 * const sum = await peer.request<number>('add', [2, 3]); // 5
 * ```
 */
export class Channel<T = unknown> implements AsyncIterable<T, undefined>, AsyncDisposable {
  /** Settles when the channel closes: `undefined` after `close()`, the error otherwise. */
  readonly closed: Promise<VringError | undefined>;

  readonly #link: Link;
  readonly #codec = new MessageCodec();
  readonly #requester: Requester;
  readonly #responder: Responder;
  /** Waiters for the last running handler to finish (see {@link Channel.handlersDone}). */
  #quiet: WaiterQueue<void> | undefined;
  readonly #inbox: Inbox<T>;
  /** `views` mode: large values handed out as views of shared memory, held until released. */
  readonly #views: ValueViews | undefined;

  constructor(end: FramePort, options: ChannelOptions = {}) {
    this.#inbox = new Inbox<T>({
      highWaterMark: options.highWaterMark ?? 1024,
      onFull: (full) => {
        if (full) this.#link.pause('inbox');
        else this.#link.resume('inbox');
      },
      onDemand: () => this.#updateKeepAlive(),
    });
    this.#link = new Link(end, {
      maxFrame: options.maxFrame ?? Math.min(end.maxMessage, 64 * 1024),
      maxMessage: options.maxMessage ?? 64 * 1024 * 1024,
      codec: this.#codec,
      ...(options.lazyEncoding && { lazyEncoding: true }),
      onMessage: (kind, data, start, end, owned) => this.#onMessage(kind, data, start, end, owned),
    });
    this.#views = options.views
      ? new ValueViews(this.#link, this.#codec, end.lending?.inPlaceMin)
      : undefined;
    this.#requester = new Requester(this.#link, this.#codec, () => this.#updateKeepAlive());
    this.#responder = new Responder(this.#link, this.#codec, (event) => {
      if (event === 'busy') this.#link.pause('handlers');
      else if (event === 'idle') this.#link.resume('handlers');
      else if (event === 'quiet') this.#quiet?.resolveAll();
      this.#updateKeepAlive();
    });
    this.closed = this.#link.closed.then((error) => {
      const reason = this.#link.closedError;
      this.#inbox.end(error);
      this.#requester.failAll(reason);
      this.#responder.stopAll(reason);
      this.#quiet?.resolveAll();
      return error;
    });
    this.#link.resume();
  }

  /**
   * Sends `value`. Resolves when all of its frames are in the ring. Aborting withdraws the
   * value if none of it is in the ring yet (rejecting with the signal's reason).
   */
  send(value: T, options: ChannelSendOptions = {}): Promise<void> {
    return sendWithin(options.timeout, options.signal, (signal) =>
      this.#link.sendValue(Kind.MESSAGE, value, VALUES_LANE, signal),
    );
  }

  /**
   * Gives back the shared memory a value received in `views` mode is a view of (see
   * {@link ChannelOptions.views}). Its binary values must not be read after. Does nothing for
   * a value that is no view (a small message, or a channel not in `views` mode).
   */
  release(value: T): void {
    this.#views?.release(value);
  }

  /**
   * Waits for the next value. After `close()`, once the values that had arrived are taken,
   * rejects with the channel's closing error.
   */
  receive(options: ChannelWaitOptions = {}): Promise<T> {
    const { signal } = options;
    const inbox = this.#inbox;
    if (inbox.length > 0 && !signal?.aborted) return Promise.resolve(inbox.take());
    return inbox.next(signal).then(this.#valueOrClosed);
  }

  readonly #valueOrClosed = (result: IteratorResult<T, undefined>): T => {
    if (result.done) throw this.#link.closedError;
    return result.value;
  };

  /**
   * Values as they arrive, until the channel closes. (A plain iterator, not an async
   * generator: one promise per value instead of three.)
   */
  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return {
      next: () => this.#inbox.next(),
      return: async () => ({ done: true, value: undefined }),
    };
  }

  /**
   * Values as an Observable. Each subscription takes values as they arrive (several
   * subscriptions split the stream between them); unsubscribing stops taking.
   */
  messages(): Observable<T> {
    // Values are handed over as the reader decodes them: no promise per value.
    return new Observable<T>((subscriber) => this.#inbox.attach(subscriber));
  }

  /** Answers the peer's requests for `name` (see {@link RpcHandler}). */
  serve<Q = unknown, R = unknown>(name: string, handler: RpcHandler<Q, R>): Service {
    if (this.#link.done) throw this.#link.closedError;
    return this.#responder.serve(name, handler);
  }

  /**
   * Asks the peer to answer a request for `name`.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` (a malformed name, a timeout that is not
   * positive, a value msgpack cannot encode), `ERR_VRING_NO_RESPONDERS` (the peer does not
   * serve `name`), `ERR_VRING_TIMEOUT`, `ERR_VRING_ABORTED`, the channel's closing error, or
   * the handler's own error code.
   */
  request<R = unknown>(name: string, value: unknown, options?: RequestOptions): Promise<R> {
    return this.#requester.request<R>(name, value, options);
  }

  /** Like {@link Channel.request} for a handler that streams its replies. */
  requestStream<R = unknown>(
    name: string,
    value: unknown,
    options?: RequestOptions,
  ): Observable<R> {
    return this.#requester.requestStream<R>(name, value, options);
  }

  /**
   * Resolves once no handler of this channel is running (at once if none is): for an owner
   * that stops serving and waits for the work under way, as a bus client's `drain()` does.
   * @internal
   */
  handlersDone(): Promise<void> {
    if (this.#responder.active === 0 || this.#link.done) return Promise.resolve();
    this.#quiet ??= new WaiterQueue<void>();
    return this.#quiet.wait();
  }

  /** Resolves once everything sent so far is in the ring. */
  drain(): Promise<void> {
    return this.#link.drain();
  }

  /** Closes the channel and the port under it. */
  close(): void {
    this.#link.close();
  }

  /** Waits for what was sent to reach the ring, then closes. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#link.drain();
    this.close();
    await this.closed;
  }

  #onMessage(kind: number, data: Uint8Array, start: number, end: number, owned: boolean): void {
    switch (kind) {
      case Kind.MESSAGE: {
        const views = this.#views;
        this.#inbox.push(
          (views
            ? views.decode(data, start, end, owned)
            : this.#codec.decode(data, start, end, owned)) as T,
        );
        return;
      }
      case Kind.REQUEST:
        this.#responder.onRequest(data, start, end, owned);
        return;
      case Kind.REPLY:
        this.#requester.onReply(data, start, end, owned);
        return;
      case Kind.CANCEL:
        this.#responder.onCancel(data, start, end, owned);
        return;
      default:
        throw new VringError('ERR_VRING_PROTOCOL', `unexpected message kind ${kind}`, {
          reason: 'bad-kind',
        });
    }
  }

  #updateKeepAlive(): void {
    this.#link.keepAlive(
      this.#inbox.consumers > 0 || this.#requester.pending > 0 || this.#responder.serving,
    );
  }
}
