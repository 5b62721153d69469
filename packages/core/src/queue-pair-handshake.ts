/**
 * Handing a queue pair over a Unix socket: what two processes do to share one without a
 * vhost-user session around it. The driver creates the pair and sends its descriptor (JSON)
 * with the fds `[region, kick, call]`; the device attaches and answers `attached`. The
 * socket stays open as the pair's lifeline: either side learns the other went away when
 * it closes.
 *
 * @packageDocumentation
 */
import { closeSync } from 'node:fs';
import { DeviceQueuePair } from './device-queue-pair.js';
import { DriverQueuePair, type QueuePairOptions } from './driver-queue-pair.js';
import type { EndpointOptions } from './endpoint-options.js';
import { VringError } from './errors.js';
import type { FdSocket } from './fd-socket.js';

/** The device's answer once it has attached: the pair is ready for traffic. */
const ATTACHED = 'attached';
/** A descriptor is a few hundred bytes of JSON; anything much larger is not one. */
const MAX_DESCRIPTOR_BYTES = 64 * 1024;

/** Options of {@link offerQueuePair} and {@link acceptQueuePair}. @public */
export interface QueuePairHandshakeOptions {
  /** Gives up waiting for the peer: rejects with `ERR_VRING_ABORTED` or the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link acceptQueuePair}. @public */
export interface AcceptQueuePairOptions extends QueuePairHandshakeOptions {
  /**
   * Runs once the pair is attached and before the peer is told so: the peer (after
   * {@link offerQueuePair}) sends nothing before this returns, so what reads the pair (and
   * must be in place when the first message comes, such as handlers) is built here. A
   * rejection closes the pair and is what `acceptQueuePair` rejects with.
   */
  beforeAttached?: (pair: DeviceQueuePair) => void | Promise<void>;
}

/**
 * Creates a {@link DriverQueuePair} and hands it to the process at the other end of
 * `socket`, which calls {@link acceptQueuePair}. Resolves once that peer has attached; the
 * socket becomes the pair's lifeline (close the pair before the socket).
 *
 * @example
 * ```ts
 * const socket = await FdSocket.connect('/tmp/pair.sock');
 * const pair = await offerQueuePair(socket, { queueSize: 256 });
 * await pair.send(Buffer.from('hello'));
 * ```
 * @throws VringError from the socket, or `ERR_VRING_PROTOCOL` when the peer answers
 * anything but that it attached; the pair is closed then.
 * @public
 */
export async function offerQueuePair(
  socket: FdSocket,
  options: Omit<QueuePairOptions, 'lifeline'> & QueuePairHandshakeOptions = {},
): Promise<DriverQueuePair> {
  const { signal, ...pairOptions } = options;
  const pair = DriverQueuePair.create({ ...pairOptions, lifeline: socket });
  try {
    const { descriptor, fds } = pair.share();
    await socket.send(Buffer.from(JSON.stringify(descriptor)), fds);
    const { data, fds: extra } = await socket.receive(signal ? { signal } : {});
    closeAll(extra);
    if (data.toString('latin1') !== ATTACHED) {
      throw new VringError('ERR_VRING_PROTOCOL', 'the peer did not attach to the queue pair', {
        reason: 'bad-handshake',
      });
    }
    return pair;
  } catch (error) {
    pair.close();
    throw error;
  }
}

/**
 * Receives the queue pair that the process at the other end of `socket` offers
 * ({@link offerQueuePair}), attaches to it as its {@link DeviceQueuePair} and tells the
 * peer. The socket becomes the pair's lifeline. Everything the peer sends is checked: a
 * message that is not a queue-pair descriptor with its three fds is refused, and every fd
 * received is closed whatever happens.
 *
 * @example
 * ```ts
 * const server = await FdServer.listen('/tmp/pair.sock');
 * const socket = await server.accept();
 * const pair = await acceptQueuePair(socket);
 * for await (const message of pair) console.log(message.toString()); // 'hello'
 * ```
 * @throws VringError from the socket, or `ERR_VRING_PROTOCOL` when what arrived is not a
 * queue pair (and whatever {@link DeviceQueuePair.attach} throws for a bad descriptor).
 * @public
 */
export async function acceptQueuePair(
  socket: FdSocket,
  options: Omit<EndpointOptions, 'lifeline'> & AcceptQueuePairOptions = {},
): Promise<DeviceQueuePair> {
  const { signal, beforeAttached, ...endpoint } = options;
  const { data, fds } = await socket.receive(signal ? { signal } : {});
  let pair: DeviceQueuePair;
  try {
    pair = DeviceQueuePair.attach(parseDescriptor(data), fds, { ...endpoint, lifeline: socket });
  } finally {
    // attach duplicated what it keeps.
    closeAll(fds);
  }
  try {
    await beforeAttached?.(pair);
    await socket.send(Buffer.from(ATTACHED));
  } catch (error) {
    pair.close();
    throw error;
  }
  return pair;
}

function parseDescriptor(data: Buffer): unknown {
  if (data.byteLength > MAX_DESCRIPTOR_BYTES) {
    throw new VringError('ERR_VRING_PROTOCOL', 'a queue-pair descriptor is a few hundred bytes', {
      reason: 'bad-handshake',
    });
  }
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw new VringError('ERR_VRING_PROTOCOL', 'the queue-pair descriptor is not JSON', {
      reason: 'bad-handshake',
    });
  }
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // Already closed.
    }
  }
}
