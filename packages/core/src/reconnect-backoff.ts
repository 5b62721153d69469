/**
 * How vring waits between attempts to connect to a peer that is not listening yet (or went
 * away): exponential backoff, one set of options and defaults for every side that connects
 * by itself (`VirtioUser` and `VhostUserBackend` in client mode).
 *
 * @packageDocumentation
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { positiveOption } from './errors.js';

/** First delay between connection attempts when {@link ReconnectOptions.retryInitialMs} is not given. */
const DEFAULT_RETRY_INITIAL_MS = 20;
/** Longest delay when {@link ReconnectOptions.retryMaxMs} is not given. */
const DEFAULT_RETRY_MAX_MS = 1000;

/**
 * Options of a side that keeps trying to connect until its peer listens: the delays between
 * attempts start at `retryInitialMs` and double up to `retryMaxMs`.
 * @public
 */
export interface ReconnectOptions {
  /**
   * Delay after the first failed attempt, in ms (default 20): short, so a peer that is just
   * starting is found quickly. Each further delay doubles, up to {@link retryMaxMs}.
   */
  retryInitialMs?: number | undefined;
  /**
   * Longest delay between attempts, in ms (default 1000, the period DPDK's vhost-user
   * client retries with), so a peer that comes back late is found within a second.
   */
  retryMaxMs?: number | undefined;
}

/**
 * The delays of one side's connection attempts. A series starts with {@link reset} and each
 * {@link wait} sleeps the next delay of it.
 * @internal
 */
export class ReconnectBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  #nextMs: number;

  /**
   * @throws VringError `ERR_VRING_INVALID_ARGUMENT` when a delay is not a positive number:
   * checked here, before any connection is tried.
   */
  constructor(options: ReconnectOptions) {
    this.#initialMs = positiveOption(
      options.retryInitialMs,
      DEFAULT_RETRY_INITIAL_MS,
      'retryInitialMs',
    );
    this.#maxMs = positiveOption(options.retryMaxMs, DEFAULT_RETRY_MAX_MS, 'retryMaxMs');
    this.#nextMs = this.#initialMs;
  }

  /** Starts a new series of attempts: the next wait is the initial delay again. */
  reset(): void {
    this.#nextMs = this.#initialMs;
  }

  /**
   * Sleeps the next delay of the series, then doubles it (up to the longest). `keepAlive`
   * false lets the process exit meanwhile.
   * @throws the signal's reason once `signal` aborts.
   */
  async wait(signal: AbortSignal, keepAlive: boolean): Promise<void> {
    const delay = this.#nextMs;
    this.#nextMs = Math.min(delay * 2, this.#maxMs);
    // timers/promises rejects with its own AbortError; callers expect the signal's reason,
    // as from every other abortable wait in vring.
    await sleep(delay, undefined, { signal, ref: keepAlive }).catch((error: unknown) => {
      throw signal.aborted ? signal.reason : error;
    });
  }
}
