// The bridge between a bus and a NATS cluster: one client of the bus (in-process, marked as a
// bridge) and one connection of the maintained `nats` client, loaded only when a bus asks for
// a bridge. On NATS, subjects are the bus's topics and RPC names, and payloads are the msgpack
// bytes of the values (see docs/bus.md, "Across hosts: the NATS bridge").
import { randomUUID } from 'node:crypto';
import { VringError } from '@vring/core';
import type {
  Msg,
  MsgHdrs,
  NatsConnection,
  NatsError,
  Subscription as NatsSubscription,
} from 'nats';
import { MessageCodec } from '../message-codec.js';
import { fromWireError, toWireError, type WireError } from '../rpc/remote-error.js';
import type { RequestContext, Service } from '../rpc/responder.js';
import type { Subscription } from '../subscription.js';
import { TopicPattern } from '../topic.js';
import type { MessageHeaders } from '../wire/headers.js';
import type { Bus } from './bus.js';
import type { BusClient } from './bus-client.js';

/** The NATS header naming the bridge (a random id per bus) that sent a message or request. */
export const ORIGIN_HEADER = 'Vring-Origin';
/**
 * The NATS header that marks a reply as an error: its value is the error's code, and the
 * payload is the msgpack of `{ code, message, data? }`.
 */
export const ERROR_HEADER = 'Vring-Error';
/**
 * The NATS header, one value per queue name, naming the queue groups that already got a
 * message on the bus that published it: a bridge does not give it to those groups again.
 */
const QUEUED_HEADER = 'Vring-Queued';
/** Imported messages on their way into the bus before the bridge waits for them. */
const IMPORT_WINDOW = 256;

/** The NATS queue group of the bridges' RPC subscriptions: one bus answers each request. */
export const RPC_QUEUE = 'vring.rpc';

/** Options of the bridge of a bus to NATS ({@link BusOptions.nats}). */
export interface NatsBridgeOptions {
  /** NATS server URLs (`nats://127.0.0.1:4222`): one server, or several of a cluster. */
  servers: string | string[];
  /**
   * Subjects (topics or patterns) this bus offers to the cluster: what its clients publish on
   * them goes to NATS, and NATS requests to names its clients serve are answered here.
   */
  export?: string[];
  /**
   * Subjects this bus takes from the cluster: NATS messages on them are delivered to its
   * subscribers, and its clients' requests to those of them that are plain names (no
   * wildcard) go to NATS while no client of this bus serves the name.
   */
  import?: string[];
  /**
   * Bytes of messages the bridge hands the NATS client while it is reconnecting, to be sent
   * once it is back (default 8 MiB, as the NATS Go client's `ReconnectBufSize`). Messages
   * past it are dropped and counted in {@link NatsBridgeStats.dropped}.
   */
  reconnectBufferBytes?: number;
  /** Milliseconds between attempts to reconnect to a server (default 2000). */
  reconnectTimeWait?: number;
  /** How long a request forwarded to NATS, or from NATS to the bus, may take (default 10 s). */
  requestTimeout?: number;
  /** The connection's name, as `nats-server` shows it (default `vring-bus <id>`). */
  name?: string;
  /**
   * Called with what goes wrong that no caller sees: the first connection failing, an error
   * the server reports. Default: one line on stderr.
   */
  onError?: (error: VringError) => void;
}

/** Counters of a bus's bridge to NATS, since it started; in {@link BusReport.nats}. */
export interface NatsBridgeStats {
  /** Whether the bridge is connected to a NATS server now. */
  connected: boolean;
  /** The server it is connected to, or last was (`host:port`); empty before the first. */
  server: string;
  /** Times it reconnected after losing its server. */
  reconnects: number;
  /** Messages published on the bus that it sent to NATS. */
  exported: number;
  /** NATS messages it delivered on the bus. */
  imported: number;
  /** Requests of the bus's clients it forwarded to NATS. */
  requestsOut: number;
  /** NATS requests it had answered by the bus's clients. */
  requestsIn: number;
  /**
   * Messages it could not send to NATS: the reconnect buffer was full, or the connection was
   * closed. (Messages a server took and lost when it died are not seen by any client: NATS
   * core delivers at most once.)
   */
  dropped: number;
  /** NATS messages not delivered: not msgpack, or on a subject the bus refuses. */
  rejected: number;
  /** The reconnect buffer's size in bytes ({@link NatsBridgeOptions.reconnectBufferBytes}). */
  reconnectBufferBytes: number;
  /** The bus's queue groups on imported subjects, carried over as NATS queue subscriptions. */
  queueGroups: number;
}

