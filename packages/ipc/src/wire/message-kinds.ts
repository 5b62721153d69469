/**
 * Message kinds (the `kind` byte of the frame header) of Channel, RPC and the bus, and the
 * msgpack shape of each kind's body. Specified in docs/wire-format.md, "Message kinds".
 */
export const Kind = {
  /** Channel value: `value`. */
  MESSAGE: 1,
  /**
   * Start of a bus session, both ways: `[version, maxFrame]`; the bus's answer adds
   * `features`, the names of what it supports beyond the first version ({@link BUS_FEATURES}).
   */
  HELLO: 2,
  /**
   * Client → bus: `[sid, pattern, policy]` (policy 0 = block, 1 = drop), or
   * `[sid, pattern, policy, queue]` to join the queue group `queue` of `pattern`.
   */
  SUBSCRIBE: 3,
  /** Client → bus: `[sid]`. */
  UNSUBSCRIBE: 4,
  /** Client → bus: `[topic, value]`, or `[topic, value, headers]` (see wire/headers.ts). */
  PUBLISH: 5,
  /**
   * Bus → client: `[sids, topic, value]` (`[sids, topic, value, headers]` for a publish
   * with headers), one message per client for all its matching subscriptions.
   */
  DELIVER: 6,
  /** Client → bus: `[name]`, this client answers requests for `name`. */
  SERVE: 7,
  /** Client → bus: `[name]`. */
  UNSERVE: 8,
  /** Requester → responder: `[requestId, name, value]`, or with `headers` last. */
  REQUEST: 9,
  /** Responder → requester: `[requestId, status, value]` (see {@link ReplyStatus}), or with `headers` last. */
  REPLY: 10,
  /** Requester → responder: `[requestId]`, the requester no longer wants the reply. */
  CANCEL: 11,
  /** Bus → client: `[sid, count]`, the bus dropped `count` messages for a `drop` subscription. */
  DROPPED: 12,
  /** Client → bus: `[id]`; the bus answers PONG once it has handled everything before it. */
  PING: 13,
  /** Bus → client: `[id]`. */
  PONG: 14,
  /**
   * Client → bus: `[requestId, name, value]`, sent to every client serving `name`; the
   * replies come back as REPLY NEXT, then one END once every responder has answered.
   */
  REQUEST_MANY: 15,
  /**
   * Direct routes (see docs/wire-format.md). Client → bus: `[address]`, this client takes
   * part: requesters may reach the names it serves at the socket `address` (nil: it only
   * asks). Bus → client: `[name, address]`, requests for `name` may go straight to its only
   * responder at `address`; `[name, nil]` takes that back.
   */
  ROUTE: 16,
  /**
   * Client → bus: `[features]`, what this client reads beyond the first version (today
   * `headers`): sent once the bus's HELLO has listed them. Until then the bus sends it
   * messages without their headers.
   */
  FEATURES: 17,
} as const;

/** The `status` of a REPLY. */
export const ReplyStatus = {
  /** The one result; the request is over. */
  VALUE: 0,
  /** One value of a stream; more follow. */
  NEXT: 1,
  /** The stream ended; `value` is nil. */
  END: 2,
  /** The handler failed: `value` is `{ code, message, data? }`; the request is over. */
  ERROR: 3,
} as const;

/** Wire codes of a subscription's backpressure policy. */
export const PolicyCode = { block: 0, drop: 1 } as const;

/** Version carried by HELLO: a peer refuses a session of another version. */
export const BUS_PROTOCOL_VERSION = 1;

/**
 * What this bus supports beyond the first version of the protocol, as its HELLO lists it:
 * a client checks for a feature before it uses it, so that a bus without it refuses the
 * call clearly instead of disconnecting the client.
 */
export const BUS_FEATURES = [
  'queue-groups',
  'request-many',
  'stats',
  'direct-routes',
  'headers',
] as const;

/** A feature a bus may list in its HELLO. */
export type BusFeature = (typeof BUS_FEATURES)[number];

/** Longest topic or RPC name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;

/**
 * Deepest nesting of arrays and maps in a value the bus forwards: deeper values would
 * exhaust the stack of a recursive decoder on the receiving side.
 */
export const MAX_VALUE_DEPTH = 512;
