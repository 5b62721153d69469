import {
  acceptQueuePair,
  type EndpointOptions,
  FdServer,
  type FdSocket,
  VringError,
} from '@vring/core';
import { Channel } from '../channel.js';
import type { RpcHandler, Service } from '../rpc/responder.js';

/** How long a requester has to hand over its rings once it has connected. */
const HANDSHAKE_MS = 5000;
/** How long a draining client waits for a requester to take its last replies. */
const REPLIES_FLUSH_MS = 5000;

/** A requester that reached a responder directly: its channel and the names it serves on it. */
interface Inbound {
  readonly socket: FdSocket;
  readonly channel: Channel;
  readonly services: Map<string, Service>;
}

/**
 * The responder's side of direct routes: a socket next to the bus's where requesters that
 * met this client through the bus connect, each with a queue pair of its own, to call the
 * names this client serves without the bus's two extra hops. Every name the client serves
 * on the bus is served on each such channel, by the same handler; a name no longer served
 * answers `ERR_VRING_NO_RESPONDERS`, as the bus would.
 *
 * A requester must run as this process's uid (the socket is `0600` and its peer's
 * credentials are checked), the same trust the bus socket gives by default. A requester that
 * sends anything but a queue pair is dropped; the others carry on. @internal
 */
export class DirectRouteListener {
  readonly address: string;
  readonly #server: FdServer;
  readonly #endpoint: EndpointOptions;
  readonly #maxMessage: number;
  readonly #handlers = new Map<string, RpcHandler>();
  readonly #inbound = new Set<Inbound>();
  #closed = false;

  private constructor(
    address: string,
    server: FdServer,
    endpoint: EndpointOptions,
    maxMessage: number,
  ) {
    this.address = address;
    this.#server = server;
    this.#endpoint = endpoint;
    this.#maxMessage = maxMessage;
    void this.#acceptAll();
  }

  /**
   * Listens at `address` for requesters.
   * @throws VringError from the socket (the address is taken, too long, not writable).
   */
  static async listen(
    address: string,
    endpoint: EndpointOptions,
    maxMessage: number,
  ): Promise<DirectRouteListener> {
    // Requesters come only to a client that serves names, and serving holds the process
    // through the bus connection: the listener alone does not.
    const server = (await FdServer.listen(address)).unref();
    return new DirectRouteListener(address, server, endpoint, maxMessage);
  }

  /** Requesters attached now. */
  get attached(): number {
    return this.#inbound.size;
  }

  /** Serves `name` with `handler` on every direct channel, now and to come. */
  serve(name: string, handler: RpcHandler): void {
    this.#handlers.set(name, handler);
    for (const inbound of this.#inbound) this.#serveOn(inbound, name, handler);
  }

  /** Stops serving `name` directly: requests for it are answered `ERR_VRING_NO_RESPONDERS`. */
  unserve(name: string): void {
    this.#handlers.delete(name);
    for (const { services } of this.#inbound) {
      services.get(name)?.stop();
      services.delete(name);
    }
  }

  /** Stops serving every name directly (requests for them are answered `ERR_VRING_NO_RESPONDERS`). */
  stopServing(): void {
    for (const name of [...this.#handlers.keys()]) this.unserve(name);
  }

  /** Resolves once no handler runs on any direct channel (for the client's `drain()`). */
  async handlersDone(): Promise<void> {
    await Promise.all(
      [...this.#inbound].map(async ({ channel }) => {
        await channel.handlersDone();
        // Their last replies reach the ring before the channel closes with the client; a
        // requester that stopped reading gets a few seconds, as the bus gives nobody more.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          channel.drain().catch(() => {}),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, REPLIES_FLUSH_MS);
          }),
        ]);
        clearTimeout(timer);
      }),
    );
  }

  /** Stops listening and closes every direct channel: their requests in flight are cancelled. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const inbound of [...this.#inbound]) this.#drop(inbound);
  }

  async #acceptAll(): Promise<void> {
    try {
      for await (const socket of this.#server) void this.#attach(socket);
    } catch {
      // The listener failed: requesters fall back to the bus.
    }
  }

  async #attach(socket: FdSocket): Promise<void> {
    try {
      await acceptQueuePair(socket, {
        ...this.#endpoint,
        signal: AbortSignal.timeout(HANDSHAKE_MS),
        // Every name is served before the requester may send its first request.
        beforeAttached: (end) => {
          if (this.#closed) throw new VringError('ERR_VRING_CLOSED', 'not serving any more');
          const channel = new Channel(end, { maxMessage: this.#maxMessage });
          const inbound: Inbound = { socket, channel, services: new Map() };
          this.#inbound.add(inbound);
          for (const [name, handler] of this.#handlers) this.#serveOn(inbound, name, handler);
          void channel.closed.then(() => this.#drop(inbound));
        },
      });
    } catch {
      // Garbage, a timeout or a requester gone mid-handshake: drop this one (its channel, if
      // made, closes with the pair), serve the rest.
      socket.close();
    }
  }

  #serveOn(inbound: Inbound, name: string, handler: RpcHandler): void {
    if (inbound.services.has(name)) return;
    try {
      inbound.services.set(name, inbound.channel.serve(name, handler));
    } catch {
      // The channel has closed: it is on its way out.
    }
  }

  #drop(inbound: Inbound): void {
    if (!this.#inbound.delete(inbound)) return;
    inbound.channel.close();
    inbound.socket.close();
  }
}
