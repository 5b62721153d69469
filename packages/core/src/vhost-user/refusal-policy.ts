/**
 * What a back-end does with a request it refuses: answer with a NACK and keep the connection,
 * or end the connection. It follows DPDK's `lib/vhost`: a refused request that carried
 * NEED_REPLY gets a u64 ack of 1 and the session goes on, because nothing it changed is
 * half-done and the front-end learns of the refusal at the request that caused it; a refused
 * request without NEED_REPLY ends the connection, because the front-end would carry on as if
 * it had been applied. The per-request table is in
 * docs/architecture.md#what-a-refused-request-does.
 *
 * A few refusals end the connection even with NEED_REPLY:
 * - frames whose header cannot be trusted (the NEED_REPLY bit is part of what is broken);
 * - requests whose answer is a reply body, not an ack (a front-end reading a body would take
 *   the ack for one);
 * - SET_MEM_TABLE: the front-end is replacing the memory its rings live in, so neither the
 *   old table nor no table at all is what it drives next (DPDK drops the old table too);
 * - limits (`ERR_VRING_LIMIT_EXCEEDED`), which have their own notice.
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';
import { decodeHeader } from './message-decoder.js';
import {
  VhostUserRequest as R,
  VHOST_USER_FLAG_NEED_REPLY,
  VHOST_USER_FLAG_REPLY,
  VHOST_USER_HEADER_SIZE,
} from './message-layout.js';

/** Refusals of the frame itself: its header, size or fd count is what was wrong. */
const FRAMING_REASONS: ReadonlySet<string> = new Set([
  'short-header',
  'bad-version',
  'reserved-flags',
  'oversized-message',
  'size-mismatch',
  'reply-flag-on-request',
  'too-many-fds',
]);

/** Requests the spec answers with a body (or a zero-sized reply), never with an ack. */
const ANSWERED_WITH_A_BODY: ReadonlySet<number> = new Set([
  R.GET_FEATURES,
  R.GET_PROTOCOL_FEATURES,
  R.GET_QUEUE_NUM,
  R.GET_VRING_BASE,
  R.GET_STATUS,
  R.GET_CONFIG,
  R.GET_INFLIGHT_FD,
  R.GET_MAX_MEM_SLOTS,
  R.GET_SHARED_OBJECT,
  R.SET_LOG_BASE,
  R.POSTCOPY_ADVISE,
  R.CREATE_CRYPTO_SESSION,
  R.SET_DEVICE_STATE_FD,
  R.CHECK_DEVICE_STATE,
]);

/** Requests whose refusal leaves the port without what it needs to go on. */
const REFUSAL_ENDS_THE_PORT: ReadonlySet<number> = new Set([R.SET_MEM_TABLE]);

/** Error codes a NACK can stand for: the request was wrong, not the back-end. */
const NACKABLE_CODES: ReadonlySet<string> = new Set([
  'ERR_VRING_PROTOCOL',
  'ERR_VRING_FEATURE_MISMATCH',
]);

/**
 * The request id to NACK when `error` refused the request in `frame`, or `undefined` when the
 * refusal ends the connection instead.
 * @internal
 */
export function requestToNack(frame: Uint8Array, error: unknown): number | undefined {
  if (!(error instanceof VringError) || !NACKABLE_CODES.has(error.code)) return undefined;
  if (error.reason !== undefined && FRAMING_REASONS.has(error.reason)) return undefined;
  let request: number;
  let flags: number;
  try {
    const header = decodeHeader(frame);
    if (frame.byteLength !== VHOST_USER_HEADER_SIZE + header.size) return undefined;
    ({ request, flags } = header);
  } catch {
    return undefined;
  }
  if ((flags & VHOST_USER_FLAG_REPLY) !== 0 || (flags & VHOST_USER_FLAG_NEED_REPLY) === 0) {
    return undefined;
  }
  if (ANSWERED_WITH_A_BODY.has(request) || REFUSAL_ENDS_THE_PORT.has(request)) return undefined;
  return request;
}
