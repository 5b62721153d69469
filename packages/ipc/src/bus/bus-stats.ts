import type { NatsBridgeStats } from './nats-bridge.js';

/** Counters of a {@link Bus}, in total. */
export interface BusStats {
  /** Clients attached now. */
  clients: number;
  /** Subscriptions held now. */
  subscriptions: number;
  /** Messages published. */
  published: number;
  /**
   * Copies delivered to clients: per message, one per client for all its plain
   * subscriptions, and one per queue group (to the member it picked).
   */
  delivered: number;
  /** Copies dropped for `drop` subscriptions. */
  dropped: number;
  /** Requests routed to a responder (a request-many counts once per responder). */
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

/** Counters of one client attached to a {@link Bus}, since it attached. */
export interface ClientStats {
  /** The bus's number for the client (as in its error reports); negative for one in-process. */
  id: number;
  /** The client's process id, when the kernel told the bus (not for in-process clients). */
  pid?: number;
  /** The client's effective uid, likewise. */
  uid?: number;
  /**
   * The format of the client's rings: `packed` when it asked for packed rings
   * (`ConnectBusOptions.packed`) and the bus accepted, else `split`. Absent for in-process
   * clients, which have no rings.
   */
  rings?: 'split' | 'packed';
  /** Messages the bus holds for the client now, not yet in its ring. */
  queued: number;
  /** Their bytes (see `BusOptions.highWaterBytes`). */
  queuedBytes: number;
  /** Messages the client published. */
  published: number;
  /** Copies of published messages delivered to it (one per message, whatever its sids). */
  delivered: number;
  /** Copies discarded for its `drop` subscriptions because its queue was full. */
  dropped: number;
  /**
   * Slow-consumer events: times the bus had a message for the client and found its queue
   * full (`highWaterMark` messages or `highWaterBytes` bytes). One event lasts until the queue drains to half, so a
   * client that stays full counts once, and each new time it fills counts again.
   */
  slowConsumer: number;
  /** Requests it made (a request-many counts once). */
  requestsSent: number;
  /** Requests routed to it as a responder. */
  requestsServed: number;
}

/** Counters of one subject (a topic published to), since the bus started. */
export interface SubjectStats {
  /** The topic. */
  subject: string;
  /** Messages published on it. */
  published: number;
  /** Copies delivered (as in {@link BusStats.delivered}). */
  delivered: number;
  /** Copies dropped for `drop` subscriptions. */
  dropped: number;
}

/**
 * Everything a {@link Bus} counts: what {@link Bus.report} returns, and what a client gets
 * from a request to `$vring.stats`.
 */
export interface BusReport {
  /** The totals ({@link Bus.stats}). */
  totals: BusStats;
  /** The clients attached now, by id. */
  clients: ClientStats[];
  /** Each subject published to, in the order first seen (at most 4096). */
  subjects: SubjectStats[];
  /** Subjects first published to after the limit was reached, counted together. */
  otherSubjects: Omit<SubjectStats, 'subject'>;
  /** The bridge's counters, when the bus is bridged to NATS. */
  nats?: NatsBridgeStats;
}

/** Subjects counted one by one: a bound on the bus's memory, not a tuning knob. */
export const SUBJECT_LIMIT = 4096;

/** A client's counters as the bus updates them. @internal */
export class ClientCounters {
  published = 0;
  delivered = 0;
  dropped = 0;
  slowConsumer = 0;
  requestsSent = 0;
  requestsServed = 0;
  /** Whether the current slow-consumer event has been counted (until the queue drains). */
  atHighWater = false;
}

/** A subject's counters as the bus updates them. @internal */
export class SubjectCounters {
  readonly subject: string;
  published = 0;
  delivered = 0;
  dropped = 0;

  constructor(subject: string) {
    this.subject = subject;
  }

  snapshot(): SubjectStats {
    const { subject, published, delivered, dropped } = this;
    return { subject, published, delivered, dropped };
  }
}

/**
 * The counters of every subject, handed out once per topic when the route table resolves
 * it: a publish then counts through the route it already holds, with no lookup of its own.
 * @internal
 */
export class SubjectTally {
  readonly #subjects = new Map<string, SubjectCounters>();
  readonly #other = new SubjectCounters('');

  of(topic: string): SubjectCounters {
    const known = this.#subjects.get(topic);
    if (known) return known;
    if (this.#subjects.size >= SUBJECT_LIMIT) return this.#other;
    const counters = new SubjectCounters(topic);
    this.#subjects.set(topic, counters);
    return counters;
  }

  snapshot(): { subjects: SubjectStats[]; otherSubjects: Omit<SubjectStats, 'subject'> } {
    const { published, delivered, dropped } = this.#other;
    return {
      subjects: [...this.#subjects.values()].map((c) => c.snapshot()),
      otherSubjects: { published, delivered, dropped },
    };
  }
}
