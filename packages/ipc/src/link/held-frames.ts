/**
 * Frames read in place, in the order the port holds them, with who still needs each: the
 * reader while it delivers the frame, and every value that keeps a view of it. The port
 * gives memory back oldest first, so a frame is released once it and every older frame are
 * no longer needed. @internal
 */
export class HeldFrames {
  /** Per held frame, oldest first from `#head`: how many still need it. */
  #needs: number[] = [];
  #head = 0;
  /** Sequence number of the frame at `#head`. */
  #base = 0;
  readonly #release: (count: number) => void;

  /** `release(count)` gives the oldest `count` frames back to the port. */
  constructor(release: (count: number) => void) {
    this.#release = release;
  }

  /** Frames held and not yet given back. */
  get size(): number {
    return this.#needs.length - this.#head;
  }

  /** A frame was read in place (needed once, by the reader); returns its sequence number. */
  add(): number {
    this.#needs.push(1);
    return this.#base + this.#needs.length - this.#head - 1;
  }

  /** One more user of frame `seq` (a value viewing it). */
  retain(seq: number): void {
    this.#needs[this.#head + seq - this.#base]! += 1;
  }

  /** One user of frame `seq` is done with it. Does not give memory back: see {@link flush}. */
  drop(seq: number): void {
    const at = this.#head + seq - this.#base;
    if (this.#needs[at]! > 0) this.#needs[at]! -= 1;
  }

  /** Gives back every frame no longer needed from the oldest on. */
  flush(): void {
    const needs = this.#needs;
    let head = this.#head;
    while (head < needs.length && needs[head] === 0) head++;
    const count = head - this.#head;
    if (count === 0) return;
    this.#base += count;
    if (head === needs.length) {
      needs.length = 0;
      this.#head = 0;
    } else if (head > 1024 && head * 2 > needs.length) {
      this.#needs = needs.slice(head);
      this.#head = 0;
    } else {
      this.#head = head;
    }
    this.#release(count);
  }

  /** The port is gone: nothing is held any more. */
  clear(): void {
    this.#base += this.#needs.length - this.#head;
    this.#needs = [];
    this.#head = 0;
  }
}
