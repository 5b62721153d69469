import { cpus } from 'node:os';
import type { FramePort } from '@vring/core';

/** How far one outcome moves the averages: about the last eight waits count. */
const WEIGHT = 1 / 8;
/**
 * What a wakeup is first taken to cost (a cross-core wakeup on the small VMs we measure on),
 * until the link has seen its own: a poll that catches its frame saves that much latency,
 * and about as much CPU for the arm, the sleep and the wake.
 */
const WAKEUP_MS = 0.025;
/**
 * What a wait that ends with a wakeup is taken to spend on wakeups is the shortest such
 * wait seen lately (one wakeup or two: the peer's, when this link woke it, and its own),
 * within these bounds: below the floor no sleep happened, and past the ceiling a wait is the
 * peer's lateness, never a wakeup (a peer that answers after 5 ms is slow, not asleep).
 */
const WAKEUPS_FLOOR_MS = 0.01;
const WAKEUPS_CEILING_MS = 0.25;
/** How fast that shortest wait is forgotten: it creeps up this much per longer wait. */
const WAKEUPS_DRIFT = 1 / 32;
/** A poll lasts this many times as long as the waits it catches usually do. */
const HEADROOM = 4;
/** The shortest poll worth starting: a few native checks. */
const MIN_POLL_MS = 0.003;
/**
 * A link that stopped polling still polls one wait in this many, so that it notices when
 * the traffic changes (a sleep alone cannot tell a short gap from the wakeup's own cost).
 */
const PROBE_EVERY = 16;

/** In `event` mode a link polls a few microseconds: enough to catch the next frame of a stream. */
const EVENT_POLL_MS = 0.005;

/**
 * The longest a link polls an empty port (for frames, or for room to send) before it sleeps:
 * in `adaptive`, the port's spin budget (long enough for a peer on another core to answer a
 * small request, for about the CPU of the wakeup it saves); in `event`, a few microseconds;
 * in `poll`, for ever.
 */
export function longestPollMs(port: FramePort): number {
  switch (port.notification) {
    case 'poll':
      return Infinity;
    case 'adaptive':
      return (port.polling?.spinMicros ?? 0) / 1000;
    default:
      return EVENT_POLL_MS;
  }
}

/**
 * Whether the machine has a core for the peer at all: on one, polling only delays it. (A
 * process pinned to one core may well have a peer pinned to another, as benchmarks do; two
 * pinned to the same core find out that polling does not pay, and a poll gives the core
 * away every few microseconds meanwhile.)
 */
let spareCore: boolean | undefined;
function haveSpareCore(): boolean {
  spareCore ??= cpus().length > 1;
  return spareCore;
}

/**
 * Decides, wait by wait, how long a link polls an empty ring before it sleeps: a few times
 * as long as the waits it catches usually last, up to {@link longestPollMs}, while
 * polling pays, and not at all once it does not.
 *
 * A poll that catches what the link waits for (the reply to a request it sent, the next
 * frame of a stream) saves an arm, a sleep and a ~25 µs wakeup. One that runs out costs its
 * whole length, in CPU and in latency (the sleep only begins after it). So a link polls
 * while the share of recent waits that ended within the poll's length, p, satisfies
 * p × wakeup > (1 − p) × length. That fails when the peer answers slowly, is idle, or has
 * no core of its own (with more busy processes than cores, a peer that has to wait for a
 * core answers late, and the poll only takes the core from it). On a machine with a single
 * core a link never polls.
 * @internal
 */
export class PollBudget {
  /** The longest poll, in ms (0 when polling can never pay, Infinity in `poll` mode). */
  readonly maxMs: number;
  /** Share of recent waits that ended within the poll's length, as a moving average. */
  #caught = 1;
  /** Usual length of the waits that ended within {@link maxMs}, as a moving average. */
  #usualMs: number;
  /** What a wait that ends with a wakeup spends on wakeups (see {@link WAKEUPS_FLOOR_MS}). */
  #wakeupsMs = WAKEUP_MS;
  /**
   * Whether slept waits are judged without their wakeups: in `adaptive` mode, whose peer
   * polls too once polling pays. An `event` link's peer sleeps, so every answer it waits for
   * costs a wakeup whatever it does: its short poll is for streams only.
   */
  readonly #peerMayPoll: boolean;
  #sinceProbe = 0;

  constructor(port: FramePort) {
    this.#peerMayPoll = port.notification === 'adaptive';
    const max = longestPollMs(port);
    this.maxMs = max === Infinity || haveSpareCore() ? max : 0;
    this.#usualMs = this.maxMs / HEADROOM;
  }

  /** How long the next poll lasts, in ms, if the link polls at all. */
  get pollMs(): number {
    const max = this.maxMs;
    if (max === 0 || max === Infinity) return max;
    return Math.min(max, Math.max(MIN_POLL_MS, HEADROOM * this.#usualMs));
  }

  /** Whether polling has been paying: recent waits tended to end within the poll. */
  get pays(): boolean {
    const poll = this.pollMs;
    return poll > 0 && this.#caught * this.#wakeupsMs >= (1 - this.#caught) * poll;
  }

  /** How long to poll the wait that begins now, in ms: 0 to sleep at once. */
  next(): number {
    if (this.maxMs === Infinity || this.pays) return this.pollMs;
    if (++this.#sinceProbe < PROBE_EVERY) return 0;
    this.#sinceProbe = 0;
    return this.pollMs;
  }

  /**
   * A poll found another thread waiting for its core (a yield kept the core away): polling
   * takes the core from a process that has work, perhaps the very peer it waits for. The
   * link stops polling until probes show polls catching again, with the core to spare.
   */
  readonly contended = (): void => {
    this.#caught = 0;
  };

  /**
   * A wait ended `ms` after it began: caught by polling, or (`slept`) by a wakeup. A slept
   * wait is judged without what its wakeups cost: two peers that both sleep see every wait
   * stretched by their wakeups, and would never find out that polling pays once both poll.
   */
  ended(ms: number, slept: boolean): void {
    if (this.maxMs === 0 || this.maxMs === Infinity) return;
    if (slept && this.#peerMayPoll) {
      if (ms >= WAKEUPS_FLOOR_MS) {
        const seen = Math.min(ms, WAKEUPS_CEILING_MS);
        this.#wakeupsMs = Math.min(this.#wakeupsMs * (1 + WAKEUPS_DRIFT), seen);
      }
      ms = Math.max(0, ms - this.#wakeupsMs);
    }
    const caught = ms <= this.pollMs;
    this.#caught += ((caught ? 1 : 0) - this.#caught) * WEIGHT;
    if (ms <= this.maxMs) this.#usualMs += (ms - this.#usualMs) * WEIGHT;
  }
}
