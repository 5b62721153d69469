import type { TopicPattern } from '../topic.js';
import type { Delivery } from './route-table.js';

/**
 * Subscriptions that share a pattern and a queue name: each message on a matching topic goes
 * to one of them. Members are taken in turn (round robin), skipping any that cannot take a
 * message now, so a slow member gets fewer messages instead of holding the group back.
 * @internal
 */
export class QueueGroup<M> {
  readonly pattern: TopicPattern;
  readonly queue: string;
  /** Each member as a delivery to its one subscription id. */
  readonly #members: Array<Delivery<M>> = [];
  #next = 0;

  constructor(pattern: TopicPattern, queue: string) {
    this.pattern = pattern;
    this.queue = queue;
  }

  /** The key that makes subscriptions one group: same pattern, same queue name. */
  static key(pattern: string, queue: string): string {
    return `${queue}\u0000${pattern}`;
  }

  get size(): number {
    return this.#members.length;
  }

  /** The members, each as a delivery to its subscription. */
  get members(): ReadonlyArray<Delivery<M>> {
    return this.#members;
  }

  add(member: Delivery<M>): void {
    this.#members.push(member);
  }

  remove(member: Delivery<M>): void {
    const at = this.#members.indexOf(member);
    if (at === -1) return;
    this.#members.splice(at, 1);
    // The turn stays with the member that was next, not the one after it.
    if (at < this.#next) this.#next--;
  }

  /**
   * The member whose turn it is among those that `available` accepts (the turn then passes
   * to the next one); undefined when none does.
   */
  pick(available: (member: M) => boolean): Delivery<M> | undefined {
    const n = this.#members.length;
    const start = this.#next % n;
    for (let i = 0; i < n; i++) {
      const at = (start + i) % n;
      const candidate = this.#members[at]!;
      if (available(candidate.member)) {
        this.#next = at + 1;
        return candidate;
      }
    }
    return undefined;
  }

  /**
   * When every member is full: the one with the least `queued`, the first in turn among
   * equals (it is the likeliest to make room first). Undefined only for an empty group.
   */
  pickLeastQueued(queued: (member: M) => number): Delivery<M> | undefined {
    const n = this.#members.length;
    const start = this.#next % n;
    let best: number | undefined;
    for (let i = 0; i < n; i++) {
      const at = (start + i) % n;
      if (
        best === undefined ||
        queued(this.#members[at]!.member) < queued(this.#members[best]!.member)
      ) {
        best = at;
      }
    }
    if (best === undefined) return undefined;
    this.#next = best + 1;
    return this.#members[best];
  }
}
