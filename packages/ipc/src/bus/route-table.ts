import type { TopicPattern } from '../topic.js';
import { MsgpackPrefixWriter, prefixCapacity } from '../wire/msgpack-prefix.js';
import type { SubjectCounters, SubjectTally } from './bus-stats.js';
import { QueueGroup } from './queue-group.js';

/** One subscription as the bus holds it. */
interface Entry<M> {
  member: M;
  sid: number;
  pattern: TopicPattern;
  drop: boolean;
  /** For a queue subscription: its group, and itself as the group's member. */
  group: QueueGroup<M> | undefined;
  asMember: Delivery<M> | undefined;
}

/** Where a message on a topic goes: one client, all of its matching subscriptions. */
export interface Delivery<M> {
  member: M;
  /** The subscription ids, as the DELIVER prefix `[sids, ` already encoded. */
  head: Uint8Array;
  /** The same prefix for a DELIVER with headers (`[sids, topic, value, headers]`), once needed. */
  headWithHeaders: Uint8Array | undefined;
  sids: number[];
  /** Whether any of them has the `block` policy (then the publisher waits, else the bus drops). */
  block: boolean;
}

/**
 * Where a message on a topic goes: a copy to each client with plain subscriptions that
 * match, and one copy per matching queue group, to the member the group picks.
 */
export interface Routes<M> {
  deliveries: ReadonlyArray<Delivery<M>>;
  groups: ReadonlyArray<QueueGroup<M>>;
  /** The topic's counters, held with its route so that counting costs no lookup. */
  subject: SubjectCounters;
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
  readonly #groups = new Map<string, QueueGroup<M>>();
  readonly #cache = new Map<string, Routes<M>>();
  readonly #subjects: SubjectTally;
  #count = 0;

  constructor(subjects: SubjectTally) {
    this.#subjects = subjects;
  }

  /** Subscriptions held. */
  get size(): number {
    return this.#count;
  }

  /** Queue groups with at least one member. */
  get groups(): number {
    return this.#groups.size;
  }

  /** The queue groups with members, by pattern and queue name. */
  queueGroups(): Array<{ pattern: string; queue: string }> {
    return [...this.#groups.values()].map((g) => ({ pattern: g.pattern.source, queue: g.queue }));
  }

  /** Adds a subscription; with a `queue` name it joins that queue group of `pattern`. */
  add(member: M, sid: number, pattern: TopicPattern, drop: boolean, queue?: string): void {
    let entries = this.#entries.get(member);
    if (!entries) {
      entries = new Map();
      this.#entries.set(member, entries);
    }
    // The same id again replaces the subscription (a client resubscribing after a restart).
    const previous = entries.get(sid);
    if (previous) this.#leaveGroup(previous);
    else this.#count++;
    const entry: Entry<M> = { member, sid, pattern, drop, group: undefined, asMember: undefined };
    if (queue !== undefined) {
      const key = QueueGroup.key(pattern.source, queue);
      let group = this.#groups.get(key);
      if (!group) {
        group = new QueueGroup(pattern, queue);
        this.#groups.set(key, group);
      }
      entry.group = group;
      entry.asMember = {
        member,
        head: deliverHead([sid]),
        headWithHeaders: undefined,
        sids: [sid],
        block: !drop,
      };
      group.add(entry.asMember);
    }
    entries.set(sid, entry);
    this.#cache.clear();
  }

  remove(member: M, sid: number): void {
    const entries = this.#entries.get(member);
    const entry = entries?.get(sid);
    if (!entries || !entry) return;
    entries.delete(sid);
    this.#leaveGroup(entry);
    this.#count--;
    this.#cache.clear();
  }

  removeMember(member: M): void {
    const entries = this.#entries.get(member);
    if (!entries) return;
    for (const entry of entries.values()) this.#leaveGroup(entry);
    this.#count -= entries.size;
    this.#entries.delete(member);
    this.#cache.clear();
  }

  #leaveGroup(entry: Entry<M>): void {
    const { group, asMember } = entry;
    if (!group || !asMember) return;
    group.remove(asMember);
    if (group.size === 0) this.#groups.delete(QueueGroup.key(group.pattern.source, group.queue));
  }

  /**
   * Where a message on `topic` goes, if the topic has been looked up since the
   * subscriptions last changed (so it was checked then).
   */
  cached(topic: string): Routes<M> | undefined {
    return this.#cache.get(topic);
  }

  /** Where a message on `topic` goes (nowhere when nobody listens). */
  lookup(topic: string): Routes<M> {
    const cached = this.#cache.get(topic);
    if (cached) return cached;
    const deliveries: Array<Delivery<M>> = [];
    for (const [member, entries] of this.#entries) {
      const sids: number[] = [];
      let block = false;
      for (const e of entries.values()) {
        if (e.group || !e.pattern.matches(topic)) continue;
        sids.push(e.sid);
        block ||= !e.drop;
      }
      if (sids.length === 0) continue;
      deliveries.push({ member, head: deliverHead(sids), headWithHeaders: undefined, sids, block });
    }
    const groups: Array<QueueGroup<M>> = [];
    for (const group of this.#groups.values()) {
      if (group.pattern.matches(topic)) groups.push(group);
    }
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear();
    const routes = { deliveries, groups, subject: this.#subjects.of(topic) };
    this.#cache.set(topic, routes);
    return routes;
  }
}

/**
 * The DELIVER prefix of `d` for a publish with headers: `[sids, ` under an array header of
 * four elements, made the first time a publish with headers goes there.
 */
export function deliverHeadWithHeaders<M>(d: Delivery<M>): Uint8Array {
  let head = d.headWithHeaders;
  if (!head) {
    head = Buffer.from(d.head);
    // A fixarray header: 0x93 becomes 0x94.
    head[0] = 0x94;
    d.headWithHeaders = head;
  }
  return head;
}

/** DELIVER is [sids, topic, value]; the publish's "topic, value" follows this prefix. */
function deliverHead(sids: number[]): Uint8Array {
  const writer = new MsgpackPrefixWriter(prefixCapacity(sids.length + 1));
  writer.arrayHeader(3).arrayHeader(sids.length);
  for (const sid of sids) writer.uint(sid);
  return writer.finish();
}
