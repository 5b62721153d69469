// What `vring stats`, `pub`, `sub` and `req` share: the bus they talk to, and how long they
// wait for it to be there.
import { VringError } from '@vring/core';
import { type BusClient, connectBus } from '../bus/bus-client.js';

/** `--socket PATH`: the bus to talk to. */
export const SOCKET_OPTION = {
  type: 'string',
  value: 'PATH',
  required: true,
  description: "the bus's Unix socket (as given to vring bus --socket)",
} as const;

/** `--wait MS`: how long to wait for a bus at PATH before giving up. */
export const WAIT_OPTION = {
  type: 'integer',
  value: 'MS',
  default: 5000,
  min: 1,
  description: 'how long to wait for the bus to answer, in ms',
} as const;

/**
 * Connects to the bus at `socket`, waiting `waitMs` at most for it.
 * @throws VringError `ERR_VRING_TIMEOUT` when no bus answered in time, or what
 * {@link connectBus} throws (e.g. `ERR_VRING_PEER_REFUSED`).
 */
export async function connectFromCli(socket: string, waitMs: number): Promise<BusClient> {
  const signal = AbortSignal.timeout(waitMs);
  try {
    // A command's few requests would not pay for a route's handshake, nor its listener.
    return await connectBus(socket, { signal, directRoutes: false });
  } catch (error) {
    if (!signal.aborted) throw error;
    throw new VringError('ERR_VRING_TIMEOUT', `no bus answered at ${socket} within ${waitMs} ms`);
  }
}
