import { Fifo } from '../fifo.js';

/** One pending timeout; `cancel()` it when the work finishes first. */
export interface Deadline {
  cancel(): void;
}

/**
 * What can be put on {@link Deadlines} as it is, with no entry made for it: a request's own
 * record carries its deadline. @internal
 */
export interface Expiring {
  /** When it expires (`performance.now()` time), set by {@link Deadlines.watch}. */
  expiresAt: number;
  /** Whether it finished: its deadline is then dropped unfired. */
  readonly over: boolean;
  /** The deadline passed (called only while not `over`). */
  expire(): void;
}

class Entry implements Deadline, Expiring {
  expiresAt = 0;
  over = false;

  constructor(readonly onExpire: () => void) {}

  expire(): void {
    this.over = true;
    this.onExpire();
  }

  cancel(): void {
    this.over = true;
  }
}

/**
 * Timeouts of many requests on one timer. A request/response turn takes microseconds and
 * its timeout (10 s by default) almost never fires: a setTimeout, unref and clearTimeout
 * per request cost more than the rest of the request's bookkeeping. Requests with the same
 * timeout expire in the order they started, so each timeout value keeps a FIFO queue;
 * finished entries are dropped from the front as new ones arrive, so the queues hold about
 * the requests in flight. The timer never keeps the process alive.
 */
export class Deadlines {
  readonly #queues = new Map<number, Fifo<Expiring>>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;

  /** Calls `onExpire` after `ms` milliseconds unless cancelled first. */
  add(ms: number, onExpire: () => void): Deadline {
    const entry = new Entry(onExpire);
    this.watch(ms, entry);
    return entry;
  }

  /** Calls `entry.expire()` after `ms` milliseconds unless it is `over` by then. */
  watch(ms: number, entry: Expiring): void {
    let queue = this.#queues.get(ms);
    if (!queue) {
      queue = new Fifo();
      this.#queues.set(ms, queue);
    }
    while (queue.peek()?.over) queue.shift();
    const at = performance.now() + ms;
    entry.expiresAt = at;
    queue.push(entry);
    if (at < this.#timerAt) this.#schedule(at);
  }

  #schedule(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, at - performance.now()));
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const expired: Expiring[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [ms, queue] of this.#queues) {
      for (let e = queue.peek(); e && (e.over || e.expiresAt <= now); e = queue.peek()) {
        queue.shift();
        if (!e.over) expired.push(e);
      }
      const head = queue.peek();
      if (head) next = Math.min(next, head.expiresAt);
      else this.#queues.delete(ms);
    }
    if (next < Number.POSITIVE_INFINITY) this.#schedule(next);
    // Deadlines of different lengths that expire in one pass (the timer fired late, on a
    // busy process) still fire in deadline order, not in the order of their queues.
    if (expired.length > 1) expired.sort((a, b) => a.expiresAt - b.expiresAt);
    // After the bookkeeping: a callback may add a deadline, or end another that expired.
    for (const e of expired) if (!e.over) e.expire();
  }
}
