import {
  type FramePort,
  type ListenAccessOptions,
  type NotificationMode,
  type PeerCredentials,
  type PeerLimitOptions,
  VhostUserBackend,
  VhostUserPort,
  VringError,
} from '@vring/core';
import { MessageCodec } from '../message-codec.js';
import { checkTopic, TopicPattern } from '../topic.js';
import { FRAME_HEADER_BYTES } from '../wire/frame-header.js';
import { MAX_HEADER_COUNT, MAX_HEADER_NAME_BYTES, MAX_HEADERS_BYTES } from '../wire/headers.js';
import {
  BUS_FEATURES,
  BUS_PROTOCOL_VERSION,
  Kind,
  MAX_NAME_BYTES,
  MAX_VALUE_DEPTH,
  PolicyCode,
  ReplyStatus,
} from '../wire/message-kinds.js';
import {
  MsgpackPrefixReader,
  MsgpackPrefixWriter,
  prefixCapacity,
} from '../wire/msgpack-prefix.js';
import {
  BusClient,
  type ConnectBusOptions,
  DEFAULT_MAX_FRAME,
  inPublisherOrder,
} from './bus-client.js';
import { BusMember, type FanOut } from './bus-member.js';
import {
  type BusReport,
  type BusStats,
  type ClientStats,
  type SubjectCounters,
  SubjectTally,
} from './bus-stats.js';
import { InProcessTransport } from './in-process-transport.js';
import { type NatsBridge, type NatsBridgeOptions, startNatsBridge } from './nats-bridge.js';
import type { QueueGroup } from './queue-group.js';
import { isReserved, STATS_NAME } from './reserved-names.js';
import { type Delivery, deliverHeadWithHeaders, RouteTable } from './route-table.js';

/**
 * Options of {@link createBus}. Who may attach: the socket file is `0600` and a client must
 * run as the bus's uid (or root) unless the {@link ListenAccessOptions} (`socketMode`,
 * `allowUids`, `allowGids`, `authorize`, `onRefused`) say otherwise. What one client may cost
 * it is capped by the {@link PeerLimitOptions} (`maxPeerMemory`, `maxConnections`,
 * `maxConnectionsPerUid`); a client over one is disconnected and counted in
 * {@link BusStats.limited}.
 */
export interface BusOptions extends ListenAccessOptions, PeerLimitOptions {
  /**
   * Notification policy of every port's rings (default `adaptive`: each port's reader polls
   * while its client tends to send again within the poll, and sleeps otherwise; see
   * docs/architecture.md, "Notification policy").
   */
  notification?: NotificationMode;
  /** Spin budget in µs for `adaptive` / `poll`. */
  spinMicros?: number;
  /** Largest message a client may send, encoded (default 64 MiB). */
  maxMessage?: number;
  /**
   * Largest frame a client may use, in bytes (default 65535; a client asks for its own,
   * {@link ConnectBusOptions.maxFrame}, and gets the smaller). A message that fits one frame
   * crosses the bus whole: read where its publisher wrote it and written into each
   * subscriber's ring with one copy. Larger frames cost the bus memory per client: about
   * three buffers of this size.
   */
  maxFrame?: number;
  /**
   * Messages queued for one client before backpressure applies (default 1024): a `block`
   * subscription then holds the publisher back, a `drop` one loses the message.
   */
  highWaterMark?: number;
  /**
   * Bytes queued for one client before backpressure applies, whatever the count (default
   * 16 MiB): large messages are bounded by their memory, not only by their number (1024
   * messages of 1 MiB would be 1 GiB per client). A queue takes at least one message, however
   * large.
   */
  highWaterBytes?: number;
  /**
   * Accept clients that ask for packed rings ({@link ConnectBusOptions.packed}; default
   * true). With false the bus offers split rings only, and such a client's `connectBus`
   * rejects with `ERR_VRING_FEATURE_MISMATCH` (reason `packed-refused`). Clients that do not
   * ask run split rings either way; {@link ClientStats.rings} tells each one's format.
   */
  packed?: boolean;
  /** Called with the typed error that disconnected a client. Default: one line on stderr. */
  onError?: (error: VringError, client: number) => void;
  /**
   * Bridges the bus to a NATS cluster (see {@link NatsBridgeOptions} and docs/bus.md,
   * "Across hosts: the NATS bridge"). The `nats` package is loaded only then.
   */
  nats?: NatsBridgeOptions;
}

/** What a bridge learns from the bus: which names its own clients serve. @internal */
export interface BridgeWatch {
  /** `name` got its first responder among the bus's clients (`true`) or lost its last. */
  served(name: string, served: boolean): void;
  /** Queue subscriptions came or went: {@link Bus.queueGroups} may have changed. */
  groupsChanged(): void;
}

/**
 * Where a bridge client's publishes go (see {@link BusMember.bridgeRoute}): to plain
 * subscriptions or not, and to which queue groups. @internal
 */
export interface BridgeRoute {
  plain: boolean;
  group(pattern: string, queue: string): boolean;
}

interface Call {
  requester: BusMember;
  requestId: number;
  responder: BusMember;
  /** For one of the calls of a REQUEST_MANY: all of them. */
  fanOut: FanOut | undefined;
}

