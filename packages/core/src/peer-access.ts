/**
 * Who may attach to a listening socket, and whom a connecting side accepts at the other end:
 * the socket file's mode, and the peer's kernel-recorded credentials (SO_PEERCRED) checked
 * against an allow-list once per connection, before anything the peer sent is read.
 *
 * @packageDocumentation
 */
import { VringError } from './errors.js';

/**
 * Who is at the other end of a Unix socket, as the kernel recorded it when the connection
 * was made. Ids are as seen from this process's user and PID namespaces: a peer whose uid
 * has no mapping here (e.g. a container's unmapped user) reads as the overflow id 65534.
 * @public
 */
export interface PeerCredentials {
  /** The peer's process id, when it connected. */
  readonly pid: number;
  /** The peer's effective uid. */
  readonly uid: number;
  /** The peer's effective gid. */
  readonly gid: number;
  /** Its supplementary groups (empty on kernels before 4.13, which cannot tell). */
  readonly groups: readonly number[];
}

/** A peer refused by a listener (see {@link ListenAccessOptions.onRefused}). @public */
export interface PeerRefusal {
  /** The socket path the peer connected to. */
  readonly path: string;
  /** Its credentials; undefined when the kernel could not tell them (then it is refused). */
  readonly peer: PeerCredentials | undefined;
  /**
   * On its credentials: `not-allowed`, `authorize-threw`, or `credentials-unavailable`. Over
   * a connection limit (see `PeerLimitOptions`): `connection-limit` or `uid-connection-limit`.
   */
  readonly reason: string;
}

/**
 * Access control of a listening socket. Defaults: the socket file is `0600`, and a peer is
 * admitted when its uid is this process's effective uid or 0 (root can read this process's
 * memory anyway, so refusing it would protect nothing).
 * @public
 */
export interface ListenAccessOptions {
  /**
   * Permission bits of the socket file (default `0o600`), set before the socket listens.
   * Connecting needs write permission on the file, so `0o660` lets the file's group in and
   * `0o666` everyone who can reach the directory; the credential check still applies.
   * Not allowed with an `@abstract` name, which has no file.
   */
  socketMode?: number | undefined;
  /** Further uids admitted besides the default ones. */
  allowUids?: readonly number[] | undefined;
  /** Gids admitted: a peer whose effective gid or any supplementary group is listed. */
  allowGids?: readonly number[] | undefined;
  /**
   * Decides alone who is admitted (instead of the uid rule and the lists, which must then
   * not be given). Called once per connection, before anything the peer sent is read; a
   * callback that throws refuses the peer.
   */
  authorize?: ((peer: PeerCredentials) => boolean) | undefined;
  /**
   * Told about every refused peer, and every peer turned away by a connection limit.
   * Default: one line on stderr with its pid, uid and gid, and the reason.
   */
  onRefused?: ((refusal: PeerRefusal) => void) | undefined;
}

/** A connecting side's check of who listens at the path. @public */
export interface ConnectAccessOptions {
  /**
   * The uid (or uids) the listening peer must have; any other fails the connection with
   * `ERR_VRING_PEER_REFUSED` (reason `peer-not-allowed`) before anything is sent to it.
   * Default: no check.
   */
  expectPeerUid?: number | readonly number[] | undefined;
}

/** The mode a listener's socket file gets when none is asked for. @internal */
export const DEFAULT_SOCKET_MODE = 0o600;

const MAX_ID = 0xffff_ffff;

function checkIds(ids: readonly number[] | undefined, name: string): readonly number[] {
  if (ids === undefined) return [];
  if (!Array.isArray(ids) || !ids.every((id) => Number.isInteger(id) && id >= 0 && id <= MAX_ID)) {
    throw new VringError(
      'ERR_VRING_INVALID_ARGUMENT',
      `${name} must be a list of ids in [0, 2^32)`,
    );
  }
  return ids;
}

function describePeer(peer: PeerCredentials | undefined): string {
  return peer ? `pid ${peer.pid} uid ${peer.uid} gid ${peer.gid}` : 'a peer of unknown identity';
}

function logRefusal(refusal: PeerRefusal): void {
  process.stderr.write(
    `vring: refused a connection on ${refusal.path} from ${describePeer(refusal.peer)} ` +
      `(${refusal.reason})\n`,
  );
}

/**
 * A listener's access policy, checked once up front: the mode its socket file gets, and the
 * decision on each accepted peer.
 * @internal
 */
