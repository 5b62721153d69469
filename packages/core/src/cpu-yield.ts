import { native } from './native.js';

const nativeYield = native.yieldCpu as () => void;

/**
 * Gives this thread's core to another runnable thread for a moment (`sched_yield`), if one
 * is waiting for it; returns at once otherwise. A loop that polls shared memory in
 * JavaScript calls it now and then, so that a peer sharing its core is not held off until
 * the kernel preempts the poller, milliseconds later.
 * @internal
 */
export function yieldCpu(): void {
  nativeYield();
}
