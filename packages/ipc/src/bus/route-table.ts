import type { TopicPattern } from '../topic.js';
import { MsgpackPrefixWriter, prefixCapacity } from '../wire/msgpack-prefix.js';

/** One subscription as the bus holds it. */
interface Entry<M> {
  member: M;
  sid: number;
  pattern: TopicPattern;
  drop: boolean;
}

/** Where a message on a topic goes: one client, all of its matching subscriptions. */
export interface Delivery<M> {
  member: M;
  /** The subscription ids, as the DELIVER prefix `[sids, ` already encoded. */
  head: Uint8Array;
  sids: number[];
  /** Whether any of them has the `block` policy (then the publisher waits, else the bus drops). */
  block: boolean;
}

/** Topics resolved before the cache starts over (a bound on memory, not a tuning knob). */
const CACHE_LIMIT = 4096;

/**
 * The bus's subscriptions and, per topic, where its messages go. A topic is matched against
 * every pattern once and the answer (with each client's DELIVER prefix) is cached until the
 * subscriptions change, so a publish costs one map lookup.
 */
export class RouteTable<M> {
  readonly #entries = new Map<M, Map<number, Entry<M>>>();
  readonly #cache = new Map<string, Array<Delivery<M>>>();
  #count = 0;

  /** Subscriptions held. */
  get size(): number {
    return this.#count;
  }

  add(member: M, sid: number, pattern: TopicPattern, drop: boolean): void {
    let entries = this.#entries.get(member);
    if (!entries) {
      entries = new Map();
      this.#entries.set(member, entries);
    }
    if (!entries.has(sid)) this.#count++;
    // The same id again replaces the subscription (a client resubscribing after a restart).
    entries.set(sid, { member, sid, pattern, drop });
    this.#cache.clear();
  }

  remove(member: M, sid: number): void {
    if (this.#entries.get(member)?.delete(sid)) {
      this.#count--;
      this.#cache.clear();
    }
  }

  removeMember(member: M): void {
    const entries = this.#entries.get(member);
    if (!entries) return;
    this.#count -= entries.size;
    this.#entries.delete(member);
    this.#cache.clear();
  }

  /**
   * Where a message on `topic` goes, if the topic has been looked up since the
   * subscriptions last changed (so it was checked then).
   */
  cached(topic: string): ReadonlyArray<Delivery<M>> | undefined {
    return this.#cache.get(topic);
  }

  /** Where a message on `topic` goes (empty when nobody listens). */
  lookup(topic: string): ReadonlyArray<Delivery<M>> {
    const cached = this.#cache.get(topic);
    if (cached) return cached;
    const deliveries: Array<Delivery<M>> = [];
    for (const [member, entries] of this.#entries) {
      const sids: number[] = [];
      let block = false;
      for (const e of entries.values()) {
        if (!e.pattern.matches(topic)) continue;
        sids.push(e.sid);
        block ||= !e.drop;
      }
      if (sids.length === 0) continue;
      // DELIVER is [sids, topic, value]; the publish's "topic, value" follows this prefix.
      const writer = new MsgpackPrefixWriter(prefixCapacity(sids.length + 1));
      writer.arrayHeader(3).arrayHeader(sids.length);
      for (const sid of sids) writer.uint(sid);
      deliveries.push({ member, head: writer.finish(), sids, block });
    }
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
    this.#cache.set(topic, deliveries);
    return deliveries;
  }
}
