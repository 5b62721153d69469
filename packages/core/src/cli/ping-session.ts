/**
 * One run of ping traffic over a {@link VirtioUser}: send numbered frames with a bounded
 * window, match every echo to its request, check its content, measure round trips.
 *
 * @packageDocumentation
 */
import { MessageBatch } from '../message-batch.js';
import type { VirtioUser } from '../vhost-user/virtio-user.js';
import { checkPingFrame, writePingFrame } from './ping-frame.js';

/** Options of {@link runPingSession}. @internal */
export interface PingSessionOptions {
  /** Frames to send. */
  count: number;
  /** Size in bytes of frame `seq` (60..1514). */
  sizeOf: (seq: number) => number;
  /**
   * Frames in flight at most. It must not exceed the receive ring's buffers: a backend with
   * no free receive buffer drops the echo (DPDK's io forwarding does), which would be
   * reported as loss although nothing is wrong.
   */
  window: number;
  /** Give up after this many ms; frames not back by then count as lost. */
  timeoutMs: number;
  /** Stops the run early, like the timeout. */
  signal?: AbortSignal | undefined;
}

/** What a run saw. @internal */
export interface PingSessionResult {
  sent: number;
  /** Frames that came back intact (each sequence number once). */
  received: number;
  /** Sent frames that never came back, intact or not. */
  lost: number;
  /** Frames that came back damaged, duplicated or unattributable. */
  corrupted: number;
  /** Frames with another EtherType: not ours, ignored. */
  foreign: number;
  /** From the first send to the last receive, in ms. */
  elapsedMs: number;
  /** Round-trip times of intact frames in ns, sorted ascending. */
  rttNs: Float64Array;
  /** Whether the timeout (or the signal) ended the run. */
  timedOut: boolean;
  /** The first few corruption descriptions, for diagnosis. */
  problems: string[];
}

const IN_FLIGHT = 1;
const DONE = 2;

/**
 * Sends `count` frames and waits for their echoes. Never throws for traffic problems: they
 * are in the result. Throws only what the VirtioUser throws for other reasons (closed).
 * @internal
 */
export async function runPingSession(
  port: VirtioUser,
  options: PingSessionOptions,
): Promise<PingSessionResult> {
  const { count, sizeOf, window } = options;
  const state = new Uint8Array(count);
  const sentAt = new Float64Array(count);
  const rtt = new Float64Array(count);
  const problems: string[] = [];
  let sent = 0;
  let received = 0;
  let corrupted = 0;
  let attributedCorrupted = 0;
  let foreign = 0;
  let timedOut = false;

  const stop = new AbortController();
  const timer = setTimeout(() => {
    timedOut = true;
    stop.abort(new Error('ping timed out'));
  }, options.timeoutMs);
  const onAbort = () => {
    timedOut = true;
    stop.abort(options.signal?.reason);
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });

  // The sender parks here while the window is full; the receiver wakes it.
  let windowOpen: (() => void) | undefined;
  const inFlight = () => sent - received - attributedCorrupted;
  const start = process.hrtime.bigint();
  const now = () => Number(process.hrtime.bigint() - start);
  let lastReceive = 0;

  const sender = (async () => {
    const batch = new MessageBatch({ bytes: 256 * 1024, messages: 256 });
    const scratch = Buffer.alloc(2048);
    while (sent < count && !stop.signal.aborted) {
      if (inFlight() >= window) {
        // The receiver wakes us on progress; the abort listener ends the wait on timeout.
        // Removed each time so a long run does not pile listeners onto the signal.
        let onStop: (() => void) | undefined;
        await new Promise<void>((resolve) => {
          windowOpen = resolve;
          onStop = resolve;
          stop.signal.addEventListener('abort', onStop, { once: true });
        });
        stop.signal.removeEventListener('abort', onStop!);
        windowOpen = undefined;
        continue;
      }
      batch.clear();
      const room = Math.min(window - inFlight(), count - sent);
      const first = sent;
      for (let seq = first; seq < first + room; seq++) {
        if (!batch.push(writePingFrame(scratch, seq, sizeOf(seq)))) break;
      }
      const t = now();
      for (let i = 0; i < batch.count; i++) {
        state[first + i] = IN_FLIGHT;
        sentAt[first + i] = t;
      }
      sent += batch.count;
      try {
        await port.sendBatch(batch, { signal: stop.signal });
      } catch (error) {
        if (stop.signal.aborted) return;
        throw error;
      }
    }
  })();

  const receiver = (async () => {
    const batch = new MessageBatch({ bytes: Math.max(port.maxMessage, 256 * 1024) });
    while (received + attributedCorrupted < count && !stop.signal.aborted) {
      try {
        await port.receive(batch, { signal: stop.signal });
      } catch (error) {
        if (stop.signal.aborted) return;
        throw error;
      }
      const t = now();
      lastReceive = t;
      for (const frame of batch) {
        const check = checkPingFrame(frame);
        if (check.kind === 'warm-up') continue;
        if (check.kind === 'foreign') {
          foreign++;
          continue;
        }
        const known = check.seq !== undefined && check.seq < count;
        const pending = known && state[check.seq!] === IN_FLIGHT;
        if (check.kind === 'intact' && pending) {
          state[check.seq] = DONE;
          rtt[received++] = t - sentAt[check.seq]!;
          continue;
        }
        corrupted++;
        if (pending) {
          state[check.seq!] = DONE;
          attributedCorrupted++;
        }
        if (problems.length < 5) {
          problems.push(
            check.kind === 'intact'
              ? `duplicate or unexpected frame ${check.seq}`
              : `frame ${check.seq ?? '?'}: ${check.why}`,
          );
        }
      }
      windowOpen?.();
    }
  })();

  try {
    await Promise.all([sender, receiver]);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    if (!stop.signal.aborted) stop.abort();
  }
  return {
    sent,
    received,
    lost: sent - received - attributedCorrupted,
    corrupted,
    foreign,
    elapsedMs: lastReceive / 1e6,
    rttNs: rtt.subarray(0, received).sort(),
    timedOut: timedOut && received + attributedCorrupted < count,
    problems,
  };
}

/**
 * Sends a warm-up probe every `intervalMs` until one comes back, so counting starts only
 * once the path echoes. A back-end may accept the rings before it forwards: DPDK testpmd
 * completes a `client=1` handshake during port start and then flushes its receive queues
 * when forwarding starts, discarding whatever we sent in between. Probes that come back
 * later are recognised by their magic and ignored by {@link runPingSession}.
 * @returns whether a probe came back before `timeoutMs`.
 * @internal
 */
export async function warmUpPing(
  port: VirtioUser,
  options: { timeoutMs: number; intervalMs?: number; size?: number },
): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  const probe = writePingFrame(Buffer.alloc(2048), 0, options.size ?? 60, true);
  const batch = new MessageBatch({ bytes: Math.max(port.maxMessage, 256 * 1024) });
  for (let seq = 0; Date.now() < deadline; seq++) {
    await port.send(writePingFrame(probe, seq, probe.byteLength, true));
    const wait = Math.max(1, Math.min(options.intervalMs ?? 200, deadline - Date.now()));
    const signal = AbortSignal.timeout(wait);
    for (;;) {
      try {
        await port.receive(batch, { signal });
      } catch (error) {
        if (signal.aborted) break;
        throw error;
      }
      for (const frame of batch) if (checkPingFrame(frame).kind === 'warm-up') return true;
    }
  }
  return false;
}

/** The `p`-th percentile (0..100) of sorted values, nearest rank; NaN when empty. @internal */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}
