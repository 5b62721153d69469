/**
 * Stable error codes. Match on `error.code`, never on the message text.
 *
 * @public
 */
export type VringErrorCode =
  | 'ERR_VRING_INVALID_ARGUMENT'
  | 'ERR_VRING_CLOSED'
  | 'ERR_VRING_SYSTEM'
  | 'ERR_VRING_PERMISSION'
  | 'ERR_VRING_PEER_REFUSED'
  | 'ERR_VRING_LIMIT_EXCEEDED'
  | 'ERR_VRING_NOT_MEMFD'
  | 'ERR_VRING_REGION_BOUNDS'
  | 'ERR_VRING_REGION_NOT_SEALED'
  | 'ERR_VRING_BAD_RING'
  | 'ERR_VRING_QUEUE_BROKEN'
  | 'ERR_VRING_OVERSIZED_MESSAGE'
  | 'ERR_VRING_PEER_DISCONNECTED'
  | 'ERR_VRING_PARTIAL_MESSAGE'
  | 'ERR_VRING_FDS_TRUNCATED'
  | 'ERR_VRING_PROTOCOL'
  | 'ERR_VRING_FEATURE_MISMATCH'
  | 'ERR_VRING_TIMEOUT'
  | 'ERR_VRING_ABORTED'
  | 'ERR_VRING_NO_RESPONDERS'
  | 'ERR_VRING_QUEUE_FULL'
  | 'ERR_VRING_REMOTE'
  | 'ERR_VRING_UNSUPPORTED_PLATFORM'
  | 'ERR_VRING_NATIVE_LOAD';

/** Extra fields a {@link VringError} may carry. @public */
export interface VringErrorOptions extends ErrorOptions {
  /** OS error number, when the OS refused an operation. */
  errno?: number | undefined;
  /** The system call that failed, when the OS refused an operation. */
  syscall?: string | undefined;
  /**
   * Why something was rejected, as a stable kebab-case word to match on (the message is for
   * people): the check a peer's ring data failed (`ERR_VRING_BAD_RING`, e.g.
   * `descriptor-loop`); what was wrong with a frame or message a peer sent (e.g.
   * `short-message`: the peer left mid-message, `too-many-fds`: more than 8 with one message,
   * `oversized-message`: a length above the receiver's limit, `unknown-request`); or why a
   * request was refused (e.g. `nack`, `features-changed`); for `ERR_VRING_PEER_REFUSED`, which
   * side refused (`refused-by-peer`: the listener refused our credentials; `peer-not-allowed`:
   * the listener is not the uid we expect); for `ERR_VRING_LIMIT_EXCEEDED`, which limit
   * (`memory-limit`, `connection-limit`, `uid-connection-limit`: see `PeerLimitOptions`).
   * Undefined where the code says it all.
   */
  reason?: string | undefined;
  /** Extra data an RPC handler attached to its error (see {@link VringError.remote}). */
  data?: unknown;
}

/**
 * The one error class vring throws. Every failure has a stable `code`; failures the OS
 * reported also carry `errno` and `syscall`, and rejections (a bad ring, a bad frame from a
 * peer, a refused request) a stable `reason`.
 *
 * @public
 */
export class VringError extends Error {
  /**
   * A {@link VringErrorCode} for failures of this process; for an error that an RPC handler
   * threw in another process, whatever code the handler gave it (`remote` is true then).
   */
  readonly code: VringErrorCode | (string & {});
  /** OS error number, when the OS refused an operation. */
  readonly errno: number | undefined;
  /** The system call that failed, when the OS refused an operation. */
  readonly syscall: string | undefined;
  /** Why something was rejected, when there is more to say than the code (see {@link VringErrorOptions.reason}). */
  readonly reason: string | undefined;
  /** Extra data an RPC handler attached to its error. */
  readonly data: unknown;
  /** Whether the error happened in another process and was carried here. */
  readonly remote: boolean;

  constructor(code: VringErrorCode, message: string, options: VringErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = options.errno;
    this.syscall = options.syscall;
    this.reason = options.reason;
    this.data = options.data;
    this.remote = false;
  }

  /**
   * An error that happened in another process, carried here with its own code (which need
   * not be one of vring's: a handler may throw `{ code: 'E_NOT_FOUND' }`).
   */
  static remote(code: string, message: string, options: VringErrorOptions = {}): VringError {
    const error = new VringError(code as VringErrorCode, message, options);
    (error as { remote: boolean }).remote = true;
    return error;
  }

  /** Always `'VringError'`, so logs and `util.inspect` name the class. */
  override get name(): string {
    return 'VringError';
  }
}

/**
 * An option that must be a positive number (a delay, a timeout): `value`, or `fallback` when
 * it is not given.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` naming the option when it is not a
 * positive finite number.
 * @internal
 */
export function positiveOption(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${name} must be a positive number`);
  }
  return v;
}
