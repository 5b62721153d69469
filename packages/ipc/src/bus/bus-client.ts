import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  type ConnectAccessOptions,
  type EndpointOptions,
  type FramePort,
  type NotificationMode,
  type ReconnectOptions,
  VirtioUser,
  type VirtioUserEvent,
  VringError,
  WaiterQueue,
} from '@vring/core';
import type { Observable } from 'rxjs';
import { Observable as RxObservable } from 'rxjs';
import { Link } from '../link/link.js';
import { MessageCodec, unencodable } from '../message-codec.js';
import { type Replies, type RequestManyOptions, replies } from '../rpc/replies.js';
import { Requester, type RequestOptions } from '../rpc/requester.js';
import { Responder, type RpcHandler, type Service } from '../rpc/responder.js';
import { sendWithin } from '../send-deadline.js';
import {
  type BusMessage,
  type SubscribeOptions,
  Subscription,
  type SubscriptionOwner,
} from '../subscription.js';
import { CheckedTopics, checkQueueName, TopicPattern } from '../topic.js';
import { ValueViews } from '../value-views.js';
import { checkHeaders, type MessageHeaders, receivedHeaders } from '../wire/headers.js';
import { BUS_PROTOCOL_VERSION, type BusFeature, Kind, PolicyCode } from '../wire/message-kinds.js';
import type { BusReport, ClientStats } from './bus-stats.js';
import { BusTracing } from './bus-tracing.js';
import { DirectRouteListener } from './direct-route-listener.js';
import { DirectRoutes } from './direct-routes.js';
import { isReserved, STATS_NAME } from './reserved-names.js';
import { ROUTE_SOCKET_PREFIX, removeStaleRouteSockets } from './stale-route-sockets.js';

/** Options of {@link connectBus}. */
export interface ConnectBusOptions extends ReconnectOptions, ConnectAccessOptions {
  /**
   * Aborts the wait for the bus (a bus that is not there yet is retried until then, with
   * the delays of `retryInitialMs` and `retryMaxMs`).
   */
  signal?: AbortSignal;
  /**
   * Notification policy of this client's rings (default `adaptive`, the queue pairs'
   * default: it spins for a reply only after traffic, and costs nothing when idle). `event`
   * never spins; `poll` never sleeps (see `NotificationMode` in @vring/core).
   */
  notification?: NotificationMode;
  /** Spin budget in µs for `adaptive` / `poll`. */
  spinMicros?: number;
  /** Largest message accepted, encoded (default 64 MiB). */
  maxMessage?: number;
  /**
   * Largest frame sent or received (default 9216; the bus may allow less, see
   * `BusOptions.maxFrame`). A value that fits one frame goes whole: encoded where the bus
   * reads it, read where the bus wrote it. The rings grow with it, to hold four frames.
   */
  maxFrame?: number;
  /** Descriptors per ring (default 256). */
  queueSize?: number;
  /**
   * Run this client's rings packed (VIRTIO_F_RING_PACKED) instead of split (default false).
   * The client asks and the bus accepts, unless it was started with `packed: false`
   * (`vring bus --split-only`): `connectBus` then rejects with `ERR_VRING_FEATURE_MISMATCH`
   * (reason `packed-refused`) rather than run split rings unasked. The format is per
   * client: split and packed clients share a bus, and the bus reports each one's
   * ({@link ClientStats.rings}). The direct routes this client opens run packed too. See
   * docs/bus.md, "Packed rings".
   */
  packed?: boolean;
  /** Told when the connection to the bus drops and comes back. */
  onEvent?: (event: BusClientEvent) => void;
  /**
   * Take part in direct routes (default true): once the bus has routed a request for a
   * name to the only client serving it, and that client takes part too, later requests for
   * the name go straight to it over a queue pair of their own, one hop each way instead of
   * two through the bus; the bus remains the fallback. This client also listens, next to the
   * bus's socket, for requesters of the names it serves. Needs a bus of this version or
   * later. See docs/bus.md, "Direct routes".
   */
  directRoutes?: boolean;
  /**
   * The order this client's messages keep on their way to each subscriber (default
   * `topic`). `topic`: messages on one topic arrive in publish order, and a large message
   * does not hold up smaller ones on other topics (they may overtake it). `publisher`: all
   * of them arrive in publish order, whatever their topics, as on one NATS connection; a
   * message then waits for a large one published before it. Needs a bus that supports
   * `order` (else publish fails with `ERR_VRING_FEATURE_MISMATCH`). See
   * docs/bus.md, "Ordering".
   */
  ordering?: 'topic' | 'publisher';
  /**
   * Hand out the binary values of a large delivered message (one that came whole in a
   * frame, see `maxFrame`) as views of this client's receive buffers, where the bus wrote
   * it, instead of copies (default false): no copy and no allocation for its bytes. The
   * buffers stay held until {@link BusClient.release} is called with the message's value;
   * meanwhile the bus writes this client nothing more once they are full (its queue for the
   * client fills, then `block` holds the publishers back). A value delivered to several
   * subscriptions of the client is one value: release it once, when all are done with it.
   * The bus can still write to the memory a view shows only by a fault of its own. Small
   * messages, and messages cut into frames, are copies as ever.
   */
  views?: boolean;
}

