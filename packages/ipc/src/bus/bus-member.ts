import type { FramePort, PeerCredentials } from '@vring/core';
import { Link, type LinkOptions } from '../link/link.js';
import { Kind } from '../wire/message-kinds.js';
import { RepeatedString } from '../wire/repeated-string.js';
import type { BridgeRoute } from './bus.js';
import { ClientCounters } from './bus-stats.js';

/** Frames a member is sent before its HELLO says what it takes. */
const INITIAL_MAX_FRAME = 1514;

/** A REQUEST_MANY in flight at the bus: the bus's calls for it, one per responder, still open. @internal */
export interface FanOut {
  requester: BusMember;
  requestId: number;
  calls: Set<number>;
}

/**
 * One client attached to the bus: its link and what the bus must undo when it goes
 * (subscriptions live in the route table). @internal
 */
export class BusMember {
  readonly id: number;
  /** The client's process, when the kernel told (not for an in-process client). */
  readonly peer: PeerCredentials | undefined;
  readonly link: Link;
  readonly counters = new ClientCounters();
  /** The topic this client last published on, to spare decoding it again per message. */
  readonly recentTopic = new RepeatedString();
  /** The name this client last requested, likewise. */
  readonly recentName = new RepeatedString();
  /** Whether the client's HELLO has arrived: nothing else is accepted before it. */
  greeted = false;
  /**
   * Whether the client is a bridge to other buses (see nats-bridge.ts): it never gets back
   * what it published or requested itself, and its serving does not count as the bus's own.
   */
  bridge = false;
  /**
   * For a bridge's client, where its publishes go: the plain subscriptions or not, and the
   * queue groups it picks (a group whose share comes through a NATS queue subscription of
   * its own takes nothing from the bridge's other clients).
   */
  bridgeRoute: BridgeRoute | undefined = undefined;
  /**
   * Whether the client reads headers (it said so with FEATURES): until then the bus
   * forwards it messages without theirs, as a client from before headers expects.
   */
  readsHeaders = false;
  /**
   * The send lane of the DELIVERs of this client's PUBLISH_IN_ORDER messages, at every
   * subscriber: one lane keeps them in publish order. It starts with a dot, so no topic
   * (the lane of the others) is ever the same string.
   */
  readonly orderLane: string;
  /** Why a publisher is paused while this client's queue is full (one string, made once). */
  readonly holdReason: string;
  /** Names this client serves. */
  readonly serves = new Set<string>();
  /** Requests this client made that are in flight: its request id → the bus's call id. */
  readonly requests = new Map<number, number>();
  /** REQUEST_MANYs this client made that are in flight, by its request id. */
  readonly fanOuts = new Map<number, FanOut>();
  /** Calls routed to this client for an answer. */
  readonly answering = new Set<number>();
  /** Members whose reading is paused until this member's send queue drains. */
  readonly blockedPublishers = new Set<BusMember>();
  /** Messages dropped per `drop` subscription since the client was last told. */
  readonly drops = new Map<number, number>();
  /**
   * Direct routes: undefined while the client takes no part; else where requesters may
   * reach it (null: it only asks).
   */
  directAddress: string | null | undefined = undefined;
  /** Names this client has been told to reach directly, and not told otherwise since. */
  readonly routedNames = new Set<string>();

  constructor(
    id: number,
    peer: PeerCredentials | undefined,
    port: FramePort,
    maxMessage: number,
    lowWaterMark: number,
    lowWaterBytes: number,
    onMessage: (member: BusMember, ...message: Parameters<LinkOptions['onMessage']>) => void,
    onWritable: (member: BusMember) => void,
  ) {
    this.id = id;
    this.orderLane = `.${id}`;
    this.holdReason = `member ${id}`;
    this.peer = peer;
    this.link = new Link(port, {
      maxFrame: Math.min(INITIAL_MAX_FRAME, port.maxMessage),
      maxMessage,
      // A front-end that reconnects to us keeps its rings: whatever it had queued for the
      // bus it lost is dropped until its HELLO starts the session.
      syncKind: Kind.HELLO,
      lowWaterMark,
      lowWaterBytes,
      // The bus reads routing fields and forwards payload bytes where they lie.
      onMessage: (kind, data, start, end, owned) => onMessage(this, kind, data, start, end, owned),
      onWritable: () => onWritable(this),
    });
  }
}
