/**
 * Callers parked until something happens, in arrival order, each optionally abortable.
 * Every wait in vring (a ring that may have data, a socket message, a connection) is one of
 * these, so abort handling and settle-once rules live in one place.
 * @internal
 */
export class WaiterQueue<T> {
  #waiters: Array<{ resolve(value: T): void; reject(error: unknown): void }> = [];
  readonly #onChange: () => void;

  /** `onChange` runs whenever the number of waiters changes (e.g. to ref/unref a handle). */
  constructor(onChange: () => void = () => {}) {
    this.#onChange = onChange;
  }

  get size(): number {
    return this.#waiters.length;
  }

  /** Parks a caller. An aborted `signal` rejects it with the signal's reason and removes it. */
  wait(signal?: AbortSignal): Promise<T> {
    if (!signal) {
      // The common case on the data path (a reader parked on an empty inbox): the promise's
      // own resolvers are the waiter, with no closures for an abort that cannot come.
      return new Promise<T>((resolve, reject) => {
        this.#waiters.push({ resolve, reject });
        this.#onChange();
      });
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        this.#onChange();
        reject(signal.reason);
      };
      const waiter = {
        resolve: (value: T) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#onChange();
    });
  }

  /** Settles the longest-waiting caller with `value`; false when nobody waits. */
  resolveOne(value: T): boolean {
    const waiter = this.#waiters.shift();
    if (!waiter) return false;
    this.#onChange();
    waiter.resolve(value);
    return true;
  }

  /** Settles every waiting caller with `value`. */
  resolveAll(value: T): void {
    const waiters = this.#take();
    for (const w of waiters) w.resolve(value);
  }

  /** Rejects every waiting caller with `error`. */
  rejectAll(error: unknown): void {
    const waiters = this.#take();
    for (const w of waiters) w.reject(error);
  }

  #take() {
    const waiters = this.#waiters;
    this.#waiters = [];
    if (waiters.length > 0) this.#onChange();
    return waiters;
  }
}
