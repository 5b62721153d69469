/** What an {@link IdTable} holds: anything that knows its request id. @internal */
export interface WithId {
  readonly id: number;
}

/** Slots of the table's array: a power of two, more than the requests usually in flight. */
const SLOTS = 1024;

/**
 * Requests in flight by id. Ids are handed out in sequence, so the requests in flight at
 * once nearly always fall in distinct slots of an array indexed by `id % SLOTS`: adding and
 * removing one is a store, where a Map allocates a new table every few hundred insertions
 * as deleted entries fill it (6 % of a small request's garbage). An id whose slot is
 * taken goes to a Map beside it. (The array is made with the table: one made on the first
 * add, in place of a shared empty one, made V8 allocate kilobytes per request.) @internal
 */
export class IdTable<T extends WithId> {
  readonly #slots: (T | undefined)[] = new Array<T | undefined>(SLOTS).fill(undefined);
  readonly #others = new Map<number, T>();
  #size = 0;

  /** Entries in the table. */
  get size(): number {
    return this.#size;
  }

  get(id: number): T | undefined {
    const slot = this.#slots[id & (SLOTS - 1)];
    if (slot !== undefined && slot.id === id) return slot;
    return this.#others.size > 0 ? this.#others.get(id) : undefined;
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds `entry` under its id, which must not be in the table. */
  add(entry: T): void {
    const i = entry.id & (SLOTS - 1);
    if (this.#slots[i] === undefined) this.#slots[i] = entry;
    else this.#others.set(entry.id, entry);
    this.#size++;
  }

  /** Removes the entry of `id`; returns it (undefined if there was none). */
  delete(id: number): T | undefined {
    const i = id & (SLOTS - 1);
    const slot = this.#slots[i];
    if (slot !== undefined && slot.id === id) {
      this.#slots[i] = undefined;
      this.#size--;
      return slot;
    }
    const other = this.#others.size > 0 ? this.#others.get(id) : undefined;
    if (other === undefined) return undefined;
    this.#others.delete(id);
    this.#size--;
    return other;
  }

  /** Every entry, in no particular order (a copy: the table may change meanwhile). */
  values(): T[] {
    const all: T[] = [];
    if (this.#size === 0) return all;
    for (const slot of this.#slots) if (slot !== undefined) all.push(slot);
    for (const other of this.#others.values()) all.push(other);
    return all;
  }

  /** Removes every entry. */
  clear(): void {
    if (this.#size === 0) return;
    this.#slots.fill(undefined);
    this.#others.clear();
    this.#size = 0;
  }
}
