import {
  type FramePort,
  type ListenAccessOptions,
  type NotificationMode,
  type PeerLimitOptions,
  VhostUserBackend,
  VringError,
} from '@vring/core';
import { MessageCodec } from '../message-codec.js';
import { checkTopic, TopicPattern } from '../topic.js';
import { FRAME_HEADER_BYTES } from '../wire/frame-header.js';
import {
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
import { BusClient, type ConnectBusOptions, DEFAULT_MAX_FRAME } from './bus-client.js';
import { BusMember } from './bus-member.js';
import { InProcessTransport } from './in-process-transport.js';
import { RouteTable } from './route-table.js';

/**
 * Options of {@link createBus}. Who may attach: the socket file is `0600` and a client must
 * run as the bus's uid (or root) unless the {@link ListenAccessOptions} (`socketMode`,
 * `allowUids`, `allowGids`, `authorize`, `onRefused`) say otherwise. What one client may cost
 * it is capped by the {@link PeerLimitOptions} (`maxPeerMemory`, `maxConnections`,
 * `maxConnectionsPerUid`); a client over one is disconnected and counted in
 * {@link BusStats.limited}.
 */
export interface BusOptions extends ListenAccessOptions, PeerLimitOptions {
  /** Notification policy of every port's rings (default `event`). */
  notification?: NotificationMode;
  /** Spin budget in µs for `adaptive` / `poll`. */
  spinMicros?: number;
  /** Largest message a client may send, encoded (default 64 MiB). */
  maxMessage?: number;
  /**
   * Messages queued for one client before backpressure applies (default 1024): a `block`
   * subscription then holds the publisher back, a `drop` one loses the message.
   */
  highWaterMark?: number;
  /** Called with the typed error that disconnected a client. Default: one line on stderr. */
  onError?: (error: VringError, client: number) => void;
}

/** Counters of a {@link Bus}. */
export interface BusStats {
  /** Clients attached now. */
  clients: number;
  /** Subscriptions held now. */
  subscriptions: number;
  /** Messages published. */
  published: number;
  /** Copies delivered to clients (one per client per message, whatever its subscriptions). */
  delivered: number;
  /** Copies dropped for `drop` subscriptions. */
  dropped: number;
  /** Requests routed to a responder. */
  requests: number;
  /** Clients disconnected for protocol violations. */
  rejected: number;
  /** Connections refused on their credentials, before they could send anything. */
  refused: number;
  /**
   * Clients disconnected for going over a limit: turned away on arrival over
   * `maxConnections` or `maxConnectionsPerUid`, or closed for offering more memory than
   * `maxPeerMemory`.
   */
  limited: number;
}

interface Call {
  requester: BusMember;
  requestId: number;
  responder: BusMember;
}

function malformed(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed ${what}`, { reason: 'bad-envelope' });
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
  readonly #backend: VhostUserBackend;
  readonly #options: BusOptions;
  readonly #codec = new MessageCodec();
  readonly #members = new Set<BusMember>();
  readonly #routes = new RouteTable<BusMember>();
  readonly #servers = new Map<string, BusMember[]>();
  readonly #calls = new Map<number, Call>();
  readonly #highWaterMark: number;
  readonly #maxMessage: number;
  #nextCall = 1;
  /** In-process clients count down from -1: never the id of a vhost-user port. */
  #nextLocal = -1;
  #roundRobin = 0;
  #closing = false;
  #resolveClosed!: () => void;
  readonly #stats = { published: 0, delivered: 0, dropped: 0, requests: 0, rejected: 0 };

  /** @internal (use {@link createBus}) */
  constructor(path: string, options: BusOptions) {
    this.path = path;
    this.#options = options;
    this.#highWaterMark = options.highWaterMark ?? 1024;
    this.#maxMessage = options.maxMessage ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(this.#highWaterMark) || this.#highWaterMark < 2) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'highWaterMark must be an integer ≥ 2');
    }
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#backend = new VhostUserBackend(path, {
      notification: options.notification ?? 'event',
      ...(options.spinMicros !== undefined && { spinMicros: options.spinMicros }),
      onPort: (port) => this.#attach(port.id, port),
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
   * Connects a client in this process: the same {@link BusClient}, with its frames handed
   * over in memory instead of through rings. A process that hosts the bus and also
   * publishes, subscribes or serves on it should use this: a client attached over the socket
   * would poll its own rings from the thread that serves them. Its connection ends with
   * the bus.
   */
  async connect(
    options: Pick<ConnectBusOptions, 'maxFrame' | 'maxMessage' | 'signal' | 'onEvent'> = {},
  ): Promise<BusClient> {
    if (this.#closing) throw new VringError('ERR_VRING_CLOSED', 'the bus is closed');
    options.signal?.throwIfAborted();
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    // Capacity in frames, like a ring's 256 descriptors: a full client holds the bus back.
    const [clientEnd, busEnd] = InProcessTransport.pair(maxFrame, 256);
    this.#attach(this.#nextLocal--, busEnd);
    const client = new BusClient(clientEnd, maxFrame, options);
    await client.ready(options.signal);
    return client;
  }

  /** Stops accepting clients and disconnects every one. Idempotent. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
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
  #attach(id: number, transport: FramePort): void {
    const member = new BusMember(
      id,
      transport,
      this.#maxMessage,
      this.#highWaterMark >> 1,
      (p, kind, body, owned) => this.#onMessage(p, kind, body, owned),
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
  }

  #report(error: VringError, client: number): void {
    if (this.#options.onError) this.#options.onError(error, client);
    else process.stderr.write(`vring bus: client ${client} disconnected: ${error.message}\n`);
  }

  #onMessage(member: BusMember, kind: number, body: Uint8Array, owned: boolean): void {
    if (!member.greeted && kind !== Kind.HELLO) throw malformed('session: HELLO must come first');
    switch (kind) {
      case Kind.PUBLISH:
        this.#publish(member, body, owned);
        return;
      case Kind.REQUEST:
        this.#request(member, body, owned);
        return;
      case Kind.REPLY:
        this.#reply(member, body, owned);
        return;
      case Kind.CANCEL:
        this.#cancel(member, this.#control(body, 1)[0]);
        return;
      case Kind.SUBSCRIBE: {
        const [sid, pattern, policy] = this.#control(body, 3);
        if (typeof sid !== 'number' || typeof pattern !== 'string') throw malformed('SUBSCRIBE');
        if (policy !== PolicyCode.block && policy !== PolicyCode.drop) throw malformed('policy');
        this.#routes.add(member, sid, this.#pattern(pattern), policy === PolicyCode.drop);
        return;
      }
      case Kind.UNSUBSCRIBE: {
        const [sid] = this.#control(body, 1);
        if (typeof sid !== 'number') throw malformed('UNSUBSCRIBE');
        this.#routes.remove(member, sid);
        return;
      }
      case Kind.SERVE:
      case Kind.UNSERVE: {
        const [name] = this.#control(body, 1);
        if (typeof name !== 'string') throw malformed('SERVE');
        this.#name(name);
        if (kind === Kind.SERVE) this.#serve(member, name);
        else this.#unserve(member, name);
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
        member.link.post(Kind.HELLO, this.#codec.encode([BUS_PROTOCOL_VERSION, frame]));
        return;
      }
      default:
        throw malformed(`message: kind ${kind} is not one a client sends`);
    }
  }

  /** A small control message: a msgpack array of `length` elements. */
  #control(body: Uint8Array, length: number): unknown[] {
    let value: unknown;
    try {
      value = this.#codec.decode(body);
    } catch (error) {
      throw new VringError('ERR_VRING_PROTOCOL', 'undecodable control message', {
        reason: 'bad-envelope',
        cause: error,
      });
    }
    if (!Array.isArray(value) || value.length !== length) throw malformed('control message');
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

  #publish(member: BusMember, body: Uint8Array, owned: boolean): void {
    const reader = new MsgpackPrefixReader(body);
    if (reader.arrayLength() !== 2) throw malformed('PUBLISH');
    const fieldsAt = reader.offset;
    const topic = reader.string(MAX_NAME_BYTES);
    // A topic in the route cache was checked when it got there: no split per message.
    let deliveries = this.#routes.cached(topic);
    if (!deliveries) {
      this.#name(topic);
      deliveries = this.#routes.lookup(topic);
    }
    reader.skipValue(MAX_VALUE_DEPTH);
    reader.end();
    this.#stats.published++;
    if (deliveries.length === 0) return;
    // "topic, value" is forwarded as it came, copied straight from the ring into each
    // subscriber's send batch (into a buffer of its own only for one that must queue).
    const fields = body.subarray(fieldsAt);
    for (const d of deliveries) {
      const to = d.member;
      if (to.link.queued >= this.#highWaterMark) {
        if (!d.block) {
          this.#stats.dropped++;
          for (const sid of d.sids) to.drops.set(sid, (to.drops.get(sid) ?? 0) + 1);
          continue;
        }
        this.#hold(member, to);
      }
      this.#stats.delivered++;
      // A publish arrives with others of its batch more often than alone: deliveries of this
      // turn go out together, not the first one by itself.
      to.link.deferToBatch();
      to.link.post(Kind.DELIVER, fields, d.head, topic, !owned);
    }
  }

  #serve(member: BusMember, name: string): void {
    if (member.serves.has(name)) return;
    member.serves.add(name);
    const servers = this.#servers.get(name);
    if (servers) servers.push(member);
    else this.#servers.set(name, [member]);
  }

  #unserve(member: BusMember, name: string): void {
    if (!member.serves.delete(name)) return;
    const servers = this.#servers.get(name)!.filter((p) => p !== member);
    if (servers.length > 0) this.#servers.set(name, servers);
    else this.#servers.delete(name);
  }

  #request(member: BusMember, body: Uint8Array, owned: boolean): void {
    const reader = new MsgpackPrefixReader(body);
    if (reader.arrayLength() !== 3) throw malformed('REQUEST');
    const requestId = reader.uint();
    const fieldsAt = reader.offset;
    const name = reader.string(MAX_NAME_BYTES);
    this.#name(name);
    // The bus vouches for what it forwards: garbage costs its sender the connection, never
    // the receiver.
    reader.skipValue(MAX_VALUE_DEPTH);
    reader.end();
    if (member.requests.has(requestId)) throw malformed(`REQUEST: id ${requestId} is in flight`);
    const servers = this.#servers.get(name);
    if (!servers) {
      member.link.post(
        Kind.REPLY,
        this.#codec.encode([
          requestId,
          ReplyStatus.ERROR,
          { code: 'ERR_VRING_NO_RESPONDERS', message: `nobody serves ${name}` },
        ]),
        undefined,
        requestId,
      );
      return;
    }
    const responder = servers[this.#roundRobin++ % servers.length]!;
    const callId = this.#newCallId();
    this.#calls.set(callId, { requester: member, requestId, responder });
    member.requests.set(requestId, callId);
    responder.answering.add(callId);
    this.#stats.requests++;
    const fields = body.subarray(fieldsAt);
    this.#forward(member, responder, Kind.REQUEST, callId, fields, owned);
  }

  #reply(member: BusMember, body: Uint8Array, owned: boolean): void {
    const reader = new MsgpackPrefixReader(body);
    if (reader.arrayLength() !== 3) throw malformed('REPLY');
    const callId = reader.uint();
    const fieldsAt = reader.offset;
    const status = reader.uint();
    if (status > ReplyStatus.ERROR) throw malformed('REPLY: status');
    reader.skipValue(MAX_VALUE_DEPTH);
    reader.end();
    const call = this.#calls.get(callId);
    // A reply to a call cancelled meanwhile is late, not wrong.
    if (!call || call.responder !== member) return;
    if (status !== ReplyStatus.NEXT) this.#endCall(callId, call);
    const fields = body.subarray(fieldsAt);
    this.#forward(member, call.requester, Kind.REPLY, call.requestId, fields, owned);
  }

  #cancel(member: BusMember, requestId: unknown): void {
    if (typeof requestId !== 'number') throw malformed('CANCEL');
    const callId = member.requests.get(requestId);
    const call = callId === undefined ? undefined : this.#calls.get(callId);
    if (!call || callId === undefined) return;
    this.#endCall(callId, call);
    call.responder.link.post(Kind.CANCEL, this.#codec.encode([callId]), undefined, callId);
  }

  /**
   * Sends `[id, ...fields]` to `to` (fields not `owned` are a view of the ring); a full `to`
   * holds `from` back (RPC never drops).
   */
  #forward(
    from: BusMember,
    to: BusMember,
    kind: number,
    id: number,
    fields: Uint8Array,
    owned: boolean,
  ): void {
    if (to.link.queued >= this.#highWaterMark) this.#hold(from, to);
    const head = new MsgpackPrefixWriter(prefixCapacity(1)).arrayHeader(3).uint(id).finish();
    to.link.post(kind, fields, head, id, !owned);
  }

  /** Stops reading from `from` until `to` has drained its send queue. */
  #hold(from: BusMember, to: BusMember): void {
    if (from === to) return; // it would wait for itself; its own ring limits it
    from.link.pause(`member ${to.id}`);
    to.blockedPublishers.add(from);
  }

  #onWritable(member: BusMember): void {
    // Cleared first: a publisher resumed here may be held again by this member at once.
    const blocked = [...member.blockedPublishers];
    member.blockedPublishers.clear();
    for (const from of blocked) from.link.resume(`member ${member.id}`);
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
    call.requester.requests.delete(call.requestId);
    call.responder.answering.delete(callId);
  }

  /** A client is gone: undo everything it took part in. */
  #detach(member: BusMember): void {
    this.#members.delete(member);
    this.#routes.removeMember(member);
    for (const name of [...member.serves]) this.#unserve(member, name);
    for (const callId of [...member.requests.values()]) {
      const call = this.#calls.get(callId);
      if (!call) continue;
      this.#endCall(callId, call);
      call.responder.link.post(Kind.CANCEL, this.#codec.encode([callId]), undefined, callId);
    }
    for (const callId of [...member.answering]) {
      const call = this.#calls.get(callId);
      if (!call) continue;
      this.#endCall(callId, call);
      call.requester.link.post(
        Kind.REPLY,
        this.#codec.encode([
          call.requestId,
          ReplyStatus.ERROR,
          { code: 'ERR_VRING_PEER_DISCONNECTED', message: 'the responder went away' },
        ]),
        undefined,
        call.requestId,
      );
    }
    this.#onWritable(member);
    for (const other of this.#members) other.blockedPublishers.delete(member);
    if (this.#closing && this.#members.size === 0) this.#resolveClosed();
  }
}
