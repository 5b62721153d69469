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
  | 'ERR_VRING_UNSUPPORTED_PLATFORM'
  | 'ERR_VRING_NATIVE_LOAD';

/** Extra fields a {@link VringError} may carry. @public */
export interface VringErrorOptions extends ErrorOptions {
  /** OS error number, when the OS refused an operation. */
  errno?: number | undefined;
  /** The system call that failed, when the OS refused an operation. */
  syscall?: string | undefined;
  /** For `ERR_VRING_BAD_RING`: which check the peer's ring data failed (e.g. `descriptor-loop`). */
  reason?: string | undefined;
}

/**
 * The one error class vring throws. Every failure has a stable `code`; failures the OS
 * reported also carry `errno` and `syscall`.
 *
 * @public
 */
export class VringError extends Error {
  readonly code: VringErrorCode;
  readonly errno: number | undefined;
  readonly syscall: string | undefined;
  readonly reason: string | undefined;

  constructor(code: VringErrorCode, message: string, options: VringErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = options.errno;
    this.syscall = options.syscall;
    this.reason = options.reason;
  }

  override get name(): string {
    return 'VringError';
  }
}
