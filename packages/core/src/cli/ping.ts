/**
 * `vring ping`: a VirtioUser that sends numbered Ethernet frames to a vhost-user back-end
 * and checks that each comes back intact (an echoing back-end: `vring echo`, or DPDK
 * testpmd in io forwarding on one port).
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';
import { VirtioUser } from '../vhost-user/virtio-user.js';
import { PING_MAX_FRAME, PING_MIN_FRAME } from './ping-frame.js';
import { percentile, runPingSession, warmUpPing } from './ping-session.js';

/** Options of {@link ping}. @public */
export interface PingOptions {
  /** The back-end's socket (client mode) or the path to listen on (`server`). */
  socket: string;
  /** Listen and let the back-end connect (DPDK net_vhost `client=1`). */
  server: boolean;
  /** Frames to send. */
  count: number;
  /** Bytes per frame, 60..1514 (an Ethernet frame without FCS). */
  size: number;
  /** Deadline for the whole run, connection included, in ms (default 60 000). */
  timeoutMs?: number;
  /** Where the summary line goes (default `console.log`); errors go to `console.error`. */
  log?: (line: string) => void;
}

const QUEUE_SIZE = 256;

function micros(ns: number): string {
  return Number.isNaN(ns) ? '-' : `${(ns / 1000).toFixed(1)} us`;
}

/**
 * Runs a ping: opens a {@link VirtioUser} at `socket`, waits until a warm-up probe comes
 * back (the back-end may not forward yet when the handshake is done), sends `count` frames of `size` bytes
 * with at most half a receive ring in flight, waits for every echo, prints one summary line
 * (sent, received, lost, corrupted, rate, RTT p50/p99) and closes.
 * @returns the exit code: 0 only if every frame came back intact, 1 otherwise, 2 for bad
 * options.
 * @public
 */
export async function ping(options: PingOptions): Promise<number> {
  const log = options.log ?? ((line: string) => console.log(line));
  const { count, size } = options;
  if (!Number.isSafeInteger(count) || count < 1) {
    console.error(`vring ping: --count must be a positive integer, got ${count}`);
    return 2;
  }
  if (!Number.isSafeInteger(size) || size < PING_MIN_FRAME || size > PING_MAX_FRAME) {
    console.error(
      `vring ping: --size must be ${PING_MIN_FRAME}..${PING_MAX_FRAME} bytes, got ${size}`,
    );
    return 2;
  }
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let port: VirtioUser;
  const connectDeadline = AbortSignal.timeout(timeoutMs);
  try {
    port = await VirtioUser.open(options.socket, {
      server: options.server,
      queueSize: QUEUE_SIZE,
      maxMessage: PING_MAX_FRAME,
      signal: connectDeadline,
    });
  } catch (error) {
    const why = connectDeadline.aborted
      ? `no vhost-user back-end completed the handshake within ${timeoutMs} ms`
      : error instanceof VringError
        ? `${error.code}: ${error.message}`
        : String(error);
    console.error(`vring ping: ${options.socket}: ${why}`);
    return 1;
  }
  try {
    if (!(await warmUpPing(port, { timeoutMs: Math.max(1, deadline - Date.now()) }))) {
      console.error(`vring ping: ${options.socket}: the back-end never echoed a frame`);
      return 1;
    }
    const result = await runPingSession(port, {
      count,
      sizeOf: () => size,
      window: QUEUE_SIZE / 2,
      timeoutMs: Math.max(1, deadline - Date.now()),
    });
    const seconds = result.elapsedMs / 1000;
    const rate = seconds > 0 ? Math.round(result.received / seconds) : 0;
    log(
      `vring ping ${options.socket}: sent ${result.sent}, received ${result.received}, ` +
        `lost ${result.lost}, corrupted ${result.corrupted}, ${size} B frames, ${rate} frames/s, ` +
        `rtt p50 ${micros(percentile(result.rttNs, 50))} p99 ${micros(percentile(result.rttNs, 99))}` +
        (result.timedOut ? ` (timed out after ${timeoutMs} ms)` : ''),
    );
    for (const problem of result.problems) console.error(`vring ping: ${problem}`);
    const perfect = result.sent === count && result.received === count && result.corrupted === 0;
    return perfect ? 0 : 1;
  } catch (error) {
    console.error(`vring ping: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    port.close();
  }
}
