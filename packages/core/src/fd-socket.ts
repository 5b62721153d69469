import { closeSync } from 'node:fs';
import { VringError } from './errors.js';
import { native } from './native.js';
import {
  type ConnectAccessOptions,
  checkListeningPeer,
  expectedPeerUids,
  type PeerCredentials,
} from './peer-access.js';
import type { WaitOptions } from './queue-pair-end.js';
import { WaiterQueue } from './waiter-queue.js';

/**
 * How messages are delimited on the stream (see native/include/vring/unix_socket.h).
 * vring's own sockets use a 4-byte length prefix the binding adds and strips; vhost-user
 * reads whole frames (12-byte header, length at offset 8).
 * @internal
 */
export interface Framing {
  maxPayload: number;
  headerSize: number;
  lengthOffset: number;
  addHeader: boolean;
}

/** @internal */
export interface NativeConnection {
  readonly closed: boolean;
  readonly queuedSends: number;
  /** Read from the kernel (SO_PEERCRED, SO_PEERGROUPS) on each access. */
  readonly peerCredentials: PeerCredentials;
  start(
    onMessage: (data: Buffer, fds: number[]) => void,
    onClose: (error: VringError) => void,
    onDrain: () => void,
  ): void;
  pause(): void;
  resume(): void;
  send(data: Uint8Array, fds?: readonly number[]): boolean;
  ref(): void;
  unref(): void;
  close(): void;
}

const unixConnect = native.unixConnect as (path: string, framing: Framing) => NativeConnection;

/** Options of {@link FdSocket.connect} and {@link FdServer.listen}. @public */
export interface FdSocketOptions extends ConnectAccessOptions {
  /** Largest message accepted from the peer, in bytes (default 1 MiB). Larger ones fail the socket with `ERR_VRING_PROTOCOL`, reason `oversized-message`. */
  maxMessage?: number;
}

/** One message read from an {@link FdSocket}. @public */
export interface FdMessage {
  /** The payload (a copy, safe to keep). */
  data: Buffer;
  /** File descriptors that came with it. They belong to the receiver, who must close them. */
  fds: number[];
}

/**
 * vhost-user's framing: a 12-byte header whose u32 at offset 8 is the payload size. The
 * binding checks the size against the limit before reading the payload.
 * @internal
 */
export const VHOST_USER_FRAMING: Framing = {
  maxPayload: 4096,
  headerSize: 12,
  lengthOffset: 8,
  addHeader: false,
};

/** Messages buffered before the socket stops reading and lets the kernel push back. */
const HIGH_WATER = 64;

/** @internal */
export function framingFor(options: FdSocketOptions): Framing {
  const maxPayload = options.maxMessage ?? 1024 * 1024;
  if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > 0xffff_ffff) {
    throw new VringError(
      'ERR_VRING_INVALID_ARGUMENT',
      'maxMessage must be an integer in [0, 2^32)',
    );
  }
  return { maxPayload, headerSize: 4, lengthOffset: 0, addHeader: true };
}

function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // Already closed: nothing left to release.
    }
  }
}

/**
 * A connected Unix stream socket carrying whole messages, each with up to 8 file
 * descriptors attached (SCM_RIGHTS): how a vring hands its memory and eventfds to a peer.
 *
 * A socket keeps the process alive only while an operation on it is pending.
 *
 * @public
 */
export class FdSocket implements AsyncDisposable {
  /**
   * Settles when the socket closes: with `undefined` after {@link FdSocket.close}, with the
   * error (`ERR_VRING_PEER_DISCONNECTED` when the peer went away) otherwise. Never rejects.
   */
  readonly closed: Promise<VringError | undefined>;

  readonly #conn: NativeConnection;
  readonly #inbox: FdMessage[] = [];
  readonly #receivers = new WaiterQueue<FdMessage>(() => this.#updateRef());
  readonly #drainWaiters = new WaiterQueue<void>(() => this.#updateRef());
  #failure: VringError | undefined;
  #done = false;
  #paused = false;
  #keepAlive = true;
  #referenced = false;
  #resolveClosed!: (error: VringError | undefined) => void;

