/**
 * A first-in first-out queue on an array with an index for its front: no O(n) `shift()` per
 * item. A taken slot is cleared (the queue keeps nothing it gave out alive), and the array is
 * cut down once its taken front is at least half of it, not per item. @internal
 */
export class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  /** Items in the queue. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** The oldest item, left in place; undefined when the queue is empty. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Takes the oldest item. Check `length` first: an item may itself be undefined. */
  shift(): T {
    const items = this.#items;
    const item = items[this.#head] as T;
    items[this.#head++] = undefined as T;
    if (this.#head >= 1024 && this.#head * 2 >= items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
