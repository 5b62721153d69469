import { VringError } from '@vring/core';
import { MAX_NAME_BYTES } from './wire/message-kinds.js';

/**
 * Topics are dot-separated tokens (`orders.eu.fills`). A subscription pattern may use `*`
 * for exactly one token (`orders.*.fills`) and end with `>` for one or more trailing tokens
 * (`orders.>`: every topic under `orders`), as in NATS.
 */

function invalid(what: string, value: string, why: string): VringError {
  return new VringError(
    'ERR_VRING_INVALID_ARGUMENT',
    `invalid ${what} ${JSON.stringify(value)}: ${why}`,
  );
}

function checkTokens(what: string, value: string): string[] {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalid(what, String(value), 'must be a non-empty string');
  }
  if (Buffer.byteLength(value) > MAX_NAME_BYTES) {
    throw invalid(what, value.slice(0, 40), `longer than ${MAX_NAME_BYTES} bytes`);
  }
  const tokens = value.split('.');
  if (tokens.some((t) => t.length === 0)) throw invalid(what, value, 'has an empty token');
  return tokens;
}

/**
 * Checks a topic to publish on: tokens only, no wildcards.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT`.
 */
export function checkTopic(topic: string): void {
  checkWithoutWildcards('topic', topic);
}

function checkWithoutWildcards(what: string, value: string): void {
  for (const token of checkTokens(what, value)) {
    if (token === '*' || token === '>') {
      throw invalid(what, value, 'wildcards are for subscription patterns');
    }
  }
}

/**
 * Checks the name of a queue group: the syntax of a topic (`workers`, `billing.eu`).
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT`.
 */
export function checkQueueName(queue: string): void {
  checkWithoutWildcards('queue name', queue);
}

/**
 * Topics already checked: a sender uses a handful of topics (or RPC names), so each is
 * checked once rather than split into tokens on every message. Bounded: a sender that uses
 * ever new topics forgets the old ones and checks them again.
 */
export class CheckedTopics {
  readonly #seen = new Set<string>();

  /** @throws VringError `ERR_VRING_INVALID_ARGUMENT` (see {@link checkTopic}). */
  check(topic: string): void {
    if (this.#seen.has(topic)) return;
    checkTopic(topic);
    if (this.#seen.size >= 1024) this.#seen.clear();
    this.#seen.add(topic);
  }
}

/** A compiled subscription pattern. */
export class TopicPattern {
  readonly source: string;
  readonly #tokens: string[];
  readonly #tail: boolean;
  readonly #exact: boolean;

  /** @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a malformed pattern. */
  constructor(pattern: string) {
    const tokens = checkTokens('pattern', pattern);
    const tailAt = tokens.indexOf('>');
    if (tailAt !== -1 && tailAt !== tokens.length - 1) {
      throw invalid('pattern', pattern, "'>' may only be the last token");
    }
    this.source = pattern;
    this.#tail = tailAt !== -1;
    this.#tokens = this.#tail ? tokens.slice(0, -1) : tokens;
    this.#exact = !this.#tail && !tokens.includes('*');
  }

  /** Whether `topic` (a valid topic) matches. */
  matches(topic: string): boolean {
    if (this.#exact) return topic === this.source;
    const tokens = topic.split('.');
    const n = this.#tokens.length;
    if (this.#tail ? tokens.length <= n : tokens.length !== n) return false;
    for (let i = 0; i < n; i++) {
      const p = this.#tokens[i]!;
      if (p !== '*' && p !== tokens[i]) return false;
    }
    return true;
  }
}
