import { type FramePort, type NotificationMode, VhostUserBackend, VringError } from '@vring/core';
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
import { BusPort } from './bus-port.js';
import { InProcessTransport } from './in-process-transport.js';
import { RouteTable } from './route-table.js';

/** Options of {@link createBus}. */
export interface BusOptions {
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
}

interface Call {
  requester: BusPort;
  requestId: number;
  responder: BusPort;
}

function malformed(what: string): VringError {
  return new VringError('ERR_VRING_PROTOCOL', `malformed ${what}`, { reason: 'bad-envelope' });
}

/**
 * Hosts a bus at `path`: a vhost-user back-end whose ports are the clients
 * ({@link connectBus}), switching their messages: publish/subscribe by topic and RPC
 * between them. Embed it in any process, or run `vring bus --socket PATH`.
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
  readonly path: string;
  /** Settles once the bus is closed and every client is gone. */
  readonly closed: Promise<void>;
  readonly #backend: VhostUserBackend;
  readonly #options: BusOptions;
  readonly #codec = new MessageCodec();
  readonly #ports = new Set<BusPort>();
  readonly #routes = new RouteTable<BusPort>();
  readonly #servers = new Map<string, BusPort[]>();
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
      ...(options.notification && { notification: options.notification }),
      ...(options.spinMicros !== undefined && { spinMicros: options.spinMicros }),
      onPort: (port) => this.#attach(port.id, port),
      onError: (error, port) => this.#report(error, port.id),
    });
  }

  get stats(): BusStats {
    return { clients: this.#ports.size, subscriptions: this.#routes.size, ...this.#stats };
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
    for (const port of this.#ports) {
      if (port.link.transport instanceof InProcessTransport) port.link.close();
    }
    if (this.#ports.size === 0) this.#resolveClosed();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }

  /** Makes a client of `transport`: `id` names it in errors and stats. */
  #attach(id: number, transport: FramePort): void {
    const busPort = new BusPort(
      id,
      transport,
      this.#maxMessage,
      this.#highWaterMark >> 1,
      (p, kind, body, owned) => this.#onMessage(p, kind, body, owned),
      (p) => this.#onWritable(p),
    );
    this.#ports.add(busPort);
    void busPort.link.closed.then((error) => {
      if (error?.code === 'ERR_VRING_PROTOCOL' || error?.code === 'ERR_VRING_OVERSIZED_MESSAGE') {
        this.#stats.rejected++;
        this.#report(error, busPort.id);
      }
      this.#detach(busPort);
    });
    busPort.link.resume();
  }

  #report(error: VringError, client: number): void {
    if (this.#options.onError) this.#options.onError(error, client);
    else process.stderr.write(`vring bus: client ${client} disconnected: ${error.message}\n`);
  }

  #onMessage(port: BusPort, kind: number, body: Uint8Array, owned: boolean): void {
    if (!port.greeted && kind !== Kind.HELLO) throw malformed('session: HELLO must come first');
    switch (kind) {
      case Kind.PUBLISH:
        this.#publish(port, body, owned);
        return;
      case Kind.REQUEST:
        this.#request(port, body, owned);
        return;
      case Kind.REPLY:
        this.#reply(port, body, owned);
        return;
      case Kind.CANCEL:
        this.#cancel(port, this.#control(body, 1)[0]);
        return;
      case Kind.SUBSCRIBE: {
        const [sid, pattern, policy] = this.#control(body, 3);
        if (typeof sid !== 'number' || typeof pattern !== 'string') throw malformed('SUBSCRIBE');
        if (policy !== PolicyCode.block && policy !== PolicyCode.drop) throw malformed('policy');
        this.#routes.add(port, sid, this.#pattern(pattern), policy === PolicyCode.drop);
        return;
      }
      case Kind.UNSUBSCRIBE: {
        const [sid] = this.#control(body, 1);
        if (typeof sid !== 'number') throw malformed('UNSUBSCRIBE');
        this.#routes.remove(port, sid);
        return;
      }
      case Kind.SERVE:
      case Kind.UNSERVE: {
        const [name] = this.#control(body, 1);
        if (typeof name !== 'string') throw malformed('SERVE');
        this.#name(name);
        if (kind === Kind.SERVE) this.#serve(port, name);
        else this.#unserve(port, name);
        return;
      }
      case Kind.PING: {
        // Messages from one client are handled in order: the answer says all before it were.
        const [id] = this.#control(body, 1);
        if (typeof id !== 'number') throw malformed('PING');
        port.link.post(Kind.PONG, this.#codec.encode([id]));
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
        const frame = Math.min(maxFrame, port.link.transport.maxMessage);
        port.link.setMaxFrame(frame);
        port.greeted = true;
        port.link.post(Kind.HELLO, this.#codec.encode([BUS_PROTOCOL_VERSION, frame]));
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

  #publish(port: BusPort, body: Uint8Array, owned: boolean): void {
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
      const to = d.port;
      if (to.link.queued >= this.#highWaterMark) {
        if (!d.block) {
          this.#stats.dropped++;
          for (const sid of d.sids) to.drops.set(sid, (to.drops.get(sid) ?? 0) + 1);
          continue;
        }
        this.#hold(port, to);
      }
      this.#stats.delivered++;
      // A publish arrives with others of its batch more often than alone: deliveries of this
      // turn go out together, not the first one by itself.
      to.link.deferToBatch();
      to.link.post(Kind.DELIVER, fields, d.head, topic, !owned);
    }
  }

  #serve(port: BusPort, name: string): void {
    if (port.serves.has(name)) return;
    port.serves.add(name);
    const servers = this.#servers.get(name);
    if (servers) servers.push(port);
    else this.#servers.set(name, [port]);
  }

  #unserve(port: BusPort, name: string): void {
    if (!port.serves.delete(name)) return;
    const servers = this.#servers.get(name)!.filter((p) => p !== port);
    if (servers.length > 0) this.#servers.set(name, servers);
    else this.#servers.delete(name);
  }

  #request(port: BusPort, body: Uint8Array, owned: boolean): void {
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
    if (port.requests.has(requestId)) throw malformed(`REQUEST: id ${requestId} is in flight`);
    const servers = this.#servers.get(name);
    if (!servers) {
      port.link.post(
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
    this.#calls.set(callId, { requester: port, requestId, responder });
    port.requests.set(requestId, callId);
    responder.answering.add(callId);
    this.#stats.requests++;
    const fields = body.subarray(fieldsAt);
    this.#forward(port, responder, Kind.REQUEST, callId, fields, owned);
  }

  #reply(port: BusPort, body: Uint8Array, owned: boolean): void {
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
    if (!call || call.responder !== port) return;
    if (status !== ReplyStatus.NEXT) this.#endCall(callId, call);
    const fields = body.subarray(fieldsAt);
    this.#forward(port, call.requester, Kind.REPLY, call.requestId, fields, owned);
  }

  #cancel(port: BusPort, requestId: unknown): void {
    if (typeof requestId !== 'number') throw malformed('CANCEL');
    const callId = port.requests.get(requestId);
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
    from: BusPort,
    to: BusPort,
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
  #hold(from: BusPort, to: BusPort): void {
    if (from === to) return; // it would wait for itself; its own ring limits it
    from.link.pause(`port ${to.id}`);
    to.blockedPublishers.add(from);
  }

  #onWritable(port: BusPort): void {
    // Cleared first: a publisher resumed here may be held again by this port at once.
    const blocked = [...port.blockedPublishers];
    port.blockedPublishers.clear();
    for (const from of blocked) from.link.resume(`port ${port.id}`);
    if (port.drops.size > 0) {
      for (const [sid, count] of port.drops)
        port.link.post(Kind.DROPPED, this.#codec.encode([sid, count]));
      port.drops.clear();
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
  #detach(port: BusPort): void {
    this.#ports.delete(port);
    this.#routes.removePort(port);
    for (const name of [...port.serves]) this.#unserve(port, name);
    for (const callId of [...port.requests.values()]) {
      const call = this.#calls.get(callId);
      if (!call) continue;
      this.#endCall(callId, call);
      call.responder.link.post(Kind.CANCEL, this.#codec.encode([callId]), undefined, callId);
    }
    for (const callId of [...port.answering]) {
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
    this.#onWritable(port);
    for (const other of this.#ports) other.blockedPublishers.delete(port);
    if (this.#closing && this.#ports.size === 0) this.#resolveClosed();
  }
}
