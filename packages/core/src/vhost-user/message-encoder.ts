/**
 * Encoding of vhost-user messages, for the side that sends (our front-end's requests, our
 * back-end's replies). A request is run through the decoder's checks before it is returned,
 * so we never send what we ourselves would refuse.
 *
 * @packageDocumentation
 */
import { VringError } from '../errors.js';
import { type DecodeOptions, parseRequest } from './message-decoder.js';
import {
  type InflightArea,
  LITTLE_ENDIAN,
  MEMORY_TABLE_HEADER,
  type MemoryRegion,
  type MemoryRegionRemoval,
  type MemoryTable,
  PAYLOAD_SIZE,
  type PayloadKind,
  REGION_SIZE,
  REPLY_BODY,
  REQUEST_PAYLOAD,
  type ReplyPayload,
  type RequestPayloads,
  requestName,
  type SupportedRequest,
  U64_LIMIT,
  VHOST_USER_FLAG_NEED_REPLY,
  VHOST_USER_FLAG_REPLY,
  VHOST_USER_HEADER_SIZE,
  VHOST_USER_VERSION,
  VHOST_USER_VRING_INDEX_MASK,
  VHOST_USER_VRING_NOFD_MASK,
  type VringAddress,
  type VringFile,
  type VringState,
  viewOf,
} from './message-layout.js';

// DataView setters wrap out-of-range values silently (-1 becomes 0xffffffff); an encoder
// must refuse them instead, or it would send a different message than the caller asked for.
function u32(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${field} ${value} is not a u32`);
  }
  return value;
}

function u16(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${field} ${value} is not a u16`);
  }
  return value;
}

function u64(value: bigint, field: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value >= U64_LIMIT) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${field} ${String(value)} is not a u64`);
  }
  return value;
}

function writeHeader(view: DataView, request: number, flags: number, size: number): void {
  view.setUint32(0, request, LITTLE_ENDIAN);
  view.setUint32(4, flags, LITTLE_ENDIAN);
  view.setUint32(8, size, LITTLE_ENDIAN);
}

function payloadSize(kind: PayloadKind, payload: unknown): number {
  return kind === 'mem'
    ? MEMORY_TABLE_HEADER + REGION_SIZE * (payload as MemoryTable).regions.length
    : PAYLOAD_SIZE[kind];
}

function writeRegion(view: DataView, o: number, r: Omit<MemoryRegion, 'fd'>): void {
  view.setBigUint64(o, u64(r.guestPhysAddr, 'guestPhysAddr'), LITTLE_ENDIAN);
  view.setBigUint64(o + 8, u64(r.memorySize, 'memorySize'), LITTLE_ENDIAN);
  view.setBigUint64(o + 16, u64(r.userspaceAddr, 'userspaceAddr'), LITTLE_ENDIAN);
  view.setBigUint64(o + 24, u64(r.mmapOffset, 'mmapOffset'), LITTLE_ENDIAN);
}

function writePayload(view: DataView, kind: PayloadKind, payload: unknown): number[] {
  const at = VHOST_USER_HEADER_SIZE;
  switch (kind) {
    case 'none':
      return [];
    case 'u64':
      view.setBigUint64(at, u64(payload as bigint, 'value'), LITTLE_ENDIAN);
      return [];
    case 'state': {
      const state = payload as VringState;
      view.setUint32(at, u32(state.index, 'index'), LITTLE_ENDIAN);
      view.setUint32(at + 4, u32(state.num, 'num'), LITTLE_ENDIAN);
      return [];
    }
    case 'addr': {
      const a = payload as VringAddress;
      view.setUint32(at, u32(a.index, 'index'), LITTLE_ENDIAN);
      view.setUint32(at + 4, u32(a.flags, 'flags'), LITTLE_ENDIAN);
      view.setBigUint64(at + 8, u64(a.descUser, 'descUser'), LITTLE_ENDIAN);
      view.setBigUint64(at + 16, u64(a.usedUser, 'usedUser'), LITTLE_ENDIAN);
      view.setBigUint64(at + 24, u64(a.availUser, 'availUser'), LITTLE_ENDIAN);
      view.setBigUint64(at + 32, u64(a.log, 'log'), LITTLE_ENDIAN);
      return [];
    }
    case 'file': {
      const file = payload as VringFile;
      // The index shares the word with the NOFD bit: 256 would silently become "index 0, no fd".
      if (u32(file.index, 'index') > Number(VHOST_USER_VRING_INDEX_MASK)) {
        throw new VringError('ERR_VRING_INVALID_ARGUMENT', `vring index ${file.index} > 255`);
      }
      const nofd = file.fd === undefined ? VHOST_USER_VRING_NOFD_MASK : 0n;
      view.setBigUint64(at, BigInt(file.index) | nofd, LITTLE_ENDIAN);
      return file.fd === undefined ? [] : [file.fd];
    }
    case 'mem': {
      const { regions } = payload as MemoryTable;
      view.setUint32(at, regions.length, LITTLE_ENDIAN);
      view.setUint32(at + 4, 0, LITTLE_ENDIAN);
      for (const [i, r] of regions.entries()) {
        writeRegion(view, at + MEMORY_TABLE_HEADER + REGION_SIZE * i, r);
      }
      return regions.map((r) => r.fd);
    }
    case 'mem-region':
    case 'mem-region-rem': {
      const r = payload as MemoryRegionRemoval;
      view.setBigUint64(at, 0n, LITTLE_ENDIAN);
      writeRegion(view, at + 8, r);
      return r.fd === undefined ? [] : [r.fd];
    }
    case 'inflight':
    case 'inflight-fd': {
      const area = payload as InflightArea;
      view.setBigUint64(at, u64(area.mmapSize, 'mmapSize'), LITTLE_ENDIAN);
      view.setBigUint64(at + 8, u64(area.mmapOffset, 'mmapOffset'), LITTLE_ENDIAN);
      view.setUint16(at + 16, u16(area.numQueues, 'numQueues'), LITTLE_ENDIAN);
      view.setUint16(at + 18, u16(area.queueSize, 'queueSize'), LITTLE_ENDIAN);
      return kind === 'inflight-fd' && area.fd !== undefined ? [area.fd] : [];
    }
  }
}

/** Options for {@link encodeRequest}. */
export interface EncodeRequestOptions extends DecodeOptions {
  /** Set NEED_REPLY (only when PROTOCOL_F_REPLY_ACK was negotiated, or for explicit replies). */
  needReply?: boolean | undefined;
}

/** A message ready for one `sendmsg`: the fds must ride with the first byte of `frame`. */
export interface EncodedMessage {
  /** Header + payload. */
  readonly frame: Buffer;
  /** Fds for SCM_RIGHTS, in payload order. */
  readonly fds: readonly number[];
}

/**
 * Encodes a request for our front-end. The result is run through the same checks a receiver
 * applies, so we never send what we ourselves would refuse (a bad ring size or region is a
 * bug on our side, reported before it reaches a peer). The caller's fds are never closed.
 * @throws VringError `ERR_VRING_INVALID_ARGUMENT` for a request this module does not encode,
 * a field that does not fit its wire type, or a message a receiver would reject (then with
 * the failed check's `reason`).
 */
export function encodeRequest<R extends SupportedRequest>(
  request: R,
  payload: RequestPayloads[R],
  options: EncodeRequestOptions = {},
): EncodedMessage {
  const kind = REQUEST_PAYLOAD.get(request);
  if (kind === undefined) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${requestName(request)} is not supported`);
  }
  const size = payloadSize(kind, payload);
  const frame = Buffer.alloc(VHOST_USER_HEADER_SIZE + size);
  const view = viewOf(frame);
  const flags = VHOST_USER_VERSION | (options.needReply ? VHOST_USER_FLAG_NEED_REPLY : 0);
  writeHeader(view, request, flags, size);
  const fds = writePayload(view, kind, payload);
  try {
    parseRequest(frame, fds, options);
  } catch (error) {
    if (!(error instanceof VringError)) throw error;
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `refusing to send: ${error.message}`, {
      reason: error.reason,
      cause: error,
    });
  }
  return { frame, fds };
}