export class PeerGate {
  readonly path: string;
  /** Permission bits for the socket file (ignored for an abstract name). */
  readonly socketMode: number;
  readonly #uids: ReadonlySet<number>;
  readonly #gids: ReadonlySet<number>;
  readonly #authorize: ((peer: PeerCredentials) => boolean) | undefined;
  readonly #onRefused: (refusal: PeerRefusal) => void;
  #refused = 0;

  /** @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a bad option. */
  constructor(path: string, options: ListenAccessOptions = {}) {
    this.path = path;
    const abstract = path.startsWith('@') || path.startsWith('\0');
    const mode = options.socketMode ?? DEFAULT_SOCKET_MODE;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        'socketMode must be permission bits in [0, 0o777]',
      );
    }
    if (abstract && options.socketMode !== undefined) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        'socketMode cannot apply to an abstract socket name: it has no file (use the ' +
          'credential options to restrict it)',
      );
    }
    this.socketMode = mode;
    const uids = checkIds(options.allowUids, 'allowUids');
    const gids = checkIds(options.allowGids, 'allowGids');
    if (options.authorize !== undefined && typeof options.authorize !== 'function') {
      throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'authorize must be a function');
    }
    if (options.authorize && (uids.length > 0 || gids.length > 0)) {
      throw new VringError(
        'ERR_VRING_INVALID_ARGUMENT',
        'authorize decides alone: give it or allowUids/allowGids, not both',
      );
    }
    this.#authorize = options.authorize;
    this.#uids = new Set([process.geteuid?.() ?? 0, 0, ...uids]);
    this.#gids = new Set(gids);
    this.#onRefused = options.onRefused ?? logRefusal;
  }

  /** Peers refused so far. */
  get refused(): number {
    return this.#refused;
  }

  /**
   * Whether `readCredentials`' peer may attach. A refusal is counted and reported before
   * this returns false.
   */
  admits(readCredentials: () => PeerCredentials): boolean {
    let peer: PeerCredentials | undefined;
    let reason: string;
    try {
      peer = readCredentials();
    } catch {
      return this.#refuse(undefined, 'credentials-unavailable');
    }
    if (this.#authorize) {
      try {
        if (this.#authorize(peer) === true) return true;
        reason = 'not-allowed';
      } catch {
        reason = 'authorize-threw';
      }
    } else {
      if (this.#uids.has(peer.uid)) return true;
      if (this.#gids.has(peer.gid) || peer.groups.some((g) => this.#gids.has(g))) return true;
      reason = 'not-allowed';
    }
    return this.#refuse(peer, reason);
  }

  /**
   * Reports `peer`, admitted on its credentials, as turned away for `reason` all the same
   * (a connection limit); counted by the caller, not in {@link refused}.
   */
  report(peer: PeerCredentials, reason: string): void {
    this.#tell(peer, reason);
  }

  #refuse(peer: PeerCredentials | undefined, reason: string): false {
    this.#refused++;
    this.#tell(peer, reason);
    return false;
  }

  #tell(peer: PeerCredentials | undefined, reason: string): void {
    try {
      this.#onRefused({ path: this.path, peer, reason });
    } catch {
      // A throwing logger must not keep a refused peer attached or stop the listener.
    }
  }
}

/**
 * The uids `options.expectPeerUid` asks for, checked (undefined: no check).
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a bad option.
 * @internal
 */
export function expectedPeerUids(options: ConnectAccessOptions): readonly number[] | undefined {
  const expected = options.expectPeerUid;
  if (expected === undefined) return undefined;
  return checkIds(typeof expected === 'number' ? [expected] : expected, 'expectPeerUid');
}

/**
 * Checks the listening peer of a fresh connection against the uids of
 * {@link expectedPeerUids} (no check when undefined).
 * @throws VringError `ERR_VRING_PEER_REFUSED` (reason `peer-not-allowed`) when the peer's uid
 * is not an expected one.
 * @internal
 */
export function checkListeningPeer(
  path: string,
  uids: readonly number[] | undefined,
  readCredentials: () => PeerCredentials,
): void {
  if (uids === undefined) return;
  const peer = readCredentials();
  if (uids.includes(peer.uid)) return;
  throw new VringError(
    'ERR_VRING_PEER_REFUSED',
    `the process listening at ${path} (${describePeer(peer)}) is not the expected uid ` +
      `${uids.join(' or ')}`,
    { reason: 'peer-not-allowed' },
  );
}
