import {
  type DriverQueuePair,
  type EndpointOptions,
  FdSocket,
  offerQueuePair,
  VringError,
} from '@vring/core';
import { catchError, defer, finalize, type Observable } from 'rxjs';
import { Channel } from '../channel.js';
import type { RequestOptions } from '../rpc/requester.js';

/** How long a responder has to attach to the rings it is handed. */
const HANDSHAKE_MS = 5000;

/**
 * Where a route stands. `connecting`: requests go through the bus until it is `up`.
 * `unreachable`: it could not be reached (another mount namespace, a dead responder, a
 * refusal) and is not tried again. `closed`: it was up and has closed, or closes.
 */
type RouteState = 'connecting' | 'up' | 'unreachable' | 'closed';

/** One responder reached directly: one queue pair, shared by every name it serves us. */
class Route {
  state: RouteState = 'connecting';
  /** Set when the route is up. */
  channel: Channel | undefined;
  /** Names the bus has pointed here and not taken back. */
  readonly names = new Set<string>();
  /** Requests (and streams) out on this route. */
  pending = 0;

  constructor(readonly address: string) {}

  close(): void {
    this.state = 'closed';
    this.channel?.close();
  }
}

/**
 * The requester's side of direct routes. Once the bus has routed a request for a name to
 * the only client serving it, and both take part in direct routes, the bus tells the
 * requester where that responder listens; later requests for the name go there over a
 * queue pair of their own, one hop each way instead of two through the bus. The bus
 * remains the fallback: until the route is up, after it fails, and once the bus takes it
 * back (a second client serves the name, or the responder stops serving it).
 *
 * Requests keep their semantics on a direct route: replies, errors, timeouts, aborts and
 * streams are the Channel's RPC, the same code as over the bus. A responder that dies fails
 * the requests out on its route with `ERR_VRING_PEER_DISCONNECTED`, as the bus does, and
 * the next request goes through the bus again. A responder that no longer serves the name
 * answers `ERR_VRING_NO_RESPONDERS`; the request is then asked of the bus (no handler ran),
 * which knows who serves it now.
 *
 * A route outlives the bus's going down: while the bus restarts, requests keep going over
 * it. Once the client has reconnected, the routes of the old bus are forgotten (the new one
 * could not take them back when a second client comes to serve a name), and the new bus
 * offers them again after routing a request. @internal
 */
export class DirectRoutes {
  readonly #endpoint: EndpointOptions;
  readonly #queueSize: number | undefined;
  /** Whether the routes' queue pairs run packed rings (the client's own `packed`). */
  readonly #packed: boolean;
  readonly #maxMessage: number;
  /** Every route, by its responder's address: one record of its state each. */
  readonly #routes = new Map<string, Route>();
  /**
   * Which route each name goes to: the inverse of the routes' `names`, so that a request
   * finds its route in one look-up. Kept in step by #drop and #forget.
   */
  readonly #byName = new Map<string, Route>();
  readonly #onIdle: () => void;
  #pending = 0;
  #closed = false;

  /** `onIdle` is called when the last request out on a route settles. */
  constructor(
    endpoint: EndpointOptions,
    geometry: { queueSize?: number | undefined; maxMessage: number; packed: boolean },
    onIdle: () => void,
  ) {
    this.#endpoint = endpoint;
    this.#queueSize = geometry.queueSize;
    this.#packed = geometry.packed;
    this.#maxMessage = geometry.maxMessage;
    this.#onIdle = onIdle;
  }

  /** Requests out on direct routes. */
  get pending(): number {
    return this.#pending;
  }