/**
 * Encodes our back-end's reply to `request`: its explicit body, or the REPLY_ACK u64
 * (0 = success, non-zero = failure) for a request that had NEED_REPLY set. Flags are always
 * exactly VERSION|REPLY (0x5): DPDK's front-end refuses anything else.
 */
export function encodeReply<R extends SupportedRequest>(
  request: R,
  payload: ReplyPayload<R>,
): Buffer {
  return encodeReplyWithFds(request, payload).frame;
}

/**
 * Like {@link encodeReply}, with the fds the reply carries (GET_INFLIGHT_FD's record): they
 * must ride with the frame's first byte. The caller's fds are never closed.
 */
export function encodeReplyWithFds<R extends SupportedRequest>(
  request: R,
  payload: ReplyPayload<R>,
): EncodedMessage {
  const kind = REPLY_BODY.get(request) ?? 'u64';
  const size = PAYLOAD_SIZE[kind];
  const frame = Buffer.alloc(VHOST_USER_HEADER_SIZE + size);
  const view = viewOf(frame);
  writeHeader(view, request, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, size);
  const fds = writePayload(view, kind, payload);
  return { frame, fds };
}

/**
 * Encodes a REPLY_ACK for any request id, including ones this module does not decode: a
 * back-end that NACKs an unknown request carrying NEED_REPLY (as DPDK does, ack 1) needs it.
 */
export function encodeAck(request: number, status: bigint): Buffer {
  const frame = Buffer.alloc(VHOST_USER_HEADER_SIZE + 8);
  const view = viewOf(frame);
  writeHeader(view, request, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, 8);
  view.setBigUint64(VHOST_USER_HEADER_SIZE, u64(status, 'status'), LITTLE_ENDIAN);
  return frame;
}
