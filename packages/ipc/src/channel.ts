import { MessageBatch, VringError } from '@vring/core';
import { Observable } from 'rxjs';
import { MessageCodec } from './message-codec.js';
import { Fragmenter, OutgoingMessage } from './wire/fragmenter.js';
import { Reassembler } from './wire/reassembler.js';

/** Frame kind of a Channel's data messages (docs/wire-format.md). */
const KIND_MESSAGE = 1;

/**
 * What a Channel runs over: either end of a queue pair, a `VirtioUser`, or a vhost-user
 * backend port. The channel owns it and closes it.
 */
export interface ChannelTransport {
  readonly maxMessage: number;
  readonly closed: Promise<VringError | undefined>;
  sendBatch(batch: MessageBatch): Promise<void>;
  receive(batch: MessageBatch): Promise<MessageBatch>;
  close(): void;
}

/** Options of a {@link Channel}. */
export interface ChannelOptions {
  /** Largest message body, encoded (default 64 MiB). Both ends should agree. */
  maxMessage?: number;
  /**
   * Largest frame (default: the queue pair's `maxMessage`, capped at 64 KiB). 1514 keeps
   * frames switchable by an Ethernet switch such as DPDK testpmd.
   */
  maxFrame?: number;
  /**
   * Decoded messages held for the application before the channel stops reading the ring
   * (default 1024). The peer then blocks on a full ring: backpressure, nothing lost.
   */
  highWaterMark?: number;
}

/** Options of a single wait. */
export interface ChannelWaitOptions {
  signal?: AbortSignal;
}

interface Outgoing {
  message: OutgoingMessage;
  resolve(): void;
  reject(error: unknown): void;
}

interface Receiver<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

/**
 * A point-to-point channel of msgpack values over one queue pair end (either side of a
 * vring). `send(value)` resolves when the value is in the ring; values arrive in order as
 * an AsyncIterable, an RxJS Observable, or one at a time with `receive()`.
 *
 * Many concurrent `send` calls share batches: one native crossing moves many messages.
 * Values arrive in the order they were sent, whatever their sizes.
 */
export class Channel<T = unknown> implements AsyncIterable<T>, AsyncDisposable {
  /** Settles when the channel closes: `undefined` after `close()`, the error otherwise. */
  readonly closed: Promise<VringError | undefined>;

  readonly #end: ChannelTransport;
  #resolveClosed!: (error: VringError | undefined) => void;
  readonly #codec = new MessageCodec();
  readonly #fragmenter: Fragmenter;
  readonly #reassembler: Reassembler;
  readonly #highWaterMark: number;
  readonly #sendBatch: MessageBatch;
  readonly #receiveBatch: MessageBatch;
  #outgoing: Outgoing[] = [];
  #pumping = false;
  #nextStream = 1;
  readonly #inbox: T[] = [];
  #receivers: Array<Receiver<T>> = [];
  #reading = false;
  #failure: VringError | undefined;
  #done = false;