/** {@link BusOptions.highWaterBytes} by default. */
const DEFAULT_HIGH_WATER_BYTES = 16 * 1024 * 1024;

/** The reason a publisher is paused while every member of a queue group is full. */
const QUEUE_GROUP_HOLD = 'queue group';

function malformed(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed ${what}`, { reason: 'bad-envelope' });
}

/** A client served or published on a name of the bus's own. */
function reservedName(name: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `${name} is reserved for the bus`, {
    reason: 'reserved-name',
  });
}

/**
 * Hosts a bus at `path`: a vhost-user back-end whose ports are the clients
 * ({@link connectBus}), switching their messages: publish/subscribe by topic and RPC
 * between them. Embed it in any process, or run `vring bus --socket PATH`.
 *
 * @example
 * ```ts
 * const bus = createBus('/tmp/bus.sock');
 * // Other processes: await connectBus('/tmp/bus.sock')
 * process.once('SIGTERM', async () => {
 *   console.log(bus.stats); // { clients, subscriptions, published, delivered, … }
 *   await bus[Symbol.asyncDispose](); // closes, and waits for the clients to go
 * });
 * ```
 */
export function createBus(path: string, options: BusOptions = {}): Bus {
  return new Bus(path, options);
}

/**
 * A running bus (see {@link createBus}). It never decodes a payload: it reads the routing
 * fields at the front of a message and forwards the rest of its bytes. A client that sends
 * anything malformed is disconnected; the others carry on.
 */
export class Bus implements AsyncDisposable {
  /** The Unix socket path clients connect to ({@link connectBus}). */
  readonly path: string;
  /** Settles once the bus is closed and every client is gone. */
  readonly closed: Promise<void>;
  /** The bridge to NATS, when {@link BusOptions.nats} asked for one. */
  readonly nats: NatsBridge | undefined;
  readonly #backend: VhostUserBackend;
  readonly #options: BusOptions;
  readonly #codec = new MessageCodec();
  /** Reads the envelope of each message routed; one message at a time, start to end. */
  readonly #reader = new MsgpackPrefixReader();
  readonly #members = new Set<BusMember>();
  readonly #subjects = new SubjectTally();
  readonly #routes = new RouteTable<BusMember>(this.#subjects);
  readonly #servers = new Map<string, BusMember[]>();
  readonly #calls = new Map<number, Call>();
  /** Per name, the requesters told to reach its responder directly (see Kind.ROUTE). */
  readonly #routed = new Map<string, Set<BusMember>>();
  readonly #highWaterMark: number;
  readonly #highWaterBytes: number;
  readonly #maxMessage: number;
  #nextCall = 1;
  /** In-process clients count down from -1: never the id of a vhost-user port. */
  #nextLocal = -1;
  #roundRobin = 0;
  #closing = false;
  #resolveClosed!: () => void;
  #bridgeWatch: BridgeWatch | undefined;
  readonly #stats = { published: 0, delivered: 0, dropped: 0, requests: 0, rejected: 0 };

  /** @internal (use {@link createBus}) */
  constructor(path: string, options: BusOptions) {
    this.path = path;
    this.#options = options;
    this.#highWaterMark = options.highWaterMark ?? 1024;
    this.#highWaterBytes = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.#maxMessage = options.maxMessage ?? 64 * 1024 * 1024;
    // The frame every client may announce, the smallest, must still hold a HELLO.
    const maxFrame = options.maxFrame;
    if (
      maxFrame !== undefined &&
      !(Number.isInteger(maxFrame) && maxFrame >= FRAME_HEADER_BYTES + 64)
    ) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        `maxFrame must be an integer of at least ${FRAME_HEADER_BYTES + 64} bytes`,
      );
    }
    if (!Number.isSafeInteger(this.#highWaterMark) || this.#highWaterMark < 2) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'highWaterMark must be an integer ≥ 2');
    }
    if (!Number.isSafeInteger(this.#highWaterBytes) || this.#highWaterBytes < 2) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'highWaterBytes must be an integer ≥ 2');
    }
    const clientsGone = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.nats = options.nats ? startNatsBridge(this, options.nats) : undefined;
    const bridgeClosed = this.nats?.closed;
    this.closed = bridgeClosed
      ? Promise.all([clientsGone, bridgeClosed]).then(() => {})
      : clientsGone;
    this.#backend = new VhostUserBackend(path, {
      notification: options.notification ?? 'adaptive',
      ...(options.spinMicros !== undefined && { spinMicros: options.spinMicros }),
      ...(options.maxFrame !== undefined && { maxFrame: options.maxFrame }),
      packedRings: options.packed ?? true,
      onPort: (port) => this.#attach(port.id, port, port.peer),
      onError: (error, port) => this.#report(error, port.id),
      socketMode: options.socketMode,
      allowUids: options.allowUids,
      allowGids: options.allowGids,
      authorize: options.authorize,
      onRefused: options.onRefused,
      maxPeerMemory: options.maxPeerMemory,
      maxConnections: options.maxConnections,
      maxConnectionsPerUid: options.maxConnectionsPerUid,
    });
  }

  /** Counters since the bus started, and the clients and subscriptions it has now. */
  get stats(): BusStats {
    return {
      clients: this.#members.size,
      subscriptions: this.#routes.size,
      ...this.#stats,
      refused: this.#backend.refusedPeers,
      limited: this.#backend.limitedPeers,
    };
  }

  /**
   * Every counter: the totals of {@link Bus.stats}, each client's and each subject's. Any
   * client can read the same through the bus: `client.busReport()`, a request to
   * `$vring.stats`, or `vring stats --socket PATH`.
   */
  report(): BusReport {
    const clients: ClientStats[] = [];
    for (const member of this.#members) {
      const c = member.counters;
      clients.push({
        id: member.id,
        ...(member.peer && { pid: member.peer.pid, uid: member.peer.uid }),
        ...ringsOf(member.link.transport),
        queued: member.link.queued,
        queuedBytes: member.link.queuedBytes,
        published: c.published,
        delivered: c.delivered,
        dropped: c.dropped,
        slowConsumer: c.slowConsumer,
        requestsSent: c.requestsSent,
        requestsServed: c.requestsServed,
      });
    }
    clients.sort((a, b) => a.id - b.id);
    const report: BusReport = { totals: this.stats, clients, ...this.#subjects.snapshot() };
    if (this.nats) report.nats = this.nats.stats;
    return report;
  }

  /**
   * Connects a client in this process: the same {@link BusClient}, with its frames handed
   * over in memory instead of through rings. A process that hosts the bus and also
   * publishes, subscribes or serves on it should use this: a client attached over the socket
   * would poll its own rings from the thread that serves them. Its connection ends with
   * the bus.
   */
  async connect(
    options: Pick<
      ConnectBusOptions,
      'maxFrame' | 'maxMessage' | 'signal' | 'onEvent' | 'ordering'
    > = {},
  ): Promise<BusClient> {
    return this.#connect(options, undefined);
  }

  /**
   * Connects the in-process client of a bridge (see {@link BusMember.bridge}); `watch`
   * hears from then on which names the bus's own clients serve, and the names served now
   * are returned. One bridge per bus. @internal
   */
  async connectBridge(
    route: BridgeRoute,
    watch?: BridgeWatch,
  ): Promise<{ client: BusClient; served: string[] }> {
    const client = await this.#connect({}, route);
    if (watch) this.#bridgeWatch = watch;
    const served = [...this.#servers]
      .filter(([, servers]) => servers.some((s) => !s.bridge))
      .map(([name]) => name);
    return { client, served };
  }

  async #connect(
    options: Pick<ConnectBusOptions, 'maxFrame' | 'maxMessage' | 'signal' | 'onEvent' | 'ordering'>,
    bridge: BridgeRoute | undefined,
  ): Promise<BusClient> {
    if (this.#closing) throw new VringError('ERR_VRING_CLOSED', 'the bus is closed');
    inPublisherOrder(options);
    options.signal?.throwIfAborted();
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    // Capacity in frames, like a ring's 256 descriptors: a full client holds the bus back.
    const [clientEnd, busEnd] = InProcessTransport.pair(maxFrame, 256);
    const member = this.#attach(this.#nextLocal--, busEnd);
    member.bridge = bridge !== undefined;
    member.bridgeRoute = bridge;
    // An in-process client takes no direct routes: it is in the bus's process already, and a
    // bridge's requests go through the bus, which keeps them from the bridge itself.
    const client = new BusClient(clientEnd, maxFrame, { ...options, directRoutes: false });
    await client.ready(options.signal);
    return client;
  }

  /** The queue groups of the bus's clients, by pattern and queue name. @internal */
  queueGroups(): Array<{ pattern: string; queue: string }> {
    return this.#routes.queueGroups();
  }

  /** Stops accepting clients and disconnects every one. Idempotent. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    void this.nats?.close();
    this.#backend.close();
    for (const member of this.#members) {
      if (member.link.transport instanceof InProcessTransport) member.link.close();
    }
    if (this.#members.size === 0) this.#resolveClosed();
  }

  /** Closes the bus and resolves once every client is gone, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  /** Makes a client of `transport`: `id` names it in errors and stats. */
  #attach(id: number, transport: FramePort, peer?: PeerCredentials): BusMember {
    const member = new BusMember(
      id,
      peer,
      transport,
      this.#maxMessage,
      this.#highWaterMark >> 1,
      Math.floor(this.#highWaterBytes / 2),
      (p, kind, data, start, end, owned) => this.#onMessage(p, kind, data, start, end, owned),
      (p) => this.#onWritable(p),
    );
    this.#members.add(member);
    void member.link.closed.then((error) => {
      if (error?.code === 'ERR_VRING_PROTOCOL' || error?.code === 'ERR_VRING_OVERSIZED_MESSAGE') {
        this.#stats.rejected++;
        this.#report(error, member.id);
      }
      this.#detach(member);
    });
    member.link.resume();
    return member;
  }

  #report(error: VringError, client: number): void {
    if (this.#options.onError) this.#options.onError(error, client);
    else process.stderr.write(`vring bus: client ${client} disconnected: ${error.message}\n`);
  }

  #onMessage(
    member: BusMember,
    kind: number,
    data: Uint8Array,
    start: number,
    end: number,
    owned: boolean,
  ): void {
    if (!member.greeted && kind !== Kind.HELLO) throw malformed('session: HELLO must come first');
    // A publish, the message of a fan-out, is read where it lies: no view of it per message.
    if (kind === Kind.PUBLISH || kind === Kind.PUBLISH_IN_ORDER) {
      this.#publish(member, data, start, end, owned, kind === Kind.PUBLISH_IN_ORDER);
      return;
    }
    this.#onOther(member, kind, data.subarray(start, end), owned);
  }

  /** Every message but a publish, on its body's view. */
  #onOther(member: BusMember, kind: number, body: Uint8Array, owned: boolean): void {
    switch (kind) {
      case Kind.REQUEST:
        this.#request(member, body, owned);
        return;
      case Kind.REQUEST_MANY:
        this.#requestMany(member, body, owned);
        return;
      case Kind.REPLY:
        this.#reply(member, body, owned);
        return;
      case Kind.CANCEL:
        this.#cancel(member, this.#control(body, 1)[0]);
        return;
      case Kind.SUBSCRIBE: {
        const [sid, pattern, policy, queue] = this.#control(body, 3, 4);
        if (typeof sid !== 'number' || typeof pattern !== 'string') throw malformed('SUBSCRIBE');
        if (policy !== PolicyCode.block && policy !== PolicyCode.drop) throw malformed('policy');
        if (queue !== undefined) {
          if (typeof queue !== 'string') throw malformed('SUBSCRIBE: queue');
          this.#name(queue);
        }
        this.#routes.add(member, sid, this.#pattern(pattern), policy === PolicyCode.drop, queue);
        if (queue !== undefined) this.#bridgeWatch?.groupsChanged();
        return;
      }
      case Kind.UNSUBSCRIBE: {
        const [sid] = this.#control(body, 1);
        if (typeof sid !== 'number') throw malformed('UNSUBSCRIBE');
        this.#routes.remove(member, sid);
        this.#bridgeWatch?.groupsChanged();
        return;
      }
      case Kind.SERVE:
      case Kind.UNSERVE: {
        const [name] = this.#control(body, 1);
        if (typeof name !== 'string') throw malformed('SERVE');
        this.#name(name);
        if (kind === Kind.SERVE && isReserved(name)) throw reservedName(name);
        if (kind === Kind.SERVE) this.#serve(member, name);
        else this.#unserve(member, name);
        return;
      }
      case Kind.ROUTE: {
        const [address] = this.#control(body, 1);
        if (address !== null && (typeof address !== 'string' || address.length === 0)) {
          throw malformed('ROUTE: address');
        }
        if (typeof address === 'string' && Buffer.byteLength(address) > MAX_NAME_BYTES) {
          throw malformed('ROUTE: address too long');
        }
        member.directAddress = address;
        return;
      }
      case Kind.FEATURES: {
        const [features] = this.#control(body, 1);
        if (!Array.isArray(features) || !features.every((f) => typeof f === 'string')) {
          throw malformed('FEATURES');
        }
        member.readsHeaders = features.includes('headers');
        return;
      }
      case Kind.PING: {
        // Messages from one client are handled in order: the answer says all before it were.
        const [id] = this.#control(body, 1);
        if (typeof id !== 'number') throw malformed('PING');
        member.link.post(Kind.PONG, this.#codec.encode([id]));
        return;
      }
      case Kind.HELLO: {
        const [version, maxFrame] = this.#control(body, 2);
        if (version !== BUS_PROTOCOL_VERSION) {
          throw new VringError('ERR_VRING_PROTOCOL', `client speaks version ${String(version)}`, {
            reason: 'version',
          });
        }
        if (
          typeof maxFrame !== 'number' ||
          !Number.isInteger(maxFrame) ||
          maxFrame < FRAME_HEADER_BYTES + 64
        ) {
          throw malformed('HELLO: frame size');
        }
        const frame = Math.min(maxFrame, member.link.transport.maxMessage);
        member.link.setMaxFrame(frame);
        member.greeted = true;
        // The features element is one that clients from before it ignore.
        member.link.post(
          Kind.HELLO,
          this.#codec.encode([BUS_PROTOCOL_VERSION, frame, BUS_FEATURES]),
        );
        return;
      }
      default:
        throw malformed(`message: kind ${kind} is not one a client sends`);
    }
  }

  /** A small control message: a msgpack array of `length` (to `maxLength`) elements. */
  #control(body: Uint8Array, length: number, maxLength = length): unknown[] {
    let value: unknown;
    try {
      value = this.#codec.decode(body);
    } catch (error) {
      throw new VringError('ERR_VRING_PROTOCOL', 'undecodable control message', {
        reason: 'bad-envelope',
        cause: error,
      });
    }
    if (!Array.isArray(value) || value.length < length || value.length > maxLength) {
      throw malformed('control message');
    }
    return value;
  }

  #pattern(pattern: string): TopicPattern {
    try {
      return new TopicPattern(pattern);
    } catch (error) {
      throw new VringError('ERR_VRING_PROTOCOL', (error as Error).message, { reason: 'bad-topic' });
    }
  }

  #name(name: string): void {
    try {
      checkTopic(name);
    } catch (error) {
      throw new VringError('ERR_VRING_PROTOCOL', (error as Error).message, { reason: 'bad-topic' });
    }
  }

  /** A topic to publish on: a name, and not one of the bus's own. */
  #publishTopic(topic: string): void {
    this.#name(topic);
    if (isReserved(topic)) throw reservedName(topic);
  }

  /**
   * Routes a PUBLISH. Its DELIVERs go on the topic's lane (a subscriber gets one topic's
   * messages in order, and a large one does not hold up the other topics), or, `inOrder`,
   * on the publisher's (its messages stay in publish order, whatever their topics).
   */
  #publish(
    member: BusMember,
    data: Uint8Array,
    start: number,
    end: number,
    owned: boolean,
    inOrder: boolean,
  ): void {
    const reader = this.#reader.reset(data, start, end);
    const elements = reader.arrayLength();
    if (elements !== 2 && elements !== 3) throw malformed('PUBLISH');
    const fieldsAt = reader.offset;
    const topic = reader.string(MAX_NAME_BYTES, member.recentTopic);
    // A topic in the route cache was checked when it got there: no split per message.
    let routes = this.#routes.cached(topic);
    if (!routes) {
      this.#publishTopic(topic);
      routes = this.#routes.lookup(topic);
    }
    reader.skipValue(MAX_VALUE_DEPTH);
    const valueEnd = reader.offset;
    if (elements === 3) skipHeaders(reader);
    reader.end();
    this.#stats.published++;
    member.counters.published++;
    // The topic's counters come with its cached route: no lookup of their own.
    const subject = routes.subject;
    subject.published++;
    // "topic, value" is forwarded as it came, copied straight from the ring into each
    // subscriber's send batch (into a buffer of its own only for one that must queue).
    // With headers, "topic, value, headers" to those that read them.
    const fields = data.subarray(fieldsAt, valueEnd);
    const headed = elements === 3 ? data.subarray(fieldsAt, end) : undefined;
    const lane = inOrder ? member.orderLane : topic;
    // A bridge's publish came from other buses: see BusMember.bridgeRoute for where it goes.
    const bridgeRoute = member.bridgeRoute;
    if (!bridgeRoute || bridgeRoute.plain) {
      for (const d of routes.deliveries) {
        // Handing a bridge back its own publish would send it out again.
        if (d.member === member && bridgeRoute) continue;
        this.#deliver(member, d, lane, subject, fields, headed, owned);
      }
    }
    for (const group of routes.groups) {
      if (bridgeRoute && !bridgeRoute.group(group.pattern.source, group.queue)) continue;
      // A member that is gone or full is passed over while another has room.
      const d = group.pick((to) => !to.link.done && !this.#full(to));
      if (d) this.#deliver(member, d, lane, subject, fields, headed, owned);
      else {
        const least = group.pickLeastQueued((to) => to.link.queued);
        if (least) this.#deliver(member, least, lane, subject, fields, headed, owned, group);
      }
    }
  }

  /**
   * Whether `to`'s queue is at the high-water mark, in messages or in bytes; the first time
   * since it last drained counts as a slow-consumer event.
   */
  #full(to: BusMember): boolean {
    const link = to.link;
    if (link.queued < this.#highWaterMark && link.queuedBytes < this.#highWaterBytes) return false;
    if (!to.counters.atHighWater) {
      to.counters.atHighWater = true;
      to.counters.slowConsumer++;
    }
    return true;
  }

  /**
   * Sends a DELIVER to `d.member`, applying its backpressure policy when it is full. For a
   * queue `group` whose members are all full, a `block` publisher waits until any of them has
   * room, not this one in particular.
   */
  #deliver(
    from: BusMember,
    d: Delivery<BusMember>,
    lane: string,
    subject: SubjectCounters,
    fields: Uint8Array,
    headed: Uint8Array | undefined,
    owned: boolean,
    group?: QueueGroup<BusMember>,
  ): void {
    const to = d.member;
    if (this.#full(to)) {
      if (!d.block) {
        this.#stats.dropped++;
        subject.dropped++;
        to.counters.dropped++;
        for (const sid of d.sids) to.drops.set(sid, (to.drops.get(sid) ?? 0) + 1);
        return;
      }
      if (group) this.#holdForGroup(from, group);
      else this.#hold(from, to);
    }
    this.#stats.delivered++;
    subject.delivered++;
    to.counters.delivered++;
    // A publish arrives with others of its batch more often than alone: deliveries of this
    // turn go out together, not the first one by itself.
    to.link.deferToBatch();
    if (headed && to.readsHeaders) {
      to.link.post(Kind.DELIVER, headed, deliverHeadWithHeaders(d), lane, !owned);
    } else to.link.post(Kind.DELIVER, fields, d.head, lane, !owned);
  }

  #serve(member: BusMember, name: string): void {
    if (member.serves.has(name)) return;
    member.serves.add(name);
    const servers = this.#servers.get(name);
    const first = !member.bridge && !servers?.some((s) => !s.bridge);
    if (servers) servers.push(member);
    else this.#servers.set(name, [member]);
    if (first) this.#bridgeWatch?.served(name, true);
    // Two responders now: requests are spread again, so nobody goes around the bus.
    this.#revokeRoutes(name);
  }

  #unserve(member: BusMember, name: string): void {
    if (!member.serves.delete(name)) return;
    const servers = this.#servers.get(name)!.filter((p) => p !== member);
    if (servers.length > 0) this.#servers.set(name, servers);
    else this.#servers.delete(name);
    if (!member.bridge && this.#bridgeWatch && !servers.some((s) => !s.bridge)) {
      this.#bridgeWatch.served(name, false);
    }
    this.#revokeRoutes(name);
  }

  /**
   * Tells `requester` it may reach `name`'s responder directly, when it can: both take part
   * in direct routes, the responder is the only one, and the requester was not told already.
   */
  #offerRoute(requester: BusMember, responder: BusMember, name: string, servers: BusMember[]) {
    if (
      servers.length !== 1 ||
      requester.directAddress === undefined ||
      typeof responder.directAddress !== 'string' ||
      responder === requester ||
      requester.routedNames.has(name) ||
      // Headers a requester may send would reach a responder that cannot read them.
      (requester.readsHeaders && !responder.readsHeaders)
    ) {
      return;
    }
    requester.routedNames.add(name);
    let told = this.#routed.get(name);
    if (!told) {
      told = new Set();
      this.#routed.set(name, told);
    }
    told.add(requester);
    requester.link.post(Kind.ROUTE, this.#codec.encode([name, responder.directAddress]));
  }

  /** Takes back every direct route to `name`: its responders changed. */
  #revokeRoutes(name: string): void {
    const told = this.#routed.get(name);
    if (!told) return;
    this.#routed.delete(name);
    const body = this.#codec.encode([name, null]);
    for (const requester of told) {
      requester.routedNames.delete(name);
      requester.link.post(Kind.ROUTE, body);
    }
  }

  #request(member: BusMember, body: Uint8Array, owned: boolean): void {
    const { requestId, fields, headed, servers, name } = this.#readRequest(member, body, false);
    if (!servers) return;
    const responder = servers[this.#roundRobin++ % servers.length]!;
    this.#offerRoute(member, responder, name, servers);
    const callId = this.#newCallId();
    this.#calls.set(callId, { requester: member, requestId, responder, fanOut: undefined });
    member.requests.set(requestId, callId);
    responder.answering.add(callId);
    this.#stats.requests++;
    responder.counters.requestsServed++;
    this.#forward(member, responder, Kind.REQUEST, callId, fields, headed, owned);
  }

  /** A REQUEST_MANY: the same REQUEST to every client serving the name, a call each. */
  #requestMany(member: BusMember, body: Uint8Array, owned: boolean): void {
    const { requestId, fields, headed, servers } = this.#readRequest(member, body, true);
    if (!servers) return;
    const fanOut: FanOut = { requester: member, requestId, calls: new Set() };
    member.fanOuts.set(requestId, fanOut);
    // A copy: a responder's handler may unserve the name (and change the list) meanwhile.
    for (const responder of [...servers]) {
      const callId = this.#newCallId();
      this.#calls.set(callId, { requester: member, requestId, responder, fanOut });
      fanOut.calls.add(callId);
      responder.answering.add(callId);
      this.#stats.requests++;
      responder.counters.requestsServed++;
      this.#forward(member, responder, Kind.REQUEST, callId, fields, headed, owned);
    }
  }

  /**
   * Checks a REQUEST or REQUEST_MANY (`many`); answers it (and returns no servers) when the
   * name is the bus's own or when nobody serves it (NO_RESPONDERS). `fields` are its bytes
   * from the name to the end of the value; `headed`, with headers, from the name to the end.
   */
  #readRequest(
    member: BusMember,
    body: Uint8Array,
    many: boolean,
  ): {
    requestId: number;
    fields: Uint8Array;
    headed: Uint8Array | undefined;
    servers: BusMember[] | undefined;
    name: string;
  } {
    const reader = this.#reader.reset(body);
    const elements = reader.arrayLength();
    if (elements !== 3 && elements !== 4) throw malformed('REQUEST');
    const requestId = reader.uint();
    const fieldsAt = reader.offset;
    const name = reader.string(MAX_NAME_BYTES, member.recentName);
    this.#name(name);
    // The bus vouches for what it forwards: garbage costs its sender the connection, never
    // the receiver.
    reader.skipValue(MAX_VALUE_DEPTH);
    const valueEnd = reader.offset;
    if (elements === 4) skipHeaders(reader);
    reader.end();
    if (member.requests.has(requestId) || member.fanOuts.has(requestId)) {
      throw malformed(`REQUEST: id ${requestId} is in flight`);
    }
    member.counters.requestsSent++;
    let servers = this.#servers.get(name);
    // A bridge asks on behalf of other buses: asking itself would send the request out again.
    if (servers && member.bridge && servers.includes(member)) {
      servers = servers.filter((s) => s !== member);
      if (servers.length === 0) servers = undefined;
    }
    // Reserved names are never served by a client: only a request that finds no server
    // pays for the check.
    if (!servers && name === STATS_NAME) this.#answerOwn(member, requestId, this.report(), many);
    else if (!servers) {
      this.#replyError(member, requestId, 'ERR_VRING_NO_RESPONDERS', `nobody serves ${name}`);
    }
    const fields = body.subarray(fieldsAt, valueEnd);
    const headed = elements === 4 ? body.subarray(fieldsAt) : undefined;
    return { requestId, fields, headed, servers, name };
  }

  /** Answers a request to a name of the bus's own: one value (a request-many: NEXT, END). */
  #answerOwn(member: BusMember, requestId: number, value: unknown, many: boolean): void {
    const status = many ? ReplyStatus.NEXT : ReplyStatus.VALUE;
    member.link.post(
      Kind.REPLY,
      this.#codec.encode([requestId, status, value]),
      undefined,
      requestId,
    );
    if (!many) return;
    member.link.post(
      Kind.REPLY,
      this.#codec.encode([requestId, ReplyStatus.END, null]),
      undefined,
      requestId,
    );
  }

  /** Ends a request of `member` with an error of the bus's own. */
  #replyError(member: BusMember, requestId: number, code: string, message: string): void {
    member.link.post(
      Kind.REPLY,
      this.#codec.encode([requestId, ReplyStatus.ERROR, { code, message }]),
      undefined,
      requestId,
    );
  }

  #reply(member: BusMember, body: Uint8Array, owned: boolean): void {
    const reader = this.#reader.reset(body);
    const elements = reader.arrayLength();
    if (elements !== 3 && elements !== 4) throw malformed('REPLY');
    const callId = reader.uint();
    const fieldsAt = reader.offset;
    const status = reader.uint();
    if (status > ReplyStatus.ERROR) throw malformed('REPLY: status');
    const valueAt = reader.offset;
    reader.skipValue(MAX_VALUE_DEPTH);
    const valueEnd = reader.offset;
    if (elements === 4) skipHeaders(reader);
    reader.end();
    const call = this.#calls.get(callId);
    // A reply to a call cancelled meanwhile is late, not wrong.
    if (!call || call.responder !== member) return;
    const headed = elements === 4 ? body.subarray(fieldsAt) : undefined;
    if (call.fanOut) {
      // The value, and its headers to a requester that reads them.
      const withHeaders = headed !== undefined && call.requester.readsHeaders;
      const value = withHeaders ? body.subarray(valueAt) : body.subarray(valueAt, valueEnd);
      this.#replyOfMany(member, callId, call, call.fanOut, status, value, withHeaders, owned);
      return;
    }
    if (status !== ReplyStatus.NEXT) this.#endCall(callId, call);
    const fields = body.subarray(fieldsAt, valueEnd);
    this.#forward(member, call.requester, Kind.REPLY, call.requestId, fields, headed, owned);
  }

  /**
   * A reply to one call of a REQUEST_MANY. Its requester sees one stream: every value (VALUE
   * or NEXT) as a NEXT, then END once every responder is done, or the first ERROR, which
   * ends the whole request (the other responders are cancelled).
   */
  #replyOfMany(
    member: BusMember,
    callId: number,
    call: Call,
    fanOut: FanOut,
    status: number,
    value: Uint8Array,
    withHeaders: boolean,
    owned: boolean,
  ): void {
    const { requester, requestId } = fanOut;
    const failed = status === ReplyStatus.ERROR;
    if (status !== ReplyStatus.END) {
      const head = new MsgpackPrefixWriter(prefixCapacity(2))
        .arrayHeader(withHeaders ? 4 : 3)
        .uint(requestId)
        .uint(failed ? ReplyStatus.ERROR : ReplyStatus.NEXT)
        .finish();
      this.#send(member, requester, value, head, requestId, owned);
    }
    if (failed) {
      this.#endCall(callId, call);
      this.#endFanOut(fanOut);
      return;
    }
    if (status !== ReplyStatus.NEXT) this.#callOfManyDone(callId, call, fanOut);
  }

  /** One responder of a REQUEST_MANY has finished (answered, ended or gone). */
  #callOfManyDone(callId: number, call: Call, fanOut: FanOut): void {
    this.#endCall(callId, call);
    fanOut.calls.delete(callId);
    if (fanOut.calls.size > 0) return;
    fanOut.requester.fanOuts.delete(fanOut.requestId);
    fanOut.requester.link.post(
      Kind.REPLY,
      this.#codec.encode([fanOut.requestId, ReplyStatus.END, null]),
      undefined,
      fanOut.requestId,
    );
  }

  /** Ends a REQUEST_MANY early: the responders still answering are told to stop. */
  #endFanOut(fanOut: FanOut): void {
    fanOut.requester.fanOuts.delete(fanOut.requestId);
    for (const callId of fanOut.calls) {
      const call = this.#calls.get(callId);
      if (!call) continue;
      this.#endCall(callId, call);
      call.responder.link.post(Kind.CANCEL, this.#codec.encode([callId]), undefined, callId);
    }
    fanOut.calls.clear();
  }

  #cancel(member: BusMember, requestId: unknown): void {
    if (typeof requestId !== 'number') throw malformed('CANCEL');
    const fanOut = member.fanOuts.get(requestId);
    if (fanOut) {
      this.#endFanOut(fanOut);
      return;
    }
    const callId = member.requests.get(requestId);
    const call = callId === undefined ? undefined : this.#calls.get(callId);
    if (!call || callId === undefined) return;
    this.#endCall(callId, call);
    call.responder.link.post(Kind.CANCEL, this.#codec.encode([callId]), undefined, callId);
  }

  /**
   * Sends `[id, ...fields]` to `to`, or `[id, ...headed]` when there are headers and `to`
   * reads them (fields not `owned` are a view of the ring); a full `to` holds `from` back
   * (RPC never drops).
   */
  #forward(
    from: BusMember,
    to: BusMember,
    kind: number,
    id: number,
    fields: Uint8Array,
    headed: Uint8Array | undefined,
    owned: boolean,
  ): void {
    // With the headers, to a client that reads them; else the message as it was before them.
    const withHeaders = headed !== undefined && to.readsHeaders;
    const head = new MsgpackPrefixWriter(prefixCapacity(1))
      .arrayHeader(withHeaders ? 4 : 3)
      .uint(id)
      .finish();
    this.#send(from, to, withHeaders ? headed : fields, head, id, owned, kind);
  }

  /** Posts `head` + `bytes` to `to` on lane `id`; a full `to` holds `from` back. */
  #send(
    from: BusMember,
    to: BusMember,
    bytes: Uint8Array,
    head: Uint8Array,
    id: number,
    owned: boolean,
    kind: number = Kind.REPLY,
  ): void {
    if (this.#full(to)) this.#hold(from, to);
    to.link.post(kind, bytes, head, id, !owned);
  }

  /**
   * Stops reading from `from` until any member of `group` has drained its send queue. The
   * hold has one reason, released by whichever member drains first (a member of another
   * group may release it too: the publisher's next message to a full group holds it again).
   */
  #holdForGroup(from: BusMember, group: QueueGroup<BusMember>): void {
    const members = group.members;
    // It would wait for itself; its own ring limits it.
    if (members.some((m) => m.member === from)) return;
    from.link.pause(QUEUE_GROUP_HOLD);
    for (const m of members) m.member.blockedPublishers.add(from);
  }

  /** Stops reading from `from` until `to` has drained its send queue. */
  #hold(from: BusMember, to: BusMember): void {
    if (from === to) return; // it would wait for itself; its own ring limits it
    from.link.pause(to.holdReason);
    to.blockedPublishers.add(from);
  }

  #onWritable(member: BusMember): void {
    // Drained to half: the next time it fills is a new slow-consumer event.
    member.counters.atHighWater = false;
    // Cleared first: a publisher resumed here may be held again by this member at once.
    const blocked = [...member.blockedPublishers];
    member.blockedPublishers.clear();
    for (const from of blocked) {
      from.link.resume(member.holdReason);
      from.link.resume(QUEUE_GROUP_HOLD);
    }
    if (member.drops.size > 0) {
      for (const [sid, count] of member.drops)
        member.link.post(Kind.DROPPED, this.#codec.encode([sid, count]));
      member.drops.clear();
    }
  }

  #newCallId(): number {
    let id = this.#nextCall;
    while (this.#calls.has(id)) id = (id % 0xffff_ffff) + 1;
    this.#nextCall = (id % 0xffff_ffff) + 1;
    return id;
  }

  #endCall(callId: number, call: Call): void {
    this.#calls.delete(callId);
    if (!call.fanOut) call.requester.requests.delete(call.requestId);
    call.responder.answering.delete(callId);
  }

  /** A client is gone: undo everything it took part in. */
  #detach(member: BusMember): void {
    this.#members.delete(member);
    this.#routes.removeMember(member);
    this.#bridgeWatch?.groupsChanged();
    for (const name of member.routedNames) {
      const told = this.#routed.get(name);
      told?.delete(member);
      if (told?.size === 0) this.#routed.delete(name);
    }
    for (const name of [...member.serves]) this.#unserve(member, name);
    for (const fanOut of [...member.fanOuts.values()]) this.#endFanOut(fanOut);
    for (const callId of [...member.requests.values()]) {
      const call = this.#calls.get(callId);
      if (!call) continue;
      this.#endCall(callId, call);
      call.responder.link.post(Kind.CANCEL, this.#codec.encode([callId]), undefined, callId);
    }
    for (const callId of [...member.answering]) {
      const call = this.#calls.get(callId);
      if (!call) continue;
      // One responder of many that goes away simply has no more to say.
      if (call.fanOut) {
        this.#callOfManyDone(callId, call, call.fanOut);
        continue;
      }
      this.#endCall(callId, call);
      this.#replyError(
        call.requester,
        call.requestId,
        'ERR_VRING_PEER_DISCONNECTED',
        'the responder went away',
      );
    }
    this.#onWritable(member);
    for (const other of this.#members) other.blockedPublishers.delete(member);
    if (this.#closing && this.#members.size === 0) this.#resolveClosed();
  }
}

/** The format of a client's rings, for its stats; an in-process client has none. */
function ringsOf(transport: FramePort): Pick<ClientStats, 'rings'> {
  if (!(transport instanceof VhostUserPort)) return {};
  return { rings: transport.packedRings ? 'packed' : 'split' };
}

/** Walks a message's headers (see wire/headers.ts): the bus forwards only headers it checked. */
function skipHeaders(reader: MsgpackPrefixReader): void {
  reader.skipHeaders(MAX_HEADER_COUNT, MAX_HEADER_NAME_BYTES, MAX_HEADERS_BYTES);
}
