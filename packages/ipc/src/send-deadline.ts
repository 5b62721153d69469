import { VringError } from '@vring/core';

/**
 * Runs `send` under a deadline of `timeout` ms (and the caller's `signal`, if any): past it
 * the send is aborted (the value withdrawn unless part of it is in the ring already) and
 * rejects with `ERR_VRING_TIMEOUT`, the error a receiver that takes nothing leads to.
 * Without a timeout, `send` runs with the caller's signal alone. @internal
 */
export function sendWithin(
  timeout: number | undefined,
  signal: AbortSignal | undefined,
  send: (signal: AbortSignal | undefined) => Promise<void>,
): Promise<void> {
  if (timeout === undefined) return send(signal);
  if (!(timeout > 0)) {
    return Promise.reject(
      new VringError('ERR_VRING_INVALID_ARGUMENT', 'timeout must be a positive number'),
    );
  }
  const deadline = AbortSignal.timeout(timeout);
  const either = signal ? AbortSignal.any([signal, deadline]) : deadline;
  return send(either).catch((error) => {
    if (deadline.aborted && error === deadline.reason) {
      throw new VringError(
        'ERR_VRING_TIMEOUT',
        `no room in the ring for ${timeout} ms: the receiver is not taking messages`,
      );
    }
    throw error;
  });
}
