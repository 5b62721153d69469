import { native } from './native.js';

/** The native eventfd handle (see native/binding/event_fd_wrap.cc). @internal */
interface NativeEventFd {
  readonly fd: number;
  readonly closed: boolean;
  signal(): void;
  drain(): number;
  watch(callback: (count: number) => void): void;
  stopWatching(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

const NativeEventFdClass = native.EventFd as new (fd?: number) => NativeEventFd;

/**
 * A Linux eventfd: the doorbell of a virtqueue (kick from driver to device, call back).
 * Readiness arrives in the Node event loop through `uv_poll`; a watching eventfd is unref'd
 * by default, so an idle vring never keeps a process alive.
 *
 * @public
 */
export class EventFd {
  readonly #handle: NativeEventFd;

  /** Creates a new eventfd (non-blocking, close-on-exec) with a zero counter. */
  constructor();
  /** @internal */
  constructor(handle: NativeEventFd);
  constructor(handle?: NativeEventFd) {
    this.#handle = handle ?? new NativeEventFdClass();
  }

  /**
   * Wraps a duplicate of an existing eventfd, e.g. one received over an {@link FdSocket}.
   * The caller keeps (and must eventually close) `fd`.
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` when `fd` is not an eventfd.
   */
  static fromFd(fd: number): EventFd {
    return new EventFd(new NativeEventFdClass(fd));
  }

  /** The file descriptor, to pass to a peer. Throws `ERR_VRING_CLOSED` once closed. */
  get fd(): number {
    return this.#handle.fd;
  }

  /** Whether {@link EventFd.close} has run. */
  get closed(): boolean {
    return this.#handle.closed;
  }

  /** Adds one to the counter, waking whoever polls it. Never blocks. */
  signal(): void {
    this.#handle.signal();
  }

  /** Reads and resets the counter; 0 when nothing was pending. Never blocks. */
  drain(): number {
    return this.#handle.drain();
  }

  /**
   * Calls `callback` in the event loop whenever the counter becomes non-zero, with the
   * drained count. Replaces any earlier callback. Does not keep the process alive unless
   * {@link EventFd.ref} is called.
   */
  watch(callback: (count: number) => void): void {
    this.#handle.watch(callback);
  }

  /** Stops the callback given to {@link EventFd.watch}. */
  stopWatching(): void {
    this.#handle.stopWatching();
  }

  /** Makes an active watch keep the process alive, like a socket being read. */
  ref(): this {
    this.#handle.ref();
    return this;
  }

  /** Lets the process exit while this eventfd is watched (the default). */
  unref(): this {
    this.#handle.unref();
    return this;
  }

  /** Stops watching and closes the fd. Idempotent. */
  close(): void {
    this.#handle.close();
  }

  /** Same as {@link EventFd.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
