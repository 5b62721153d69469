import type { NotificationMode } from '@vring/core';

/**
 * How long a link polls an empty ring (for frames, or for room to send) before it sleeps,
 * per notification mode: in `adaptive`, the transport's usual spin budget; in `event`, a few
 * microseconds, enough for the application to answer what it was just given without an
 * arm/sleep/wake cycle; `poll` never sleeps. A link polls in JavaScript, yielding to promise
 * work between checks, and never lets the transport spin natively: a native spin holds the
 * thread, so a reply the application is building (or a peer in the same process) would wait
 * for it.
 */
export const POLL_MS: Record<NotificationMode, number> = {
  event: 0.005,
  adaptive: 0.05,
  poll: Infinity,
};

/** A polling link lets timers and I/O run this often (what the native poll mode does). */
const LOOP_TURN_MS = 0.01;

/**
 * Calls `attempt` every fourth microtask turn until it succeeds (true), `ms` have passed or
 * `stop()` says so (false). Promise work runs between attempts (a native check costs about
 * three microtask turns); timers and I/O every {@link LOOP_TURN_MS}.
 */
export async function pollUntil(
  attempt: () => boolean,
  ms: number,
  stop: () => boolean,
): Promise<boolean> {
  let now = performance.now();
  const until = now + ms;
  let turn = now + LOOP_TURN_MS;
  for (let i = 1; ; i++) {
    await undefined;
    if (i % 4 !== 0) continue;
    if (attempt()) return true;
    if (i % 16 !== 0) continue;
    if (stop()) return false;
    now = performance.now();
    if (now > until) return false;
    if (now > turn) {
      await new Promise((resolve) => setImmediate(resolve));
      turn = performance.now() + LOOP_TURN_MS;
    }
  }
}
