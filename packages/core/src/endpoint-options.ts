/**
 * How a queue-pair end is configured: the notification policy that decides when it spins,
 * sleeps or wakes its peer, and the lifeline that tells it the peer went away. Apart from the
 * end itself because the front-end and the back-end port check these options before they
 * build an end (so a bad option costs no connection), and because `FramePort` reports the
 * mode without depending on the end's class.
 *
 * @packageDocumentation
 */
import { VringError } from './errors.js';

/**
 * How an end learns that its peer moved data.
 *
 * - `event`: sleep on an eventfd until the peer signals; zero CPU while idle, but every
 *   wakeup costs a cross-core wakeup (~25 µs on small VMs).
 * - `adaptive` (default): after activity, spin on the ring for `spinMicros` before sleeping
 *   on the eventfd: near-polling latency under load, zero CPU when idle.
 * - `poll`: never sleep; spin on the ring in slices of `spinMicros`, yielding to the event
 *   loop between slices. Lowest latency, one core busy. The peer never has to signal.
 *
 * @public
 */
export type NotificationMode = 'event' | 'adaptive' | 'poll';

/** Options shared by both ends of a queue pair. @public */
export interface EndpointOptions {
  /** Default `adaptive`. */
  notification?: NotificationMode;
  /** Spin budget in µs: before sleeping (`adaptive`, default 50) or per event-loop turn (`poll`, default 50). */
  spinMicros?: number;
  /**
   * Something whose `closed` promise settles when the peer goes away, typically the
   * {@link FdSocket} the queue pair was set up over. Waits then fail with
   * `ERR_VRING_PEER_DISCONNECTED` instead of waiting forever.
   */
  lifeline?: {
    /** Settles when the peer is gone. */
    readonly closed: PromiseLike<unknown>;
  };
}

/**
 * Validates the notification options; factories call it before they build anything, so a
 * bad option leaks nothing.
 * @internal
 */
export function notificationPolicy(options: EndpointOptions): {
  mode: NotificationMode;
  spinNs: number;
} {
  const mode = options.notification ?? 'adaptive';
  if (!['event', 'adaptive', 'poll'].includes(mode)) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `unknown notification mode ${String(mode)}`);
  }
  // Poll mode spins in slices too: a long native spin would stall everything else this
  // process does (its own sends, timers) until the slice ends.
  const spinMicros = options.spinMicros ?? 50;
  if (typeof spinMicros !== 'number' || !(spinMicros >= 0) || !Number.isFinite(spinMicros)) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', 'spinMicros must be a finite number >= 0');
  }
  return { mode, spinNs: mode === 'event' ? 0 : Math.round(spinMicros * 1000) };
}