/** Options of {@link BusClient.publish}. */
export interface PublishOptions {
  /** Aborting withdraws the message if none of it is in the ring yet. */
  signal?: AbortSignal;
  /**
   * Milliseconds the message may wait for room in the ring (by default it waits as long as
   * it takes: a full `block` subscriber holds it back). Past it the publish rejects with
   * `ERR_VRING_TIMEOUT` and the message is withdrawn, unless part of it is in the ring
   * already.
   */
  timeout?: number;
  /**
   * Headers sent with the message: each subscriber sees them in {@link BusMessage.headers}.
   * Needs a bus that supports `headers` (else `ERR_VRING_FEATURE_MISMATCH`); subscribers
   * from before headers get the message without them.
   */
  headers?: MessageHeaders;
}

/** What happened to a client's connection to its bus. */
export type BusClientEvent =
  | {
      /** Connected (again): the client's subscriptions and services are sent to the bus anew. */
      type: 'connected';
      /** Which connection this is, counting from 1 (reconnections count up). */
      connection: number;
    }
  | {
      /** The connection to the bus dropped. */
      type: 'disconnected';
      /** Why, or undefined when it closed cleanly. */
      error: VringError | undefined;
    };

/** What a client talks to its bus over: a VirtioUser, or in-process (`Bus.connect`). @internal */
export type BusConnection = FramePort & { readonly connected: boolean };

/** @internal */
export const DEFAULT_MAX_FRAME = 9216;

/** Largest message a client accepts, encoded, unless told otherwise. */
const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;

