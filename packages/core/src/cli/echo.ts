/**
 * `vring echo`: a vhost-user back-end that sends every frame it receives back to the port it
 * came from — the peer of `vring ping`, and a target for DPDK's virtio_user.
 *
 * @packageDocumentation
 */
import type { VringError } from '../errors.js';
import type { ListenAccessOptions } from '../peer-access.js';
import type { PeerLimitOptions } from '../peer-limits.js';
import { VhostUserBackend } from '../vhost-user/backend.js';
import {
  BACKEND_DEFAULT_FEATURES,
  type VhostUserPortOptions,
} from '../vhost-user/backend-options.js';
import type { VhostUserPort, VhostUserPortStats } from '../vhost-user/backend-port.js';
import { VIRTIO_F_IN_ORDER } from '../vhost-user/features.js';
import { stopSignal } from './stop-signal.js';

/**
 * Options of {@link echo}; the access options and connection limits apply when it listens,
 * the memory limit always.
 * @public
 */
export interface EchoOptions
  extends ListenAccessOptions,
    PeerLimitOptions,
    Pick<VhostUserPortOptions, 'packedRings'> {
  /** Socket path to listen on (or, with `client`, to connect to). */
  socket: string;
  /** Connect to a listening front-end instead of listening. */
  client: boolean;
  /**
   * Offer VIRTIO_F_IN_ORDER besides the default features (default false): a front-end
   * that takes it (DPDK virtio_user `in_order=1`, the default there) uses descriptors in
   * ring order, on split and packed rings alike.
   */
  inOrder?: boolean | undefined;
}

/** Ports kept for the final report after they closed, at most (hostile floods make many). */
const REPORT_LIMIT = 64;

/** What the final report says of a port, open or closed. */
interface PortReport {
  id: number;
  stats: VhostUserPortStats;
  features: bigint | undefined;
  queueSize: number | undefined;
}

function formatStats(port: PortReport, state: string): string {
  const { id, stats, features, queueSize } = port;
  return (
    `port ${id} (${state}): received ${stats.framesReceived} frames ${stats.bytesReceived} B, ` +
    `sent ${stats.framesSent} frames ${stats.bytesSent} B, dropped ${stats.dropped}, ` +
    `starts ${stats.starts}, features 0x${(features ?? 0n).toString(16)}` +
    (queueSize === undefined ? '' : `, queue size ${queueSize}`)
  );
}

/** Returns every frame a port receives to that port, until it closes. @internal */
export async function echoPort(port: VhostUserPort): Promise<void> {
  const batch = port.createBatch();
  for (;;) {
    try {
      await port.receive(batch);
      await port.sendBatch(batch);
    } catch {
      return; // the port closed (its error, if any, was logged by the backend)
    }
  }
}

/**
 * Runs an echo back-end until SIGINT or SIGTERM, then prints one line of counters per port
 * and resolves 0. Port errors (bad control input, broken rings) are logged to stderr and
 * close only that port.
 * @public
 */
export async function echo(options: EchoOptions): Promise<number> {
  // Closed ports are remembered by id and counters only, not kept alive.
  const finished: Array<PortReport & { error?: VringError }> = [];
  const { socket: _socket, inOrder, ...backendOptions } = options;
  const backend = new VhostUserBackend(options.socket, {
    ...backendOptions,
    ...(inOrder ? { features: BACKEND_DEFAULT_FEATURES | VIRTIO_F_IN_ORDER } : {}),
    onPort: (port) => {
      console.log(`vring echo: port ${port.id} connected`);
      void echoPort(port);
      void port.closed.then((error) => {
        const stats = port.stats;
        // Keep closed ports that moved frames (and a bounded number of the rest).
        if (stats.framesReceived + stats.framesSent > 0 || finished.length < REPORT_LIMIT) {
          finished.push({
            id: port.id,
            stats,
            features: port.features,
            queueSize: port.queueSize,
            ...(error ? { error } : {}),
          });
        }
      });
    },
  });
  const stopped = stopSignal();
  const mode = options.client ? 'connecting to' : 'listening on';
  console.log(
    `vring echo: ${mode} ${options.socket}; Ctrl-C or SIGTERM prints the counters and stops it`,
  );
  await stopped;
  const open: PortReport[] = [...backend.ports].map((port) => ({
    id: port.id,
    stats: port.stats,
    features: port.features,
    queueSize: port.queueSize,
  }));
  backend.close();
  const lines = [
    ...finished.map((port) => ({
      id: port.id,
      line: formatStats(port, port.error ? `closed: ${port.error.code}` : 'closed'),
    })),
    ...open.map((port) => ({ id: port.id, line: formatStats(port, 'open') })),
  ]
    .sort((a, b) => a.id - b.id)
    .map((entry) => entry.line);
  if (lines.length === 0) console.log('vring echo: no ports');
  for (const line of lines) console.log(line);
  return 0;
}