type NatsModule = typeof import('nats');

/** @internal (see {@link BusOptions.nats}) */
export function startNatsBridge(bus: Bus, options: NatsBridgeOptions): NatsBridge {
  return new NatsBridge(bus, options);
}

function invalid(message: string): VringError {
  return new VringError('ERR_VRING_INVALID_ARGUMENT', `nats bridge: ${message}`);
}

function patterns(list: string[] | undefined, what: string): TopicPattern[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw invalid(`${what} must be an array of subjects`);
  return list.map((p) => new TopicPattern(p));
}

function positive(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw invalid(`${what} must be a positive number`);
  return value;
}

/** Waits for the server to have what `connection` sent, a second at most. */
async function flushed(connection: NatsConnection): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    connection.flush().catch(() => {}),
    new Promise((resolve) => {
      timer = setTimeout(resolve, 1000);
    }),
  ]);
  clearTimeout(timer);
}

/** A queue group of the bus carried over to NATS (see `NatsBridge.#carryGroups`). */
interface CarriedGroup {
  queue: string;
  pattern: TopicPattern;
  /** The subjects of its NATS queue subscriptions: where it takes part across hosts. */
  subjects: TopicPattern[];
  /** The bridge's bus client that delivers to this group alone. */
  client: BusClient;
  subscriptions: NatsSubscription[];
}

/** What names a queue group: its pattern and queue name. */
function groupKey(pattern: string, queue: string): string {
  return `${queue}\u0000${pattern}`;
}

/** Whether every subject that pattern `inner` matches, pattern `outer` matches too. */
function covers(outer: string[], inner: string[]): boolean {
  for (let i = 0; i < outer.length; i++) {
    // A final `>` takes one token or more: `inner` has at least one from here.
    if (outer[i] === '>') return i < inner.length;
    if (i >= inner.length || inner[i] === '>') return false;
    if (outer[i] !== '*' && outer[i] !== inner[i]) return false;
  }
  return outer.length === inner.length;
}

/**
 * The subject a queue group of `pattern` on an imported `imported` subscribes to on NATS:
 * the narrower of the two, when one covers the other (else the group is not carried).
 */
function narrower(imported: string, pattern: string): string | undefined {
  const a = imported.split('.');
  const b = pattern.split('.');
  if (covers(a, b)) return pattern;
  if (covers(b, a)) return imported;
  return undefined;
}

/** A NATS request's failure as the bus's requesters know failures. */
function fromNatsError(error: unknown, name: string): VringError {
  const code = (error as NatsError | undefined)?.code;
  if (code === '503') {
    return new VringError('ERR_VRING_NO_RESPONDERS', `nobody serves ${name} on NATS`);
  }
  if (code === 'TIMEOUT') {
    return new VringError('ERR_VRING_TIMEOUT', `no reply to ${name} from NATS in time`);
  }
  if (code === 'CONNECTION_CLOSED') {
    return new VringError('ERR_VRING_CLOSED', 'the bridge to NATS is closed');
  }
  return new VringError('ERR_VRING_PEER_DISCONNECTED', `NATS request to ${name} failed`, {
    cause: error,
  });
}

/**
 * A bus's bridge to NATS (see {@link BusOptions.nats}). It is one more client of the bus,
 * which never gets back what it published there itself, so nothing it imported is exported
 * again; and its NATS connection does not hear its own messages (`noEcho`), each of which
 * names it in a `Vring-Origin` header.
 */