  /** Direct routes up now. */
  get up(): number {
    let n = 0;
    for (const route of this.#routes.values()) if (route.state === 'up') n++;
    return n;
  }

  /** The bus says requests for `name` may go to `address`; null takes that back. */
  offer(name: string, address: string | null): void {
    if (this.#closed) return;
    const old = this.#byName.get(name);
    if (old && old.address === address) return;
    if (old) {
      old.names.delete(name);
      this.#byName.delete(name);
      this.#closeIfUnused(old);
    }
    if (address === null) return;
    let route = this.#routes.get(address);
    if (route?.state === 'unreachable') return;
    if (!route) {
      route = new Route(address);
      this.#routes.set(address, route);
      void this.#connect(route);
    }
    route.names.add(name);
    this.#byName.set(name, route);
  }

  /**
   * Sends the request straight to `name`'s responder, or through `viaBus` when there is no
   * route up (or the responder no longer serves the name).
   */
  request<R>(
    name: string,
    value: unknown,
    options: RequestOptions | undefined,
    viaBus: () => Promise<R>,
  ): Promise<R> {
    const route = this.#up(name);
    if (!route) return viaBus();
    this.#began(route);
    // One reaction for both outcomes: a request pays for no promise beyond the channel's.
    return route.channel.request<R>(name, value, options).then(
      (reply) => {
        this.#ended(route);
        return reply;
      },
      (error: unknown) => {
        if (!notServed(error)) {
          this.#ended(route);
          throw error;
        }
        // Dropped first: a route no name goes to any more closes when its last request ends.
        this.#drop(name, route);
        // The fallback is out (and counted by the client) before this request stops counting
        // here: a drain() waiting for quiet must not see a moment with nothing pending.
        const fallback = viaBus();
        this.#ended(route);
        return fallback;
      },
    );
  }

  /** {@link DirectRoutes.request} for a streaming handler. */
  requestStream<R>(
    name: string,
    value: unknown,
    options: RequestOptions | undefined,
    viaBus: () => Observable<R>,
  ): Observable<R> {
    const route = this.#up(name);
    if (!route) return viaBus();
    return defer(() => {
      this.#began(route);
      return route.channel.requestStream<R>(name, value, options).pipe(
        catchError((error: unknown) => {
          if (!notServed(error)) throw error;
          this.#drop(name, route);
          return viaBus();
        }),
        finalize(() => this.#ended(route)),
      );
    });
  }

  /**
   * Forgets what the bus offered: later requests go through the bus until it offers routes
   * again. A route with requests out stays up until they settle.
   */
  forgetOffers(): void {
    for (const [name, route] of [...this.#byName]) {
      this.#drop(name, route);
      this.#closeIfUnused(route);
    }
  }

  /** Closes every route: requests out on them fail with `ERR_VRING_CLOSED`. */
  close(): void {
    this.#closed = true;
    for (const route of this.#routes.values()) route.close();
    this.#routes.clear();
    this.#byName.clear();
  }

  /** The route `name` goes to, if it is up. */
  #up(name: string): (Route & { readonly channel: Channel }) | undefined {
    const route = this.#byName.get(name);
    return route?.state === 'up' ? (route as Route & { readonly channel: Channel }) : undefined;
  }

  /** `name` no longer goes to `route`. */
  #drop(name: string, route: Route): void {
    route.names.delete(name);
    if (this.#byName.get(name) === route) this.#byName.delete(name);
  }

  #began(route: Route): void {
    route.pending++;
    this.#pending++;
  }

  #ended(route: Route): void {
    route.pending--;
    this.#pending--;
    this.#closeIfUnused(route);
    if (this.#pending === 0) this.#onIdle();
  }

  /** A route no name goes to any more is closed once nothing is out on it. */
  #closeIfUnused(route: Route): void {
    if (route.names.size > 0 || route.pending > 0 || route.state !== 'up') return;
    this.#forget(route);
    route.close();
  }

  /** No name goes to `route` any more; it leaves the routes unless kept as unreachable. */
  #forget(route: Route): void {
    if (route.state !== 'unreachable' && this.#routes.get(route.address) === route) {
      this.#routes.delete(route.address);
    }
    for (const name of route.names) {
      if (this.#byName.get(name) === route) this.#byName.delete(name);
    }
    route.names.clear();
  }

  async #connect(route: Route): Promise<void> {
    let socket: FdSocket | undefined;
    let end: DriverQueuePair | undefined;
    try {
      socket = await FdSocket.connect(route.address);
      end = await offerQueuePair(socket, {
        ...this.#endpoint,
        ...(this.#queueSize !== undefined && { queueSize: this.#queueSize }),
        packed: this.#packed,
        signal: AbortSignal.timeout(HANDSHAKE_MS),
      });
      if (route.state === 'closed' || this.#closed) throw new Error('closed meanwhile');
      const channel = new Channel(end, { maxMessage: this.#maxMessage });
      const ownSocket = socket;
      void channel.closed.then(() => {
        ownSocket.close();
        route.state = 'closed';
        this.#forget(route);
      });
      route.channel = channel;
      route.state = 'up';
      this.#closeIfUnused(route);
    } catch {
      // Unreachable (another mount namespace, a dead responder, a refusal): the bus it is.
      end?.close();
      socket?.close();
      route.state = 'unreachable';
      this.#forget(route);
    }
  }
}

/** The responder answered that it does not serve the name (no handler ran). */
function notServed(error: unknown): boolean {
  return error instanceof VringError && error.code === 'ERR_VRING_NO_RESPONDERS';
}
