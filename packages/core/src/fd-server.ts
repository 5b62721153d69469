import { VringError } from './errors.js';
import {
  FdSocket,
  type FdSocketOptions,
  type Framing,
  framingFor,
  type NativeConnection,
} from './fd-socket.js';
import { native } from './native.js';
import { type ListenAccessOptions, PeerGate } from './peer-access.js';
import { ConnectionLimits, type PeerLimitOptions, type PeerLimitReason } from './peer-limits.js';
import type { WaitOptions } from './queue-pair-end.js';
import { WaiterQueue } from './waiter-queue.js';

/** @internal */
interface NativeListener {
  readonly closed: boolean;
  start(onConnection: (conn: NativeConnection) => void, onError: (error: VringError) => void): void;
  ref(): void;
  unref(): void;
  close(): void;
}

const NativeListenerClass = native.UnixListener as new (
  path: string,
  backlog: number,
  framing: Framing,
  mode: number,
) => NativeListener;

/**
 * What a listener takes from {@link PeerLimitOptions}: how many connections it holds at once.
 * @public
 */
export type ConnectionLimitOptions = Pick<
  PeerLimitOptions,
  'maxConnections' | 'maxConnectionsPerUid'
>;

/**
 * Options of {@link FdServer.listen}: the accepted sockets', the listener's access control
 * and its connection limits.
 * @public
 */
export interface FdServerOptions
  extends Omit<FdSocketOptions, 'expectPeerUid'>,
    ListenAccessOptions,
    ConnectionLimitOptions {}

/**
 * The frames a listener sends a peer it does not serve, before closing the connection: for a
 * refusal on credentials, and for each connection limit.
 * @internal
 */
export interface ListenerNotices {
  refused: Uint8Array;
  limited: (reason: PeerLimitReason) => Uint8Array;
}

/** Accepted connections held for a later {@link FdServer.accept} before new ones are refused. */
const MAX_UNACCEPTED = 128;

/**
 * A listening Unix stream socket that hands out {@link FdSocket}s.
 *
 * Only admitted peers are handed out: the socket file is `0600` unless `socketMode` widens
 * it, and each connecting process's credentials are checked (see {@link ListenAccessOptions})
 * before anything it sent is read. A refused peer's connection is closed (after the refusal
 * notice, where the protocol has one) and counted in {@link FdServer.refusedPeers}. So is,
 * in {@link FdServer.limitedPeers}, a peer that would take the server over
 * `maxConnections` or `maxConnectionsPerUid` (connections handed out and not yet closed).
 *
 * Closing the server removes its socket file (only if it is still the file it created). A
 * server keeps the process alive only while an {@link FdServer.accept} is pending.
 *
 * @public
 */
export class FdServer implements AsyncDisposable {
  /** The path (or `@abstract` name) it listens on. */
  readonly path: string;

  readonly #listener: NativeListener;
  readonly #gate: PeerGate;
  readonly #notices: ListenerNotices | undefined;
  readonly #limits: ConnectionLimits;
  #limited = 0;
  readonly #backlog: FdSocket[] = [];
  readonly #acceptors = new WaiterQueue<FdSocket>(() => this.#updateRef());
  #failure: VringError | undefined;
  #done = false;
  #referenced = false;
  /** Whether waiting for a connection keeps the process alive (see {@link FdServer.unref}). */
  #holdsProcess = true;