export class NatsBridge {
  /** The id in the `Vring-Origin` header of everything this bridge sends. */
  readonly id: string = randomUUID();
  /**
   * Resolves once the bridge is connected to NATS and to the bus with its subscriptions in
   * place; rejects if the first connection fails (a bridge that lost its server later
   * reconnects by itself).
   */
  readonly ready: Promise<void>;
  /** Settles once the bridge is closed (it closes with its bus). */
  readonly closed: Promise<void>;
  readonly #bus: Bus;
  readonly #servers: string[];
  readonly #export: TopicPattern[];
  readonly #import: TopicPattern[];
  /** Imported subjects that are plain names: RPC names the cluster may serve. */
  readonly #importedNames: Set<string>;
  readonly #bufferLimit: number;
  readonly #reconnectTimeWait: number;
  readonly #requestTimeout: number;
  readonly #name: string;
  readonly #onError: (error: VringError) => void;
  readonly #codec = new MessageCodec();
  /** Names some client of the bus serves (not the bridge). */
  readonly #servedHere = new Set<string>();
  /** NATS subscriptions answering requests for names served here and exported. */
  readonly #answering = new Map<string, NatsSubscription>();
  /** The bus's queue groups carried over to NATS queue subscriptions, by {@link groupKey}. */
  readonly #carried = new Map<string, CarriedGroup>();
  /**
   * The bus's queue groups now, by {@link groupKey}: updated as the bus reports each change,
   * before the carried groups catch up, so that a group that just lost its last member is
   * not named as having had a message.
   */
  #groupsNow = new Set<string>();
  /** Carrying groups over, one change after the other. */
  #groupsWork: Promise<void> = Promise.resolve();
  /** Services on the bus standing in for the cluster's responders of imported names. */
  readonly #standIns = new Map<string, Service>();
  readonly #counts = {
    reconnects: 0,
    exported: 0,
    imported: 0,
    requestsOut: 0,
    requestsIn: 0,
    dropped: 0,
    rejected: 0,
  };
  #nats: NatsModule | undefined;
  #connection: NatsConnection | undefined;
  #client: BusClient | undefined;
  #originHeaders!: MsgHdrs;
  /** Whether the connection is down and the NATS client buffers what it is given. */
  #reconnecting = false;
  /** Bytes handed to the NATS client since it lost its server. */
  #buffered = 0;
  #started = false;
  #closing = false;
  #resolveClosed!: () => void;

  /** @internal (use {@link BusOptions.nats}) */
  constructor(bus: Bus, options: NatsBridgeOptions) {
    if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
    const servers = Array.isArray(options.servers) ? options.servers : [options.servers];
    if (servers.length === 0 || servers.some((s) => typeof s !== 'string' || s.length === 0)) {
      throw invalid('servers must name at least one NATS server');
    }
    this.#bus = bus;
    this.#servers = servers;
    this.#export = patterns(options.export, 'export');
    this.#import = patterns(options.import, 'import');
    this.#importedNames = new Set(
      this.#import
        .map((p) => p.source)
        .filter((p) => !p.split('.').some((t) => t === '*' || t === '>')),
    );
    this.#bufferLimit = positive(
      options.reconnectBufferBytes,
      8 * 1024 * 1024,
      'reconnectBufferBytes',
    );
    this.#reconnectTimeWait = positive(options.reconnectTimeWait, 2000, 'reconnectTimeWait');
    this.#requestTimeout = positive(options.requestTimeout, 10_000, 'requestTimeout');
    this.#name = options.name ?? `vring-bus ${this.id}`;
    this.#onError =
      options.onError ??
      ((error) => process.stderr.write(`vring bus: nats bridge: ${error.message}\n`));
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.ready = this.#start();
    // Whoever does not wait for `ready` still hears why the bridge is not there.
    this.ready.catch((error: VringError) => {
      if (!this.#closing) this.#onError(error);
    });
  }

  /** The bridge's counters. */
  get stats(): NatsBridgeStats {
    const connection = this.#connection;
    return {
      connected: connection !== undefined && !connection.isClosed() && !this.#reconnecting,
      server: connection?.getServer() ?? '',
      ...this.#counts,
      reconnectBufferBytes: this.#bufferLimit,
      queueGroups: this.#carried.size,
    };
  }

  /** Closes the NATS connection, after sending what it holds if it is connected. Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.closed;
    this.#closing = true;
    void this.#shutDown().finally(() => this.#resolveClosed());
    return this.closed;
  }

  async #shutDown(): Promise<void> {
    await this.ready.catch(() => {});
    await this.#groupsWork;
    for (const carried of this.#carried.values()) carried.client.close();
    this.#carried.clear();
    for (const service of this.#standIns.values()) service.stop();
    this.#standIns.clear();
    this.#client?.close();
    const connection = this.#connection;
    if (!connection || connection.isClosed()) return;
    // Flushed only when there is a server to take it: a reconnecting client would wait.
    if (!this.#reconnecting) await flushed(connection);
    await connection.close().catch(() => {});
  }

  async #start(): Promise<void> {
    let nats: NatsModule;
    try {
      nats = await import('nats');
    } catch (cause) {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'the nats bridge needs the nats package', {
        cause,
      });
    }
    this.#nats = nats;
    let connection: NatsConnection;
    try {
      connection = await nats.connect({
        servers: this.#servers,
        name: this.#name,
        noEcho: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: this.#reconnectTimeWait,
      });
    } catch (cause) {
      throw new VringError(
        'ERR_VRING_PEER_DISCONNECTED',
        `cannot reach NATS at ${this.#servers.join(', ')}`,
        { cause },
      );
    }
    this.#connection = connection;
    if (this.#closing) return;
    const origin = nats.headers();
    origin.set(ORIGIN_HEADER, this.id);
    this.#originHeaders = origin;
    void this.#watchStatus(connection);
    const route = {
      plain: true,
      // A carried group's share of NATS messages comes through its own queue subscription.
      group: (pattern: string, queue: string) => !this.#carried.has(groupKey(pattern, queue)),
    };
    const { client, served } = await this.#bus.connectBridge(route, {
      served: (name, isServed) => {
        if (isServed) this.#servedHere.add(name);
        else this.#servedHere.delete(name);
        if (!this.#started || this.#closing) return;
        // Called from the bus's message handling: a failure here is the bridge's, not the bus's.
        try {
          this.#reconcile(name);
        } catch (error) {
          this.#failed(error);
        }
      },
      groupsChanged: () => this.#groupsChanged(),
    });
    this.#client = client;
    if (this.#closing) return;
    for (const name of served) this.#servedHere.add(name);
    for (const pattern of this.#export) void this.#exportFrom(client.subscribe(pattern.source));
    for (const pattern of this.#import) {
      this.#background(this.#importFrom(connection.subscribe(pattern.source), client));
    }
    this.#started = true;
    this.#groupsChanged();
    await this.#groupsWork;
    for (const name of new Set([...this.#servedHere, ...this.#importedNames])) {
      this.#reconcile(name);
    }
    await Promise.all([connection.flush(), client.flush()]);
  }

  async #watchStatus(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      if (status.type === 'disconnect') {
        this.#reconnecting = true;
        this.#buffered = 0;
      } else if (status.type === 'reconnect') {
        this.#reconnecting = false;
        this.#buffered = 0;
        this.#counts.reconnects++;
      } else if (status.type === 'error') {
        this.#onError(
          new VringError('ERR_VRING_PROTOCOL', `NATS server error: ${String(status.data)}`),
        );
      }
    }
  }

  /**
   * Brings `name`'s RPC in line with who serves it: served here and exported, NATS requests
   * for it are answered here; imported and not served here, the bridge serves it on the bus
   * for the cluster. A bus's own responders come first, so requests never go round in a loop.
   */
  #reconcile(name: string): void {
    const here = this.#servedHere.has(name);
    const answer = here && this.#export.some((p) => p.matches(name));
    const answering = this.#answering.get(name);
    if (answer && !answering) {
      this.#answering.set(
        name,
        this.#connection!.subscribe(name, {
          queue: RPC_QUEUE,
          callback: (error, msg) => {
            if (!error) void this.#answerFromBus(msg);
          },
        }),
      );
    } else if (!answer && answering) {
      answering.unsubscribe();
      this.#answering.delete(name);
    }
    const standIn = !here && this.#importedNames.has(name);
    const service = this.#standIns.get(name);
    if (standIn && !service) {
      this.#standIns.set(
        name,
        this.#client!.serve(name, (value, context) => this.#requestFromNats(name, value, context)),
      );
    } else if (!standIn && service) {
      service.stop();
      this.#standIns.delete(name);
    }
  }

  #groupsChanged(): void {
    if (!this.#started || this.#closing) return;
    this.#groupsNow = new Set(this.#bus.queueGroups().map((g) => groupKey(g.pattern, g.queue)));
    this.#groupsWork = this.#groupsWork.then(() => this.#carryGroups()).catch(this.#failed);
  }

  /** Reports what failed in the background, unless the bridge is closing anyway. */
  readonly #failed = (error: unknown) => {
    if (this.#closing) return;
    this.#onError(
      error instanceof VringError
        ? error
        : new VringError('ERR_VRING_PEER_DISCONNECTED', 'the bridge failed', { cause: error }),
    );
  };

  #background(work: Promise<void>): void {
    work.catch(this.#failed);
  }

  /**
   * Brings the carried queue groups in line with the bus's: each queue group on an imported
   * subject has a NATS queue subscription of the same queue name (on the narrower of its
   * pattern and the import's), and a bus client of the bridge that delivers what it brings
   * to that group alone. NATS gives each message to one subscription of a queue name, so
   * one bus among those with the group, and that bus to one member. A message a bus's own
   * client published has reached that bus's group already: it goes out naming the group
   * (`Vring-Queued`), and the bus NATS picks for it does not deliver it to the group again.
   */
  async #carryGroups(): Promise<void> {
    const wanted = new Map<string, { pattern: string; queue: string; subjects: string[] }>();
    for (const { pattern, queue } of this.#bus.queueGroups()) {
      const subjects = this.#import
        .map((i) => narrower(i.source, pattern))
        .filter((p): p is string => p !== undefined);
      if (subjects.length > 0) wanted.set(groupKey(pattern, queue), { pattern, queue, subjects });
    }
    for (const [key, carried] of this.#carried) {
      if (wanted.has(key)) continue;
      this.#carried.delete(key);
      for (const subscription of carried.subscriptions) subscription.unsubscribe();
      carried.client.close();
    }
    for (const [key, { pattern, queue, subjects }] of wanted) {
      if (this.#carried.has(key) || this.#closing) continue;
      let client: BusClient;
      try {
        ({ client } = await this.#bus.connectBridge({
          plain: false,
          group: (pattern, name) => groupKey(pattern, name) === key,
        }));
      } catch {
        return; // the bus is closing
      }
      const connection = this.#connection!;
      const subscriptions = subjects.map((subject) => connection.subscribe(subject, { queue }));
      for (const subscription of subscriptions) {
        this.#background(this.#importFrom(subscription, client, queue));
      }
      // The group leaves the bridge's plain subscriptions once the server has its queue
      // subscription (or a while later if it does not answer): a message may reach the
      // group twice meanwhile, but none is lost to it.
      await flushed(connection);
      this.#carried.set(key, {
        queue,
        pattern: new TopicPattern(pattern),
        subjects: subjects.map((subject) => new TopicPattern(subject)),
        client,
        subscriptions,
      });
    }
  }

  /** Sends what the bus's clients publish on an exported pattern to NATS. */
  async #exportFrom(subscription: Subscription): Promise<void> {
    try {
      for await (const { topic, value, headers } of subscription) {
        this.#send(topic, this.#codec.encode(value), headers, this.#queuedHere(topic));
      }
    } catch {
      // The bus closed under the bridge: it is closing too.
    }
  }

  /**
   * The queue names of the carried groups that the bus gave a message on `topic` published
   * by one of its own clients: a group of the bus now whose pattern and NATS subscription
   * both match the topic. (A group on a subject the bus does not import is the bus's own,
   * not part of a group across hosts, and is not named.)
   */
  #queuedHere(topic: string): string[] {
    const queues: string[] = [];
    for (const [key, group] of this.#carried) {
      if (queues.includes(group.queue) || !this.#groupsNow.has(key)) continue;
      if (group.pattern.matches(topic) && group.subjects.some((s) => s.matches(topic))) {
        queues.push(group.queue);
      }
    }
    return queues;
  }

  /**
   * A message's headers as NATS headers, with the bridge's origin and the queue groups that
   * had it already. A name NATS does not take in a header (one with `:` or white space) is
   * left out, and so are the bridge's own, which only the bridge sets.
   */
  #toNats(headers: MessageHeaders | undefined, queued: string[] = []): MsgHdrs {
    if (headers === undefined && queued.length === 0) return this.#originHeaders;
    const nats = this.#nats!.headers();
    for (const [name, value] of Object.entries(headers ?? {})) {
      if (name === ORIGIN_HEADER || name === QUEUED_HEADER) continue;
      try {
        nats.set(name, value);
      } catch {
        // Not a NATS header name: it cannot cross.
      }
    }
    nats.set(ORIGIN_HEADER, this.id);
    // One value per queue name, not a joined list: no separator to mistake for a name's own.
    for (const queue of queued) nats.append(QUEUED_HEADER, queue);
    return nats;
  }

  /** A NATS message's headers as the bus's, without the bridge's own (several values: joined by `,`). */
  #fromNats(nats: MsgHdrs | undefined): MessageHeaders | undefined {
    if (!nats) return undefined;
    const headers: Record<string, string> = {};
    let any = false;
    for (const [name, values] of nats) {
      if (name === ORIGIN_HEADER || name === ERROR_HEADER || name === QUEUED_HEADER) continue;
      headers[name] = values.join(',');
      any = true;
    }
    return any ? headers : undefined;
  }

  #send(
    subject: string,
    payload: Uint8Array,
    headers: MessageHeaders | undefined,
    queued: string[],
  ): void {
    const connection = this.#connection!;
    if (this.#reconnecting) {
      const size = payload.byteLength + subject.length;
      if (this.#buffered + size > this.#bufferLimit) {
        this.#counts.dropped++;
        return;
      }
      this.#buffered += size;
    }
    try {
      connection.publish(subject, payload, { headers: this.#toNats(headers, queued) });
      this.#counts.exported++;
    } catch {
      // Closed: nothing will take it.
      this.#counts.dropped++;
    }
  }

  /**
   * Delivers NATS messages on an imported pattern on the bus; for the queue subscription of
   * a carried group (`queue`), all but those whose publisher's bus gave them to a group of
   * that name already.
   */
  async #importFrom(
    subscription: NatsSubscription,
    client: BusClient,
    queue?: string,
  ): Promise<void> {
    const delivered = () => {
      this.#counts.imported++;
    };
    const refused = () => {
      if (!this.#closing) this.#counts.rejected++;
    };
    // Publishes in flight: a window of them is awaited at a time, so that a bus holding its
    // publishers back holds this subscription back (the NATS server then treats the bridge
    // as a slow consumer), without a wait per message.
    let window: Array<Promise<void>> = [];
    for await (const msg of subscription) {
      // A request is for a bridge that answers it, not a message to deliver.
      if (msg.reply) continue;
      if (msg.headers?.get(ORIGIN_HEADER) === this.id) continue;
      // Its publisher's bus had a member of the group handle it: once per message.
      if (queue !== undefined && msg.headers?.values(QUEUED_HEADER).includes(queue)) continue;
      let value: unknown;
      try {
        value = this.#codec.decode(msg.data);
      } catch {
        this.#counts.rejected++;
        continue;
      }
      const headers = this.#fromNats(msg.headers);
      window.push(
        client.publish(msg.subject, value, headers ? { headers } : {}).then(delivered, refused),
      );
      if (window.length === IMPORT_WINDOW || subscription.getPending() === 0) {
        await Promise.all(window);
        window = [];
        if (this.#closing) return;
      }
    }
  }

  /** A NATS request for a name served on this bus: asks the bus, answers NATS. */
  async #answerFromBus(msg: Msg): Promise<void> {
    // A publish on the name, not a request: nothing to answer.
    if (!msg.reply) return;
    this.#counts.requestsIn++;
    let reply: Uint8Array;
    let replyHeaders: MessageHeaders | undefined;
    let headers: MsgHdrs;
    try {
      const value = this.#codec.decode(msg.data);
      const requestHeaders = this.#fromNats(msg.headers);
      const answer = await this.#client!.request(msg.subject, value, {
        timeout: this.#requestTimeout,
        ...(requestHeaders && { headers: requestHeaders }),
        onReplyHeaders: (h) => {
          replyHeaders = h;
        },
      });
      reply = this.#codec.encode(answer);
      headers = this.#toNats(replyHeaders);
    } catch (error) {
      const wire = toWireError(error);
      headers = this.#toNats({ ...replyHeaders });
      headers.set(ERROR_HEADER, wire.code);
      reply = this.#codec.encode(wire);
    }
    try {
      msg.respond(reply, { headers });
    } catch {
      this.#counts.dropped++;
    }
  }

  /** A request of the bus's clients for an imported name nobody serves here: asks NATS. */
  async #requestFromNats(name: string, value: unknown, context: RequestContext): Promise<unknown> {
    this.#counts.requestsOut++;
    let msg: Msg;
    try {
      msg = await this.#connection!.request(name, this.#codec.encode(value), {
        timeout: this.#requestTimeout,
        headers: this.#toNats(context.headers),
      });
    } catch (error) {
      throw fromNatsError(error, name);
    }
    const failed = msg.headers?.get(ERROR_HEADER);
    context.replyHeaders = this.#fromNats(msg.headers);
    let reply: unknown;
    try {
      reply = this.#codec.decode(msg.data);
    } catch {
      throw VringError.remote('ERR_VRING_REMOTE', `the reply to ${name} is not msgpack`);
    }
    if (failed) {
      throw fromWireError({ code: failed, ...(reply as Partial<WireError>) });
    }
    return reply;
  }
}
