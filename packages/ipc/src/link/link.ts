import { type FramePort, MessageBatch, VringError } from '@vring/core';
import { type MessageSink, Reassembler } from '../wire/reassembler.js';
import { Reader, type ReaderLink } from './reader.js';
import { SendQueue, type SendQueueOptions } from './send-queue.js';
import { SessionStart } from './session.js';

export type { Lane } from './send-queue.js';

/** Options of a {@link Link}. @internal */
export interface LinkOptions extends SendQueueOptions {
  /** Largest message body accepted from the peer. */
  maxMessage: number;
  /**
   * Takes each complete message, whose body is `data[start, end)`: valid only during the
   * call unless `owned` (see {@link MessageSink}).
   */
  onMessage(kind: number, data: Uint8Array, start: number, end: number, owned: boolean): void;
  /**
   * A session starts with a whole message of this kind: frames before it (left in the ring
   * by a previous peer, or the tail of a message the previous peer began) are dropped.
   */
  syncKind?: number;
}

/**
 * Messages (kind + body) over a transport: fragmentation and reassembly, batching of
 * concurrent sends into one native crossing, ordering per lane with interleaving across
 * lanes, and flow control in both directions (the owner pauses reading; the send queue
 * reports when it drains). Channel and the bus are built on it. @internal
 *
 * The sending half is the {@link SendQueue} this class extends, so that a send reaches the
 * code that places it without a call in between; reading is the {@link Reader}'s, and where
 * a session begins is the {@link SessionStart}'s. Keep-alive and closing stay here: every
 * part depends on them, and an RPC owner turns keep-alive on and off with each request.
 */
export class Link extends SendQueue implements ReaderLink {
  readonly closed: Promise<VringError | undefined>;
  readonly #reassembler: Reassembler;
  readonly #session: SessionStart;
  readonly #reader: Reader;
  #wanted = false;
  /** Whether the transport is ref'd now (undefined before the first decision). */
  #refd: boolean | undefined;
  #resolveClosed!: (error: VringError | undefined) => void;

  constructor(transport: FramePort, options: LinkOptions) {
    super(transport, options, linkBatch(transport));
    // A frame can carry several messages: those after one that closed the link are dropped.
    const sink: MessageSink = (kind, data, start, end, owned) => {
      if (!this.done) options.onMessage(kind, data, start, end, owned);
    };
    this.#reassembler = new Reassembler(sink, { maxMessage: options.maxMessage });
    this.#session = new SessionStart(options.syncKind, this.#reassembler);
    this.#reader = new Reader(this, linkBatch(transport), this.#reassembler, this.#session);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    void transport.closed.then((error) =>
      this.fail(error ?? new VringError('ERR_VRING_CLOSED', 'connection is closed')),
    );
    this.#applyKeepAlive();
  }

  /** Starts reading, or resumes after `pause(reason)` once no other reason holds it. */
  resume(reason = ''): void {
    this.#reader.resume(reason);
  }

  /**
   * Stops reading, for `reason`, after the batch in hand: the peer then fills the ring and
   * waits. Messages of that batch are still delivered.
   */
  pause(reason = ''): void {
    this.#reader.pause(reason);
  }

  /**
   * Starts a new session with a new peer behind the same transport: the reassembler forgets
   * messages in flight, incoming frames are dropped until the peer's first message of
   * `syncKind`, and outgoing messages half written restart from their first frame after
   * `preamble`, which goes before everything queued.
   */
  restart(preamble: ReadonlyArray<{ kind: number; body: Uint8Array }>): void {
    if (this.done) return;
    this.#session.restart();
    this.rewind(preamble);
  }

  /**
   * During the message callback: keeps the frame of the message being delivered in shared
   * memory until the returned function is called (undefined when it is not there). For an
   * owner handing out views of it.
   */
  retainFrame(): (() => void) | undefined {
    return this.#reader.retainFrame();
  }

  /** Whether the owner expects traffic (see {@link Link.keepAlive}). */
  get wanted(): boolean {
    return this.#wanted;
  }

  /**
   * Whether pending waits keep the process alive: the owner says so while it expects
   * traffic (a consumer waits, a request is out, a handler serves).
   */
  keepAlive(wanted: boolean): void {
    this.#wanted = wanted;
    this.#applyKeepAlive();
  }

  /**
   * Only the owner's interest decides: a send waiting for ring space keeps the process
   * alive by itself (the transport holds it), and the queue ahead of it is a microtask away.
   */
  #applyKeepAlive(): void {
    const on = this.#wanted;
    if (this.#refd === on || this.done) return;
    this.#refd = on;
    if (on) this.transport.ref();
    else this.transport.unref();
  }

  /** Closes the link and its transport; queued messages fail with `error` or ERR_VRING_CLOSED. */
  close(error?: VringError): void {
    this.fail(error ?? new VringError('ERR_VRING_CLOSED', 'connection is closed'));
    this.transport.close();
  }

  protected override fail(error: VringError): void {
    if (this.done) return;
    // V8 keeps the receivers of an error's stack frames (this link, its reassembler, its
    // batches) until the stack is formatted: format it now, so whoever keeps the error
    // (an onError log, a closed promise) does not keep the link's memory.
    void error.stack;
    this.stop(error);
    this.#reassembler.clear();
    this.#resolveClosed(this.failure);
  }
}

/** A batch of the size a link reads and writes in: the transport's largest frame, or more. */
function linkBatch(transport: FramePort): MessageBatch {
  return new MessageBatch({ bytes: Math.max(256 * 1024, transport.maxMessage), messages: 1024 });
}