function protocolError(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed message from the bus: ${what}`, {
    reason: 'bad-envelope',
  });
}

/**
 * Attaches to a bus (see {@link createBus}) at `path` as a virtio-user front-end and resolves
 * once the bus has answered. A bus that is not there yet is waited for.
 *
 * @example
 * ```ts
 * await using client = await connectBus('/tmp/bus.sock');
 * await client.publish('prices.AAPL', { price: 189.5 });
 * ```
 */
export async function connectBus(
  path: string,
  options: ConnectBusOptions = {},
): Promise<BusClient> {
  inPublisherOrder(options);
  const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  let client: BusClient | undefined;
  const device = await VirtioUser.open(path, {
    ...(options.signal && { signal: options.signal }),
    ...(options.notification && { notification: options.notification }),
    ...(options.spinMicros !== undefined && { spinMicros: options.spinMicros }),
    ...(options.queueSize !== undefined && { queueSize: options.queueSize }),
    bufferSize: bufferSizeFor(maxFrame, options.queueSize ?? 256),
    ...(options.retryInitialMs !== undefined && { retryInitialMs: options.retryInitialMs }),
    ...(options.retryMaxMs !== undefined && { retryMaxMs: options.retryMaxMs }),
    ...(options.expectPeerUid !== undefined && { expectPeerUid: options.expectPeerUid }),
    ...(options.packed && { packedRings: true }),
    maxMessage: maxFrame,
    onEvent: (event) => client?.onDeviceEvent(event),
  });
  if (options.packed && !device.packedRings) {
    device.close();
    throw new VringError(
      'ERR_VRING_FEATURE_MISMATCH',
      `the bus at ${path} does not accept packed rings (packed: false, or an older bus)`,
      { reason: 'packed-refused' },
    );
  }
  const listener =
    (options.directRoutes ?? true) ? await listenForRequesters(path, options) : undefined;
  client = new BusClient(device, maxFrame, options, listener);
  await client.ready(options.signal);
  return client;
}

/**
 * Packet buffers for frames of `maxFrame` bytes: the rings hold four frames (and their net
 * headers) each way, so large frames stream; 2 KiB, a whole Ethernet frame, at the least.
 */
function bufferSizeFor(maxFrame: number, queueSize: number): number {
  return Math.max(2048, Math.ceil((4 * (maxFrame + 12)) / queueSize / 64) * 64);
}

let listeners = 0;

/**
 * Where this client waits for requesters on direct routes: next to the bus's socket (a
 * container that shares the bus's directory shares this too), else in the temp directory.
 * Undefined when neither can be listened on: the client then only asks.
 */
async function listenForRequesters(
  busPath: string,
  options: ConnectBusOptions,
): Promise<DirectRouteListener | undefined> {
  const endpoint = endpointOptions(options);
  const maxMessage = options.maxMessage ?? DEFAULT_MAX_MESSAGE;
  // The nonce keeps two clients apart whose pids are alike: containers' clients are all
  // pid 1, and an address offered across mount namespaces may name another one's socket.
  const nonce = randomBytes(4).toString('hex');
  const name = `${ROUTE_SOCKET_PREFIX}${process.pid}-${++listeners}-${nonce}`;
  for (const dir of [dirname(busPath), tmpdir()]) {
    const address = join(dir, name);
    // sun_path holds 107 bytes and a terminating NUL.
    if (Buffer.byteLength(address) > 107) continue;
    try {
      const listener = await DirectRouteListener.listen(address, endpoint, maxMessage);
      void removeStaleRouteSockets(dir);
      return listener;
    } catch {
      // Not writable, say: try the next place.
    }
  }
  return undefined;
}

/**
 * Whether `options` ask for publisher order.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for an ordering that is neither.
 * @internal
 */
export function inPublisherOrder(options: Pick<ConnectBusOptions, 'ordering'>): boolean {
  const { ordering } = options;
  if (ordering === undefined || ordering === 'topic') return false;
  if (ordering === 'publisher') return true;
  throw new VringError(
    'ERR_VRING_INVALID_ARGUMENT',
    `ordering must be 'topic' or 'publisher', not ${String(ordering)}`,
  );
}

/**
 * The send lane of a client's publishes in publisher order: one for all of them. Never a
 * topic (no topic is empty), and a string, so never a request's lane (its id) either.
 */
const PUBLISHER_LANE = '';

/** The notification options of a client's rings, for its direct routes too. */
function endpointOptions(options: ConnectBusOptions): EndpointOptions {
  return {
    ...(options.notification && { notification: options.notification }),
    ...(options.spinMicros !== undefined && { spinMicros: options.spinMicros }),
  };
}

/**
 * A process's connection to a bus: publish and subscribe to topics, serve and call RPC
 * names. When the bus restarts, the client reconnects by itself and subscribes and serves
 * again; messages in flight at that moment are lost (at most once, like any broker restart),
 * and requests in flight fail with `ERR_VRING_PEER_DISCONNECTED`.
 *
 * @example
 * ```ts
 * // One process serves a name and subscribes to every price:
 * const server = await connectBus('/tmp/bus.sock');
 * server.serve<[number, number], number>('math.add', ([a, b]) => a + b);
 * for await (const { topic, value } of server.subscribe<{ price: number }>('prices.>')) {
 *   console.log(topic, value.price); // prices.AAPL 189.5
 * }
 *
 * // Another calls it and publishes:
 * const client = await connectBus('/tmp/bus.sock');
 * const sum = await client.request<number>('math.add', [2, 3]); // 5
 * await client.publish('prices.AAPL', { price: 189.5 });
 * ```
 */
export class BusClient implements AsyncDisposable {
  /** Settles when the client is closed (`undefined`) or failed for good (the error). */
  readonly closed: Promise<VringError | undefined>;

  readonly #device: BusConnection;
  readonly #link: Link;
  readonly #codec = new MessageCodec();
  readonly #checkedTopics = new CheckedTopics();
  readonly #requester: Requester;
  readonly #responder: Responder;
  readonly #subscriptions = new Map<number, Subscription<unknown>>();
  readonly #fullSubscriptions = new Set<Subscription<unknown>>();
  readonly #options: ConnectBusOptions;
  readonly #maxFrame: number;
  #nextSubscription = 1;
  #nextPing = 1;
  /** drain() waits here for handlers and requests to finish. */
  readonly #quietWaiters = new WaiterQueue<void>();
  /**
   * flush() calls waiting for their PONG, by ping id: the bus answers each PING, and a ping
   * whose wait was aborted is still answered (to nobody).
   */
  readonly #pings = new Map<number, WaiterQueue<void>>();
  /** Waiting for the bus to answer our HELLO is work in progress: the process stays up. */
  readonly #helloWaiters = new WaiterQueue<void>(() => this.#updateKeepAlive());
  #sessions = 0;
  #closing = false;
  /** Direct routes to responders, when this client takes part (see ConnectBusOptions). */
  readonly #routes: DirectRoutes | undefined;
  /** Where requesters reach the names this client serves directly. */
  readonly #listener: DirectRouteListener | undefined;
  /** What the bus of the current (or last) session said it supports, in its HELLO. */
  #busFeatures: ReadonlySet<string> = new Set();
  /** OpenTelemetry spans and trace context, when an SDK was registered as the client started. */
  readonly #tracing = BusTracing.ifRegistered();
  /** Publishes keep publisher order (see {@link ConnectBusOptions.ordering}). */
  readonly #inOrder: boolean;
  /** `views` mode (see {@link ConnectBusOptions.views}). */
  readonly #views: ValueViews | undefined;

  /** @internal (use {@link connectBus}) */
  constructor(
    device: BusConnection,
    maxFrame: number,
    options: ConnectBusOptions,
    listener?: DirectRouteListener,
  ) {
    this.#device = device;
    this.#options = options;
    this.#inOrder = inPublisherOrder(options);
    this.#maxFrame = maxFrame;
    const maxMessage = options.maxMessage ?? DEFAULT_MAX_MESSAGE;
    this.#listener = listener;
    this.#routes =
      (options.directRoutes ?? true)
        ? new DirectRoutes(
            endpointOptions(options),
            { queueSize: options.queueSize, maxMessage, packed: options.packed ?? false },
            () => this.#checkQuiet(),
          )
        : undefined;
    this.#link = new Link(device, {
      maxFrame,
      maxMessage,
      syncKind: Kind.HELLO,
      codec: this.#codec,
      onMessage: (kind, data, start, end, owned) => this.#onMessage(kind, data, start, end, owned),
    });
    this.#views = options.views
      ? new ValueViews(this.#link, this.#codec, device.lending?.inPlaceMin)
      : undefined;
    this.#requester = new Requester(this.#link, this.#codec, () => {
      this.#updateKeepAlive();
      this.#checkQuiet();
    });
    this.#responder = new Responder(
      this.#link,
      this.#codec,
      (event, name) => {
        if (event === 'serve') this.#link.post(Kind.SERVE, this.#codec.encode([name]));
        else if (event === 'unserve') this.#link.post(Kind.UNSERVE, this.#codec.encode([name]));
        else if (event === 'busy') this.#link.pause('handlers');
        else if (event === 'idle') this.#link.resume('handlers');
        else this.#checkQuiet();
        this.#updateKeepAlive();
      },
      // A bus from before headers would disconnect a responder whose reply had some.
      { sendsHeaders: () => this.#busFeatures.has('headers'), tracer: this.#tracing },
    );
    this.closed = this.#link.closed.then((error) => {
      this.#shutDown(error ?? new VringError('ERR_VRING_CLOSED', 'bus client is closed'));
      return error;
    });
    this.#link.post(Kind.HELLO, this.#hello());
    this.#link.resume();
  }

  /** Whether the connection to the bus is up (it comes back by itself when the bus returns). */
  get connected(): boolean {
    return this.#device.connected;
  }

  /**
   * Publishes `value` on `topic` to every matching subscription on the bus. Resolves when
   * the message is in the ring; waits while a `block` subscriber is full. Aborting withdraws
   * the message if none of it is in the ring yet (rejecting with the signal's reason).
   */
  publish(topic: string, value: unknown, options: PublishOptions = {}): Promise<void> {
    const tracing = this.#tracing;
    if (tracing && this.#busFeatures.has('headers')) {
      return tracing.publish(topic, options.headers, (headers) =>
        sendWithin(options.timeout, options.signal, (signal) =>
          this.#publish(topic, value, headers, signal),
        ),
      );
    }
    if (options.timeout === undefined) {
      return this.#publish(topic, value, options.headers, options.signal);
    }
    return sendWithin(options.timeout, options.signal, (signal) =>
      this.#publish(topic, value, options.headers, signal),
    );
  }

  /**
   * Gives back the receive buffers a value delivered in `views` mode is a view of (see
   * {@link ConnectBusOptions.views}): pass the message's `value`. Its binary values must not
   * be read after. Does nothing for a value that is no view (a small message, a client not
   * in `views` mode).
   */
  release(value: unknown): void {
    this.#views?.release(value);
  }

  #publish(
    topic: string,
    value: unknown,
    headers: MessageHeaders | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // The topic is the lane: one topic's messages arrive in publish order, while a large
    // message on one topic shares the ring with the others. In publisher order, one lane
    // for every topic, and a kind that tells the bus to do the same.
    let kind: number = Kind.PUBLISH;
    let lane = topic;
    try {
      this.#checkedTopics.check(topic);
      if (isReserved(topic)) throw reservedError(topic);
      if (this.#inOrder) {
        this.#requireFeature('order');
        kind = Kind.PUBLISH_IN_ORDER;
        lane = PUBLISHER_LANE;
      }
      if (headers !== undefined && this.#sendsHeaders(headers)) {
        return this.#link.sendValue(kind, [topic, value, headers], lane, signal);
      }
    } catch (error) {
      return Promise.reject(asArgumentError(error));
    }
    return this.#link.sendValue(kind, [topic, value], lane, signal);
  }

  /**
   * Subscribes to `pattern` (a topic, `*` for one token, a final `>` for the rest). The bus
   * sends matching messages from the moment it has the subscription. With `queue`, the
   * subscription joins that queue group: each message goes to one member of the group.
   */
  subscribe<T = unknown>(pattern: string, options: SubscribeOptions = {}): Subscription<T> {
    new TopicPattern(pattern); // throws for a malformed pattern
    if (options.queue !== undefined) checkQueueName(options.queue);
    if (this.#link.done) throw this.#link.closedError;
    if (options.queue !== undefined) this.#requireFeature('queue-groups');
    const id = this.#nextSubscription++;
    const subscription = new Subscription<T>(id, pattern, options, this.#subscriptionOwner);
    this.#subscriptions.set(id, subscription as Subscription<unknown>);
    this.#link.post(Kind.SUBSCRIBE, this.#subscribeBody(subscription as Subscription<unknown>));
    if (options.signal?.aborted) subscription.unsubscribe();
    return subscription;
  }

  /**
   * `pattern`'s messages as an Observable: each subscriber gets its own subscription on the
   * bus, and unsubscribing tears it down there.
   */
  observe<T = unknown>(
    pattern: string,
    options: Omit<SubscribeOptions, 'signal'> = {},
  ): Observable<BusMessage<T>> {
    return new RxObservable<BusMessage<T>>((subscriber) =>
      this.subscribe<T>(pattern, options).observe().subscribe(subscriber),
    );
  }

  /**
   * Answers requests for `name` (see {@link RpcHandler}). The bus spreads requests among the
   * clients that serve a name. Names whose first token is `$vring` are the bus's own.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a reserved name.
   */
  serve<Q = unknown, R = unknown>(name: string, handler: RpcHandler<Q, R>): Service {
    if (this.#link.done) throw this.#link.closedError;
    if (isReserved(name)) throw reservedError(name);
    const service = this.#responder.serve(name, handler);
    const listener = this.#listener;
    if (!listener) return service;
    listener.serve(name, handler as RpcHandler);
    const stop = () => {
      service.stop();
      listener.unserve(name);
    };
    return { name, stop, [Symbol.dispose]: stop };
  }

  /**
   * Sends a request to one of the clients serving `name` and resolves with its reply.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` (a malformed name, a timeout that is not
   * positive, a value msgpack cannot encode), `ERR_VRING_NO_RESPONDERS` (nobody serves
   * `name`), `ERR_VRING_TIMEOUT`, `ERR_VRING_ABORTED`, `ERR_VRING_PEER_DISCONNECTED` (the bus
   * or the responder went away), `ERR_VRING_CLOSED`, or the handler's own error code.
   */
  request<R = unknown>(name: string, value: unknown, options?: RequestOptions): Promise<R> {
    const tracing = this.#tracing;
    if (tracing && this.#busFeatures.has('headers')) {
      return tracing.request(name, options, (traced) => this.#request<R>(name, value, traced));
    }
    return this.#request<R>(name, value, options);
  }

  #request<R>(name: string, value: unknown, options: RequestOptions | undefined): Promise<R> {
    try {
      if (options?.headers !== undefined) this.#sendsHeaders(options.headers);
    } catch (error) {
      return Promise.reject(error);
    }
    const routes = this.#routes;
    if (!routes) return this.#requester.request<R>(name, value, options);
    return routes.request<R>(name, value, options, () =>
      this.#requester.request<R>(name, value, options),
    );
  }

  /**
   * Sends a request to every client serving `name` and gives their replies, as they come, as
   * an Observable that is also an AsyncIterable. Each responder contributes its reply (or,
   * for a streaming handler, each value it streams). The replies end when `maxReplies` have
   * come, when `timeout` or `stall` passes, or once every responder has answered (see
   * {@link Replies} for how they fail). Needs a bus of this version or later.
   *
   * @example
   * ```ts
   * for await (const status of client.requestMany<Status>('health', null, { stall: 50 })) {
   *   console.log(status.host, status.load);
   * }
   * ```
   */
  requestMany<R = unknown>(
    name: string,
    value: unknown,
    options: RequestManyOptions = {},
  ): Replies<R> {
    try {
      this.#requireFeature('request-many');
      if (options.headers !== undefined) this.#sendsHeaders(options.headers);
    } catch (error) {
      return replies<R>((sink) => {
        sink.fail(error as VringError);
        return () => {};
      }, options);
    }
    return this.#requester.requestMany<R>(name, value, options);
  }

  /**
   * The bus's counters: its totals, each client's and each subject's (see {@link BusReport};
   * a request to `$vring.stats`, answered by the bus itself).
   * @throws VringError `ERR_VRING_FEATURE_MISMATCH` (reason `missing-bus-feature`) from a bus
   * too old to count them, and the errors of {@link BusClient.request}.
   */
  busReport(options?: RequestOptions): Promise<BusReport> {
    try {
      this.#requireFeature('stats');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#requester.request<BusReport>(STATS_NAME, null, options);
  }

  /** Whether the bus (of the current session, or the last one) supports `feature`. */
  supports(feature: BusFeature): boolean {
    return this.#busFeatures.has(feature);
  }

  /**
   * Sends a request whose handler streams its replies (returns an Observable or an
   * AsyncIterable). Unsubscribing cancels the handler.
   */
  requestStream<R = unknown>(
    name: string,
    value: unknown,
    options?: RequestOptions,
  ): Observable<R> {
    const tracing = this.#tracing;
    if (tracing && this.#busFeatures.has('headers')) {
      return tracing.requestStream(name, options, (traced) =>
        this.#requestStream<R>(name, value, traced),
      );
    }
    return this.#requestStream<R>(name, value, options);
  }

  #requestStream<R>(
    name: string,
    value: unknown,
    options: RequestOptions | undefined,
  ): Observable<R> {
    if (options?.headers !== undefined) {
      try {
        this.#sendsHeaders(options.headers);
      } catch (error) {
        return new RxObservable<R>((subscriber) => subscriber.error(error));
      }
    }
    const routes = this.#routes;
    if (!routes) return this.#requester.requestStream<R>(name, value, options);
    return routes.requestStream<R>(name, value, options, () =>
      this.#requester.requestStream<R>(name, value, options),
    );
  }

  /**
   * Resolves once the bus has handled everything this client sent before the call: its
   * subscriptions are in place, its publishes routed.
   */
  flush(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#link.done) return Promise.reject(this.#link.closedError);
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.#nextPing;
    this.#nextPing = (id % 0xffff_ffff) + 1;
    const pong = new WaiterQueue<void>(() => {
      if (pong.size === 0) this.#pings.delete(id);
      this.#updateKeepAlive();
    });
    this.#pings.set(id, pong);
    const answered = pong.wait(signal);
    this.#link.post(Kind.PING, this.#codec.encode([id]));
    return answered;
  }

  /**
   * Stops serving, waits for the handlers running and the requests out to finish and for
   * everything published to reach the ring, then closes.
   */
  async drain(): Promise<void> {
    this.#responder.stopServing();
    this.#listener?.stopServing();
    const quiet = this.#quietWaiters.wait();
    this.#checkQuiet();
    await quiet;
    // Requesters that reached this client directly get their answers too.
    await this.#listener?.handlersDone();
    await this.#link.drain();
    this.close();
    await this.closed;
  }

  /** Closes the connection: subscriptions end, requests in flight fail with `ERR_VRING_CLOSED`. */
  close(): void {
    this.#closing = true;
    this.#link.close();
  }

  /** Same as {@link BusClient.drain}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.drain();
  }

  /** Resolves once the bus has answered; a client that does not get there is closed. @internal */
  ready(signal: AbortSignal | undefined): Promise<void> {
    if (this.#sessions > 0) return Promise.resolve();
    return this.#helloWaiters.wait(signal).catch((error: unknown) => {
      this.close();
      throw error;
    });
  }

  /** The VirtioUser's connection dropped or came back. @internal */
  onDeviceEvent(event: VirtioUserEvent): void {
    if (event.type === 'disconnected') {
      const error = new VringError('ERR_VRING_PEER_DISCONNECTED', 'the bus went away', {
        cause: event.error,
      });
      this.#requester.failAll(error);
      this.#responder.stopAll(error);
      this.#failPings(error);
      this.#emit({ type: 'disconnected', error: event.error });
    } else if (event.type === 'connected') {
      // A new bus knows nothing of us: a fresh session, with our subscriptions and names
      // sent again ahead of anything queued.
      const preamble: Array<{ kind: number; body: Uint8Array }> = [
        { kind: Kind.HELLO, body: this.#hello() },
      ];
      for (const s of this.#subscriptions.values()) {
        preamble.push({ kind: Kind.SUBSCRIBE, body: this.#subscribeBody(s) });
      }
      for (const name of this.#responder.names) {
        preamble.push({ kind: Kind.SERVE, body: this.#codec.encode([name]) });
      }
      // Routes up stay up and in use: they never needed the bus. (ROUTE goes once the new
      // bus's HELLO says it knows direct routes.)
      this.#link.restart(preamble);
      this.#emit({ type: 'connected', connection: event.connection });
    }
  }

  readonly #subscriptionOwner: SubscriptionOwner = {
    setFull: (subscription, full) => {
      if (full) this.#fullSubscriptions.add(subscription);
      else this.#fullSubscriptions.delete(subscription);
      if (this.#fullSubscriptions.size > 0) this.#link.pause('subscribers');
      else this.#link.resume('subscribers');
    },
    waitingChanged: () => this.#updateKeepAlive(),
    unsubscribe: (subscription) => {
      if (!this.#subscriptions.delete(subscription.id)) return;
      this.#link.post(Kind.UNSUBSCRIBE, this.#codec.encode([subscription.id]));
      this.#updateKeepAlive();
    },
  };

  /**
   * Refuses a call the bus would not understand: a bus from before `feature` disconnects a
   * client that sends it.
   */
  #requireFeature(feature: BusFeature): void {
    if (this.#busFeatures.has(feature)) return;
    throw new VringError(
      'ERR_VRING_FEATURE_MISMATCH',
      `the bus does not support ${feature} (it is older than this client)`,
      { reason: 'missing-bus-feature', data: { feature } },
    );
  }

  /**
   * Whether `headers` has any to send; refuses headers that break the bounds, and headers
   * for a bus that would not understand them.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT`, `ERR_VRING_FEATURE_MISMATCH`.
   */
  #sendsHeaders(headers: MessageHeaders): boolean {
    if (!checkHeaders(headers)) return false;
    this.#requireFeature('headers');
    return true;
  }

  #hello(): Uint8Array {
    return this.#codec.encode([BUS_PROTOCOL_VERSION, this.#maxFrame]);
  }

  /** ROUTE to the bus: this client takes part in direct routes, reachable here (or not). */
  #routeOffer(): Uint8Array {
    return this.#codec.encode([this.#listener?.address ?? null]);
  }

  #subscribeBody(s: Subscription<unknown>): Uint8Array {
    const policy = PolicyCode[s.policy];
    // A plain subscription keeps the three-element form every bus version reads.
    return this.#codec.encode(
      s.queue === undefined ? [s.id, s.pattern, policy] : [s.id, s.pattern, policy, s.queue],
    );
  }

  #onMessage(kind: number, data: Uint8Array, start: number, end: number, owned: boolean): void {
    switch (kind) {
      case Kind.DELIVER:
        this.#deliver(data, start, end, owned);
        return;
      case Kind.REPLY:
        this.#requester.onReply(data, start, end, owned);
        return;
      case Kind.REQUEST:
        this.#responder.onRequest(data, start, end, owned);
        return;
      case Kind.CANCEL:
        this.#responder.onCancel(data, start, end, owned);
        return;
      case Kind.DROPPED: {
        const dropped = this.#codec.decode(data, start, end, owned);
        if (
          !Array.isArray(dropped) ||
          typeof dropped[0] !== 'number' ||
          typeof dropped[1] !== 'number'
        ) {
          throw protocolError('DROPPED');
        }
        this.#subscriptions.get(dropped[0])?.addDropped(dropped[1]);
        return;
      }
      case Kind.PONG: {
        const [id] = this.#codec.decode(data, start, end, owned) as [number];
        this.#pings.get(id)?.resolveAll();
        return;
      }
      case Kind.ROUTE: {
        const route = this.#codec.decode(data, start, end, owned);
        if (
          !this.#routes ||
          !Array.isArray(route) ||
          typeof route[0] !== 'string' ||
          (route[1] !== null && typeof route[1] !== 'string')
        ) {
          throw protocolError('ROUTE');
        }
        this.#routes.offer(route[0], route[1] as string | null);
        return;
      }
      case Kind.HELLO: {
        const hello = this.#codec.decode(data, start, end, owned);
        if (!Array.isArray(hello) || hello[0] !== BUS_PROTOCOL_VERSION) {
          throw new VringError('ERR_VRING_PROTOCOL', `the bus speaks another protocol version`, {
            reason: 'version',
          });
        }
        this.#busFeatures = featuresOf(hello[2]);
        // A new session is a bus that made none of the routes in use: it could not take them
        // back (when a second client serves a name, say). They are dropped, and the new bus
        // offers them again after routing a request.
        if (this.#sessions > 0) this.#routes?.forgetOffers();
        // Until the bus knows we read headers it sends us messages without them.
        if (this.#busFeatures.has('headers')) {
          this.#link.post(Kind.FEATURES, this.#codec.encode([['headers']]));
        }
        // Direct routes need a bus that has them: an older one would disconnect us for ROUTE.
        if (this.#routes && this.#busFeatures.has('direct-routes')) {
          this.#link.post(Kind.ROUTE, this.#routeOffer());
        }
        this.#sessions++;
        this.#helloWaiters.resolveAll();
        return;
      }
      default:
        throw protocolError(`unexpected kind ${kind}`);
    }
  }

  #deliver(data: Uint8Array, start: number, end: number, owned: boolean): void {
    const views = this.#views;
    const message = views
      ? views.decode(data, start, end, owned, valueOfDeliver)
      : this.#codec.decode(data, start, end, owned);
    if (!Array.isArray(message) || (message.length !== 3 && message.length !== 4)) {
      views?.release(valueOfDeliver(message));
      throw protocolError('DELIVER');
    }
    const [ids, topic, value] = message as [unknown, unknown, unknown];
    if (!Array.isArray(ids) || typeof topic !== 'string') {
      views?.release(value);
      throw protocolError('DELIVER fields');
    }
    // Only a message with headers has the property: the others keep their shape.
    const delivered: BusMessage<unknown> =
      message.length === 4
        ? { topic, value, headers: receivedHeaders(message[3]) }
        : { topic, value };
    this.#tracing?.deliver(topic, delivered.headers);
    let kept = false;
    for (const id of ids) {
      // A subscription just ended may still get messages the bus had sent.
      if (this.#subscriptions.get(id as number)?.push(delivered, end - start)) kept = true;
    }
    // Views that no subscription kept (ended, or dropped it) go back at once.
    if (!kept) views?.release(value);
  }

  #updateKeepAlive(): void {
    let waiting =
      this.#requester.pending > 0 ||
      this.#responder.serving ||
      this.#pings.size > 0 ||
      this.#helloWaiters.size > 0;
    if (!waiting) {
      for (const s of this.#subscriptions.values()) {
        if (s.waiting) {
          waiting = true;
          break;
        }
      }
    }
    this.#link.keepAlive(waiting);
  }

  /** Resolves drain()'s wait once no handler runs and no request is out (or the link died). */
  #checkQuiet(): void {
    if (this.#quietWaiters.size === 0) return;
    if (
      !this.#link.done &&
      (this.#responder.active > 0 ||
        this.#requester.pending > 0 ||
        (this.#routes?.pending ?? 0) > 0)
    ) {
      return;
    }
    this.#quietWaiters.resolveAll();
  }

  #failPings(error: VringError): void {
    // Each queue leaves the map as it empties.
    for (const pong of [...this.#pings.values()]) pong.rejectAll(error);
  }

  #emit(event: BusClientEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch {
      // A logging callback must not break the client.
    }
  }

  #shutDown(error: VringError): void {
    const reason = this.#closing
      ? new VringError('ERR_VRING_CLOSED', 'bus client is closed')
      : error;
    this.#requester.failAll(reason);
    this.#responder.stopAll(reason);
    this.#helloWaiters.rejectAll(reason);
    this.#failPings(reason);
    this.#routes?.close();
    this.#listener?.close();
    this.#checkQuiet();
    const subscriptions = [...this.#subscriptions.values()];
    this.#subscriptions.clear();
    for (const s of subscriptions)
      s.end(this.#closing || error.code === 'ERR_VRING_CLOSED' ? undefined : error);
  }
}

/** What holds the views of a DELIVER's body: its value (the rest holds none). */
function valueOfDeliver(message: unknown): unknown {
  return Array.isArray(message) ? message[2] : undefined;
}

/** The features a bus's HELLO lists; a bus from before the list has none. */
function featuresOf(list: unknown): ReadonlySet<string> {
  if (list === undefined) return new Set();
  if (!Array.isArray(list) || !list.every((f) => typeof f === 'string')) {
    throw protocolError('HELLO features');
  }
  return new Set(list);
}

function reservedError(name: string): VringError {
  return new VringError(
    'ERR_VRING_INVALID_ARGUMENT',
    `${name} is reserved for the bus (names whose first token is $vring)`,
  );
}

function asArgumentError(error: unknown): VringError {
  return error instanceof VringError ? error : unencodable(error);
}