  /** @internal */
  constructor(conn: NativeConnection) {
    this.#conn = conn;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    conn.start(
      (data, fds) => this.#onMessage({ data, fds }),
      (error) => this.#finish(error),
      () => this.#onDrain(),
    );
    this.#updateRef();
  }

  /**
   * Connects to a listening {@link FdServer} (or any peer using the same framing) at `path`.
   * A path starting with `@` names a Linux abstract socket.
   * @throws VringError `ERR_VRING_SYSTEM` (errno `ENOENT`/`ECONNREFUSED`) when nobody listens.
   */
  static async connect(path: string, options: FdSocketOptions = {}): Promise<FdSocket> {
    return FdSocket.connectFramed(path, framingFor(options), expectedPeerUids(options));
  }

  /**
   * Connects with another framing (vhost-user: whole 12-byte-header frames, see
   * {@link VHOST_USER_FRAMING}); `send` then takes and `receive` returns whole frames.
   * With `expectUids` (see {@link expectedPeerUids}) a listener of another uid is refused
   * before the socket reads or sends anything.
   * @internal
   */
  static connectFramed(
    path: string,
    framing: Framing,
    expectUids?: readonly number[] | undefined,
  ): FdSocket {
    const conn = unixConnect(path, framing);
    try {
      checkListeningPeer(path, expectUids, () => conn.peerCredentials);
    } catch (error) {
      conn.close();
      throw error;
    }
    return new FdSocket(conn);
  }

  /**
   * Sends one message with `fds` attached (at most 8). The caller keeps its fds; the peer
   * receives duplicates. Resolves once the message is in the kernel's socket buffer.
   */
  send(data: Uint8Array, fds: readonly number[] = []): Promise<void> {
    if (this.#done) return Promise.reject(this.#closedError());
    let complete: boolean;
    try {
      complete = this.#conn.send(data, fds);
    } catch (error) {
      return Promise.reject(error);
    }
    if (complete) return Promise.resolve();
    return this.#drainWaiters.wait();
  }

  /** Waits for the next message. Rejects with the socket's error once it closes. */
  receive(options: WaitOptions = {}): Promise<FdMessage> {
    const next = this.#inbox.shift();
    if (next) {
      this.#resumeIfBelowHighWater();
      return Promise.resolve(next);
    }
    if (this.#done) return Promise.reject(this.#closedError());
    return this.#receivers.wait(options.signal);
  }

  /**
   * Who is at the other end (SO_PEERCRED): for an accepted socket the process that
   * connected, for a connected one the process that listened.
   * @throws VringError `ERR_VRING_CLOSED` once the socket is closed.
   */
  get peerCredentials(): PeerCredentials {
    if (this.#done) throw new VringError('ERR_VRING_CLOSED', 'socket is closed');
    return this.#conn.peerCredentials;
  }

  /** Lets the process exit even while a receive or send is pending. */
  unref(): this {
    this.#keepAlive = false;
    this.#updateRef();
    return this;
  }

  /** Undoes {@link FdSocket.unref}: pending operations keep the process alive (the default). */
  ref(): this {
    this.#keepAlive = true;
    this.#updateRef();
    return this;
  }

  /**
   * Closes the socket now. Pending operations reject with `ERR_VRING_CLOSED`; fds of
   * messages nobody received are closed. Idempotent.
   */
  close(): void {
    this.#finish(undefined);
  }

  /** Same as {@link FdSocket.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #onMessage(message: FdMessage): void {
    if (this.#receivers.resolveOne(message)) return;
    this.#inbox.push(message);
    if (this.#inbox.length >= HIGH_WATER && !this.#paused) {
      // Stop reading: the kernel buffer fills and the sender waits, instead of our memory growing.
      this.#paused = true;
      this.#conn.pause();
    }
  }

  #resumeIfBelowHighWater(): void {
    if (this.#paused && !this.#done && this.#inbox.length < HIGH_WATER / 2) {
      this.#paused = false;
      this.#conn.resume();
    }
  }

  #onDrain(): void {
    this.#drainWaiters.resolveAll();
  }

  #closedError(): VringError {
    return this.#failure ?? new VringError('ERR_VRING_CLOSED', 'socket is closed');
  }

  #updateRef(): void {
    if (this.#done) return;
    const hold = this.#keepAlive && (this.#receivers.size > 0 || this.#drainWaiters.size > 0);
    if (hold === this.#referenced) return;
    this.#referenced = hold;
    if (hold) this.#conn.ref();
    else this.#conn.unref();
  }

  #finish(error: VringError | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.#failure = error;
    this.#conn.close();
    const reason = this.#closedError();
    for (const message of this.#inbox.splice(0)) closeFds(message.fds);
    this.#receivers.rejectAll(reason);
    this.#drainWaiters.rejectAll(reason);
    this.#resolveClosed(error);
  }
}
