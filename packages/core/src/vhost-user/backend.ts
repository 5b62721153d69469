/**
 * The vhost-user back-end (device side): accepts front-ends (DPDK virtio_user, QEMU, our
 * VirtioUser) on a Unix socket — or connects to one that listens — and serves each as an
 * independent {@link VhostUserPort}. One port failing (bad control input, a broken ring) is
 * reported and closed; the others keep running.
 *
 * @packageDocumentation
 */
import type { VringError } from '../errors.js';
import { type ConnectionLimitOptions, FdServer } from '../fd-server.js';
import { FdSocket, VHOST_USER_FRAMING } from '../fd-socket.js';
import {
  type ConnectAccessOptions,
  expectedPeerUids,
  type ListenAccessOptions,
} from '../peer-access.js';
import { ReconnectBackoff, type ReconnectOptions } from '../reconnect-backoff.js';
import { resolvePortOptions, type VhostUserPortOptions } from './backend-options.js';
import { VhostUserPort } from './backend-port.js';
import { VHOST_USER_NOTICES } from './refusal-notice.js';

/**
 * Options of {@link VhostUserBackend}. Listening, the socket is `0600` and admits front-ends
 * of this process's uid (or root) unless the {@link ListenAccessOptions} say otherwise; a
 * refused front-end never gets to send a message that is read, so none of its memory is
 * mapped. In client mode `expectPeerUid` names the uid the front-end must run as. The
 * `PeerLimitOptions` cap each front-end's memory and, listening, the connections held.
 *
 * @public
 */
export interface VhostUserBackendOptions
  extends VhostUserPortOptions,
    ReconnectOptions,
    ListenAccessOptions,
    ConnectionLimitOptions,
    ConnectAccessOptions {
  /**
   * Connect to a front-end listening at the path (DPDK `server=1`) instead of listening;
   * retries with backoff (`retryInitialMs`, `retryMaxMs`) until it connects, and again after
   * each disconnect.
   */
  client?: boolean | undefined;
  /** Called with every new port (a front-end connected). */
  onPort?: ((port: VhostUserPort) => void) | undefined;
  /**
   * Called with the typed error (`ERR_VRING_PROTOCOL` with a `reason`, `ERR_VRING_BAD_RING`,
   * …) that closed a port. Default: one line on stderr.
   */
  onError?: ((error: VringError, port: VhostUserPort) => void) | undefined;
}

function logError(error: VringError, port: VhostUserPort): void {
  const reason = error.reason ? ` (${error.reason})` : '';
  console.error(`vring backend: port ${port.id}: ${error.code}${reason}: ${error.message}`);
}

/**
 * A vhost-user back-end serving any number of front-ends, each as its own
 * {@link VhostUserPort}.
 *
 * @example
 * ```ts
 * const backend = new VhostUserBackend('/run/vring/sock', {
 *   onPort: async (port) => {
 *     const batch = port.createBatch();
 *     for (;;) await port.sendBatch(await port.receive(batch)); // echo
 *   },
 * });
 * ```
 * @public
 */
export class VhostUserBackend implements AsyncDisposable {
  /** The socket path listened on or connected to. */
  readonly path: string;
  /** Whether this backend connects (client mode) rather than listens. */
  readonly client: boolean;

  readonly #options: VhostUserBackendOptions;
  readonly #ports = new Set<VhostUserPort>();
  readonly #server: FdServer | undefined;
  #nextId = 1;
  #overMemory = 0;
  #closed = false;
  readonly #backoff: ReconnectBackoff;
  readonly #expectUids: readonly number[] | undefined;
  /** Aborts a client-mode wait between connection attempts when the backend closes. */
  readonly #stopRetrying = new AbortController();

  /**
   * Starts serving at `path`: listens (a stale socket file is replaced) or, with
   * `client: true`, starts connecting.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a bad option, `ERR_VRING_SYSTEM` when
   * the path cannot be listened on.
   */
  constructor(path: string, options: VhostUserBackendOptions = {}) {
    this.path = path;
    this.client = options.client ?? false;
    resolvePortOptions(options); // fail here, not on every connection
    this.#backoff = new ReconnectBackoff(options);
    this.#expectUids = expectedPeerUids(options);
    this.#options = options;
    if (this.client) {
      this.#server = undefined;
      void this.#connect();
    } else {
      this.#server = FdServer.listenFramed(path, VHOST_USER_FRAMING, options, VHOST_USER_NOTICES);
      void this.#acceptLoop(this.#server);
    }
  }

  /** The ports currently open. */
  get ports(): ReadonlySet<VhostUserPort> {
    return this.#ports;
  }

  /** Front-ends refused on their credentials so far (listening mode). */
  get refusedPeers(): number {
    return this.#server?.refusedPeers ?? 0;
  }

  /**
   * Front-ends disconnected so far for going over a limit: turned away on arrival over
   * `maxConnections` or `maxConnectionsPerUid`, or closed for a memory table over
   * `maxPeerMemory` (each reported through `onRefused` or `onError` respectively).
   */
  get limitedPeers(): number {
    return (this.#server?.limitedPeers ?? 0) + this.#overMemory;
  }

  /** Stops listening (or reconnecting) and closes every port. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopRetrying.abort();
    this.#server?.close();
    for (const port of [...this.#ports]) port.close();
  }

  /** Same as {@link VhostUserBackend.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  async #acceptLoop(server: FdServer): Promise<void> {
    try {
      for await (const socket of server) {
        if (this.#closed) {
          socket.close();
          break;
        }
        this.#adopt(socket);
      }
    } catch {
      // The listener failed (its error ends the loop); ports already open keep running.
    }
  }

  #adopt(socket: FdSocket): VhostUserPort {
    const onError = this.#options.onError ?? logError;
    const port = new VhostUserPort(this.#nextId++, socket, this.#options, onError);
    this.#ports.add(port);
    void port.closed.then((error) => {
      this.#ports.delete(port);
      if (error?.code === 'ERR_VRING_LIMIT_EXCEEDED') this.#overMemory++;
      if (this.client && !this.#closed) {
        // Like DPDK's client-mode back-end: a front-end that went away may come back.
        void this.#connect();
      }
    });
    this.#options.onPort?.(port);
    return port;
  }

  /** Client mode: connects, retrying with backoff until a front-end listens or we close. */
  async #connect(): Promise<void> {
    this.#backoff.reset();
    for (;;) {
      if (this.#closed) return;
      try {
        this.#adopt(FdSocket.connectFramed(this.path, VHOST_USER_FRAMING, this.#expectUids));
        return;
      } catch {
        // Nobody listens yet (ENOENT / ECONNREFUSED), or a listener of another uid than
        // expectPeerUid (it may be replaced by the right one): retry with backoff.
      }
      try {
        await this.#backoff.wait(this.#stopRetrying.signal, true);
      } catch {
        return; // closed while waiting
      }
    }
  }
}
