/**
 * What one peer may cost a listener: the memory a front-end can make a back-end map, and how
 * many connections a listener holds at once, in all and per peer uid. A peer over a limit is
 * told so (`ERR_VRING_LIMIT_EXCEEDED` with the limit's name as `reason`), disconnected and
 * counted; everyone else carries on.
 *
 * @packageDocumentation
 */

import { VringError } from './errors.js';
import type { PeerCredentials } from './peer-access.js';

/**
 * Caps on what peers may cost a listener; each has a default, and `Infinity` lifts it.
 * @public
 */
export interface PeerLimitOptions {
  /**
   * Bytes of memory one front-end may have a back-end map: the sum of the region sizes in its
   * memory table (default {@link DEFAULT_PEER_LIMITS}: 4 GiB). Every page of it is faulted in
   * when mapped, so this bounds what a front-end can make the back-end commit. A larger
   * table is refused before any of it is mapped, with `ERR_VRING_LIMIT_EXCEEDED` (reason
   * `memory-limit`).
   */
  maxPeerMemory?: number | undefined;
  /**
   * Connections a listener holds open at once (default 256). One more is closed on arrival,
   * before anything it sent is read (reason `connection-limit`).
   */
  maxConnections?: number | undefined;
  /**
   * Connections a listener holds open at once from one uid (default 64), so one user cannot
   * take every slot of {@link PeerLimitOptions.maxConnections} (reason `uid-connection-limit`).
   */
  maxConnectionsPerUid?: number | undefined;
}

/** The limits that apply when {@link PeerLimitOptions} does not give one. @public */
export const DEFAULT_PEER_LIMITS = {
  /** 4 GiB: a DPDK process with a few GiB of memory fits; a sparse 1 TiB memfd does not. */
  maxPeerMemory: 4 * 1024 ** 3,
  /** Connections one listener holds at once. */
  maxConnections: 256,
  /** Connections one listener holds at once from one uid: a quarter of the whole. */
  maxConnectionsPerUid: 64,
} as const satisfies Required<PeerLimitOptions>;

/** Which limit a peer went over: the `reason` of its `ERR_VRING_LIMIT_EXCEEDED`. @public */
export type PeerLimitReason = 'memory-limit' | 'connection-limit' | 'uid-connection-limit';

/**
 * The limit named `name`: given, or its default.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` unless it is a positive integer or
 * `Infinity`.
 * @internal
 */
export function peerLimit(options: PeerLimitOptions, name: keyof PeerLimitOptions): number {
  const value = options[name] ?? DEFAULT_PEER_LIMITS[name];
  if (value !== Number.POSITIVE_INFINITY && !(Number.isSafeInteger(value) && value > 0)) {
    throw new VringError(
      'ERR_VRING_INVALID_ARGUMENT',
      `${name} must be a positive integer or Infinity`,
    );
  }
  return value;
}

/**
 * The error a peer over a limit ends with, on both sides: `message` says what it asked for
 * against what is allowed.
 * @internal
 */
export function limitExceeded(reason: PeerLimitReason, message: string): VringError {
  return new VringError('ERR_VRING_LIMIT_EXCEEDED', message, { reason });
}

/**
 * A listener's count of the connections it holds, in all and per uid, against
 * {@link PeerLimitOptions.maxConnections} and {@link PeerLimitOptions.maxConnectionsPerUid}.
 * @internal
 */
export class ConnectionLimits {
  readonly #max: number;
  readonly #maxPerUid: number;
  readonly #perUid = new Map<number, number>();
  #open = 0;

  /** @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a limit that is not a positive integer. */
  constructor(options: PeerLimitOptions) {
    this.#max = peerLimit(options, 'maxConnections');
    this.#maxPerUid = peerLimit(options, 'maxConnectionsPerUid');
  }

  /**
   * Takes a slot for a connection of `peer`, or returns the limit it would go over (and
   * takes nothing). A taken slot is given back with {@link release}.
   */
  take(peer: PeerCredentials): PeerLimitReason | undefined {
    if (this.#open >= this.#max) return 'connection-limit';
    const held = this.#perUid.get(peer.uid) ?? 0;
    if (held >= this.#maxPerUid) return 'uid-connection-limit';
    this.#open++;
    this.#perUid.set(peer.uid, held + 1);
    return undefined;
  }

  /** Gives back the slot {@link take} gave a connection of `peer`. */
  release(peer: PeerCredentials): void {
    this.#open--;
    const held = (this.#perUid.get(peer.uid) ?? 1) - 1;
    if (held > 0) this.#perUid.set(peer.uid, held);
    else this.#perUid.delete(peer.uid);
  }
}
