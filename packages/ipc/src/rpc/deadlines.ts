import { Fifo } from '../fifo.js';

/** One pending timeout; `cancel()` it when the work finishes first. */
export interface Deadline {
  cancel(): void;
}

class Entry implements Deadline {
  done = false;

  constructor(
    readonly at: number,
    readonly target: (() => void) | { expire(): void },
  ) {}

  onExpire(): void {
    if (typeof this.target === 'function') this.target();
    else this.target.expire();
  }

  cancel(): void {
    this.done = true;
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
  readonly #queues = new Map<number, Fifo<Entry>>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;

  /** Calls `onExpire` (or its `expire()`) after `ms` milliseconds unless cancelled first. */
  add(ms: number, onExpire: (() => void) | { expire(): void }): Deadline {
    let queue = this.#queues.get(ms);
    if (!queue) {
      queue = new Fifo();
      this.#queues.set(ms, queue);
    }
    while (queue.peek()?.done) queue.shift();
    const entry = new Entry(performance.now() + ms, onExpire);
    queue.push(entry);
    if (entry.at < this.#timerAt) this.#schedule(entry.at);
    return entry;
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
    const expired: Entry[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const [ms, queue] of this.#queues) {
      for (let e = queue.peek(); e && (e.done || e.at <= now); e = queue.peek()) {
        queue.shift();
        if (!e.done) expired.push(e);
      }
      const head = queue.peek();
      if (head) next = Math.min(next, head.at);
      else this.#queues.delete(ms);
    }
    if (next < Number.POSITIVE_INFINITY) this.#schedule(next);
    // Deadlines of different lengths that expire in one pass (the timer fired late, on a
    // busy process) still fire in deadline order, not in the order of their queues.
    if (expired.length > 1) expired.sort((a, b) => a.at - b.at);
    // After the bookkeeping: a callback may add a deadline.
    for (const e of expired) {
      e.done = true;
      e.onExpire();
    }
  }
}
