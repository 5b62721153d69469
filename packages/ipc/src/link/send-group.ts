/**
 * Sends issued in one tick share one promise, which resolves once the last of them is in
 * the ring: one promise and no closures per message, where a stream of small sends used
 * to allocate three each.
 */
export class SendGroup {
  readonly promise: Promise<void>;
  pending = 0;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;

  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  sent(count = 1): void {
    this.pending -= count;
    if (this.pending === 0) this.#resolve();
  }

  fail(error: unknown): void {
    this.#reject(error);
  }
}
