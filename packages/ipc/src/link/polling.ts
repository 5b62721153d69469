import { yieldCpu } from '@vring/core';

/** A polling link lets timers and I/O run this often (what the native poll mode does). */
const LOOP_TURN_MS = 0.01;
/**
 * A poll that has lasted this long also gives the core away at each loop turn: a peer that
 * shares this core (more busy processes than cores) runs then, instead of when the kernel
 * preempts the poller, milliseconds later. Alone on its core this costs one cheap system call
 * per turn.
 */
const YIELD_AFTER_MS = 0.02;

/**
 * A yield that kept the core away from the poller this long means another thread was
 * waiting for it: the poll was taking the core from somebody (more busy threads than cores).
 */
const CONTENDED_YIELD_MS = 0.03;

/**
 * Calls `attempt` every `turnsPerAttempt`-th microtask turn until it succeeds (true), `ms`
 * have passed or `stop()` says so (false). Promise work runs between attempts, about as long
 * as an attempt takes: a check of an empty ring is a bare native call (one turn or so, so
 * every second turn), a try to send marshals the batch (three turns or so, so every fourth).
 * Timers and I/O run every {@link LOOP_TURN_MS}. When a yield finds another thread waiting
 * for the core, `contended` (if given) is told and the poll ends.
 */
export async function pollUntil(
  attempt: () => boolean,
  ms: number,
  stop: () => boolean,
  contended?: () => void,
  turnsPerAttempt = 4,
): Promise<boolean> {
  let now = performance.now();
  const until = now + ms;
  const yieldFrom = now + YIELD_AFTER_MS;
  let turn = now + LOOP_TURN_MS;
  // The clock is read every fourth attempt.
  const turnsPerCheck = 4 * turnsPerAttempt;
  for (let i = 1; ; i++) {
    await undefined;
    if (i % turnsPerAttempt !== 0) continue;
    if (attempt()) return true;
    if (i % turnsPerCheck !== 0) continue;
    if (stop()) return false;
    now = performance.now();
    if (now > until) return false;
    if (now > turn) {
      await new Promise((resolve) => setImmediate(resolve));
      if (now > yieldFrom) {
        const before = performance.now();
        yieldCpu();
        turn = performance.now();
        if (turn - before > CONTENDED_YIELD_MS && contended) {
          // The core is wanted: sleep now rather than poll on.
          contended();
          return false;
        }
        turn += LOOP_TURN_MS;
      } else turn = performance.now() + LOOP_TURN_MS;
    }
  }
}
