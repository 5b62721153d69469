/**
 * Where a vhost-user front-end's control connections come from, apart from what it does with
 * them: `VirtioUser` asks for the next one after each disconnect and need not know whether it
 * listens or dials.
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';
import { FdServer } from '../fd-server.js';
import { FdSocket, VHOST_USER_FRAMING } from '../fd-socket.js';
import {
  type ConnectAccessOptions,
  expectedPeerUids,
  type ListenAccessOptions,
} from '../peer-access.js';
import type { ReconnectBackoff } from '../reconnect-backoff.js';
import { VHOST_USER_NOTICES } from './refusal-notice.js';

/**
 * Where control connections come from: a listening socket (server mode) or connect()
 * retried with backoff (client mode).
 * @internal
 */
export class ConnectionSource {
  readonly #path: string;
  readonly #server: FdServer | undefined;
  readonly #backoff: ReconnectBackoff;
  readonly #expectUids: readonly number[] | undefined;

  /**
   * In server mode the socket is listening (its file exists) once this returns, and admits
   * only the back-ends `access` allows; in client mode `access.expectPeerUid` is checked on
   * every connection.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a bad access option.
   */
  constructor(
    path: string,
    server: boolean,
    backoff: ReconnectBackoff,
    access: ListenAccessOptions & ConnectAccessOptions = {},
  ) {
    this.#path = path;
    this.#backoff = backoff;
    this.#expectUids = expectedPeerUids(access);
    this.#server = server
      ? FdServer.listenFramed(path, VHOST_USER_FRAMING, access, VHOST_USER_NOTICES)
      : undefined;
  }

  /** Back-ends refused on their credentials (server mode). */
  get refusedPeers(): number {
    return this.#server?.refusedPeers ?? 0;
  }

  /**
   * The next connection. `keepAlive` false lets the process exit while a client waits to
   * retry (a listening server keeps it alive while it accepts: FdServer has no other mode).
   */
  async next(signal: AbortSignal, keepAlive: boolean): Promise<FdSocket> {
    if (this.#server) return this.#server.accept({ signal });
    this.#backoff.reset();
    for (;;) {
      signal.throwIfAborted();
      try {
        return FdSocket.connectFramed(this.#path, VHOST_USER_FRAMING, this.#expectUids);
      } catch (error) {
        // Nobody listening yet (ENOENT, ECONNREFUSED) or any other OS refusal: the back-end
        // may be restarting, so keep trying; anything else is a bug worth surfacing.
        if (!(error instanceof VringError) || error.code !== 'ERR_VRING_SYSTEM') throw error;
      }
      await this.#backoff.wait(signal, keepAlive);
    }
  }

  /**
   * Stops listening. A client holds nothing between attempts: a retry that is waiting ends
   * with the signal its caller passed to {@link ConnectionSource.next}.
   */
  close(): void {
    this.#server?.close();
  }
}