  constructor(end: ChannelTransport, options: ChannelOptions = {}) {
    this.#end = end;
    const maxFrame = options.maxFrame ?? Math.min(end.maxMessage, 64 * 1024);
    if (maxFrame > end.maxMessage) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `maxFrame ${maxFrame} exceeds the queue pair's maxMessage ${end.maxMessage}`,
      );
    }
    this.#fragmenter = new Fragmenter({ maxFrame });
    this.#reassembler = new Reassembler({ maxMessage: options.maxMessage ?? 64 * 1024 * 1024 });
    this.#highWaterMark = options.highWaterMark ?? 1024;
    const batchBytes = Math.max(256 * 1024, end.maxMessage);
    this.#sendBatch = new MessageBatch({ bytes: batchBytes, messages: 1024 });
    this.#receiveBatch = new MessageBatch({ bytes: batchBytes, messages: 1024 });
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    void end.closed.then((error) =>
      this.#fail(error ?? new VringError('ERR_VRING_CLOSED', 'channel is closed')),
    );
  }

  /** Sends `value`. Resolves when all of its frames are in the ring. */
  send(value: T): Promise<void> {
    if (this.#done) return Promise.reject(this.#closedError());
    let body: Buffer;
    try {
      body = this.#codec.encode(value);
    } catch (error) {
      return Promise.reject(
        new VringError('ERR_VRING_INVALID_ARGUMENT', 'value cannot be encoded as msgpack', {
          cause: error,
        }),
      );
    }
    const stream = this.#nextStream;
    this.#nextStream = (this.#nextStream % 0xffff_ffff) + 1;
    return new Promise<void>((resolve, reject) => {
      this.#outgoing.push({
        message: new OutgoingMessage(KIND_MESSAGE, stream, body),
        resolve,
        reject,
      });
      if (!this.#pumping) {
        this.#pumping = true;
        // Sends issued in the same tick go out in one batch.
        queueMicrotask(() => void this.#pump());
      }
    });
  }

  /** Waits for the next value. */
  receive(options: ChannelWaitOptions = {}): Promise<T> {
    const { signal } = options;
    // An aborted wait takes nothing: a value handed to it would be lost.
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#inbox.length > 0) {
      // msgpack can carry `undefined`, so the length decides, not the value.
      const next = this.#inbox.shift() as T;
      this.#startReading();
      return Promise.resolve(next);
    }
    if (this.#done) return Promise.reject(this.#closedError());
    this.#startReading();
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        this.#receivers = this.#receivers.filter((r) => r !== receiver);
        reject(signal!.reason);
      };
      const receiver: Receiver<T> = {
        resolve: (value) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#receivers.push(receiver);
    });
  }

  /** Values as they arrive, until the channel closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      try {
        yield await this.receive();
      } catch (error) {
        if (error instanceof VringError && error.code === 'ERR_VRING_CLOSED') return;
        throw error;
      }
    }
  }

  /**
   * Values as an Observable. Each subscription takes values as they arrive (several
   * subscriptions split the stream between them); unsubscribing stops taking.
   */
  messages(): Observable<T> {
    return new Observable<T>((subscriber) => {
      const abort = new AbortController();
      void (async () => {
        while (!abort.signal.aborted) {
          let value: T;
          try {
            value = await this.receive({ signal: abort.signal });
          } catch (error) {
            if (abort.signal.aborted) return;
            if (error instanceof VringError && error.code === 'ERR_VRING_CLOSED') {
              subscriber.complete();
            } else {
              subscriber.error(error);
            }
            return;
          }
          subscriber.next(value);
        }
      })();
      return () => abort.abort();
    });
  }

  /** Closes the channel and the queue pair end under it. */
  close(): void {
    this.#fail(new VringError('ERR_VRING_CLOSED', 'channel is closed'));
    this.#end.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  async #pump(): Promise<void> {
    try {
      while (this.#outgoing.length > 0 && !this.#done) {
        const batch = this.#sendBatch;
        batch.clear();
        // In send order: a channel is one ordered stream, so a message's frames all go
        // before the next message's (fragments of different streams may interleave on the
        // wire, which is for multiplexed topics, not for one channel).
        for (const item of this.#outgoing) {
          if (!this.#fragmenter.write(batch, item.message)) break;
        }
        await this.#end.sendBatch(batch);
        const finished = this.#outgoing.filter((o) => o.message.done);
        this.#outgoing = this.#outgoing.filter((o) => !o.message.done);
        for (const o of finished) o.resolve();
      }
    } catch (error) {
      this.#fail(
        error instanceof VringError ? error : new VringError('ERR_VRING_CLOSED', String(error)),
      );
    } finally {
      this.#pumping = false;
    }
  }

  #startReading(): void {
    if (this.#reading || this.#done || this.#inbox.length >= this.#highWaterMark) return;
    this.#reading = true;
    void this.#read();
  }

  async #read(): Promise<void> {
    try {
      while (!this.#done && this.#inbox.length < this.#highWaterMark) {
        // Only read while someone waits or there is room to buffer ahead.
        const batch = await this.#end.receive(this.#receiveBatch);
        for (const frame of batch) {
          const message = this.#reassembler.push(frame);
          if (!message) continue;
          const value = this.#codec.decode(message.body, message.owned) as T;
          const receiver = this.#receivers.shift();
          if (receiver) receiver.resolve(value);
          else this.#inbox.push(value);
        }
        if (this.#receivers.length === 0 && this.#inbox.length > 0) break;
      }
    } catch (error) {
      // A peer that sends garbage is cut off: its queue pair end is closed.
      const failure =
        error instanceof VringError ? error : new VringError('ERR_VRING_PROTOCOL', String(error));
      this.#fail(failure);
      this.#end.close();
    } finally {
      this.#reading = false;
    }
    if (this.#receivers.length > 0) this.#startReading();
  }

  #closedError(): VringError {
    return this.#failure ?? new VringError('ERR_VRING_CLOSED', 'channel is closed');
  }

  #fail(error: VringError): void {
    if (this.#done) return;
    this.#done = true;
    this.#failure = error.code === 'ERR_VRING_CLOSED' ? undefined : error;
    this.#reassembler.clear();
    const reason = this.#closedError();
    for (const r of this.#receivers.splice(0)) r.reject(reason);
    for (const o of this.#outgoing.splice(0)) o.reject(reason);
    this.#resolveClosed(this.#failure);
  }
}