  private constructor(
    path: string,
    framing: Framing,
    access: ListenAccessOptions & ConnectionLimitOptions,
    notices: ListenerNotices | undefined,
  ) {
    this.path = path;
    this.#gate = new PeerGate(path, access);
    this.#limits = new ConnectionLimits(access);
    this.#notices = notices;
    const listener = new NativeListenerClass(path, 128, framing, this.#gate.socketMode);
    this.#listener = listener;
    listener.start(
      (conn) => this.#onNativeConnection(conn),
      (error) => this.#finish(error),
    );
    listener.unref();
  }

  /**
   * Listens at `path`. A stale socket file nobody listens on is replaced; a live one fails
   * with `ERR_VRING_SYSTEM` (errno `EADDRINUSE`). A path starting with `@` is a Linux
   * abstract socket name. `options` apply to every accepted socket.
   */
  static async listen(path: string, options: FdServerOptions = {}): Promise<FdServer> {
    return new FdServer(path, framingFor(options), options, undefined);
  }

  /**
   * Listens with another framing for every accepted socket (see {@link FdSocket.connectFramed}).
   * `notices`, whole frames of that framing, are sent to each refused peer before its
   * connection is closed, so the peer can tell a refusal from a crash.
   * @internal
   */
  static listenFramed(
    path: string,
    framing: Framing,
    access: ListenAccessOptions & ConnectionLimitOptions = {},
    notices?: ListenerNotices,
  ): FdServer {
    return new FdServer(path, framing, access, notices);
  }

  /** Connections refused on their credentials so far. */
  get refusedPeers(): number {
    return this.#gate.refused;
  }

  /** Connections closed on arrival so far because they would go over a connection limit. */
  get limitedPeers(): number {
    return this.#limited;
  }

  /** Waits for the next connection. Rejects with `ERR_VRING_CLOSED` once the server closes. */
  accept(options: WaitOptions = {}): Promise<FdSocket> {
    const ready = this.#backlog.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#done) {
      return Promise.reject(
        this.#failure ?? new VringError('ERR_VRING_CLOSED', 'server is closed'),
      );
    }
    return this.#acceptors.wait(options.signal);
  }

  /** Yields connections as they arrive, until the server closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<FdSocket, void, undefined> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (error) {
        if (error instanceof VringError && error.code === 'ERR_VRING_CLOSED') return;
        throw error;
      }
    }
  }

  /**
   * Waiting for a connection no longer keeps the process alive, as `net.Server.unref()`:
   * for a server that only matters while something else holds the process.
   */
  unref(): this {
    this.#holdsProcess = false;
    this.#updateRef();
    return this;
  }

  /** Stops listening and removes the socket file. Connections already accepted stay open. */
  close(): void {
    this.#finish(undefined);
  }

  /** Same as {@link FdServer.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /**
   * The access check runs here, once per connection and before the socket is started: a
   * refused peer's bytes (and fds) stay unread in the kernel and go with the close.
   */
  #onNativeConnection(conn: NativeConnection): void {
    if (!this.#gate.admits(() => conn.peerCredentials)) {
      this.#turnAway(conn, this.#notices?.refused);
      return;
    }
    // Admitted, so its credentials were readable.
    const peer = conn.peerCredentials;
    const over = this.#limits.take(peer);
    if (over) {
      this.#limited++;
      this.#gate.report(peer, over);
      this.#turnAway(conn, this.#notices?.limited(over));
      return;
    }
    const socket = new FdSocket(conn);
    void socket.closed.then(() => this.#limits.release(peer));
    this.#onConnection(socket);
  }

  /** Sends `notice` (if any) to a peer that is not served, and closes its connection. */
  #turnAway(conn: NativeConnection, notice: Uint8Array | undefined): void {
    if (notice) {
      try {
        conn.send(notice); // a few bytes into an empty socket buffer: never queued
      } catch {
        // The peer already left: nothing to tell it.
      }
    }
    conn.close();
  }

  #onConnection(socket: FdSocket): void {
    if (this.#acceptors.resolveOne(socket)) return;
    if (this.#backlog.length < MAX_UNACCEPTED) {
      this.#backlog.push(socket);
    } else {
      socket.close(); // nobody is accepting: refuse rather than hold fds without bound
    }
  }

  #updateRef(): void {
    if (this.#done) return;
    const hold = this.#holdsProcess && this.#acceptors.size > 0;
    if (hold === this.#referenced) return;
    this.#referenced = hold;
    if (hold) this.#listener.ref();
    else this.#listener.unref();
  }

  #finish(error: VringError | undefined): void {
    if (this.#done) return;
    this.#done = true;
    this.#failure = error;
    this.#listener.close();
    for (const socket of this.#backlog.splice(0)) socket.close();
    const reason = error ?? new VringError('ERR_VRING_CLOSED', 'server is closed');
    this.#acceptors.rejectAll(reason);
  }
}
