/**
 * Decoding of vhost-user messages, for the side that receives (our back-end's requests, our
 * front-end's replies). It validates everything a message can be checked for on its own —
 * size exact for the request, version and reserved flag bits, fd count exact, indices and
 * ring sizes in range, memory-table arithmetic without overflow — before returning anything a
 * state machine could act on. Checks that need connection state (ring addresses before
 * SET_MEM_TABLE, features not offered, region larger than its file) belong to the state
 * machines.
 *
 * @packageDocumentation
 */
import { closeSync } from 'node:fs';
import { VringError } from '../errors.js';
import {
  type InflightArea,
  isKnownRequest,
  isSupported,
  LITTLE_ENDIAN,
  MEMORY_TABLE_HEADER,
  type MemoryRegion,
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
  VHOST_USER_DEFAULT_MAX_VRINGS,
  VHOST_USER_FLAG_NEED_REPLY,
  VHOST_USER_FLAG_REPLY,
  VHOST_USER_HEADER_SIZE,
  VHOST_USER_MAX_FDS,
  VHOST_USER_MAX_MEMORY_REGIONS,
  VHOST_USER_MAX_PAYLOAD_SIZE,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
  VHOST_USER_VRING_INDEX_MASK,
  VHOST_USER_VRING_NOFD_MASK,
  VHOST_VRING_F_LOG,
  type VhostUserHeader,
  VhostUserRequest,
  VIRTQUEUE_MAX_SIZE,
  type VringAddress,
  type VringState,
  viewOf,
} from './message-layout.js';

/** A decoded, validated request; narrow on `request` to get its payload type. */
export type VhostUserRequestMessage = {
  [R in SupportedRequest]: {
    /** The request id. */
    readonly request: R;
    /** The raw flags word (version 1, maybe NEED_REPLY). */
    readonly flags: number;
    /** Whether the front-end asked for a REPLY_ACK. */
    readonly needReply: boolean;
    /** The typed payload; fds received with the message are inside it. */
    readonly payload: RequestPayloads[R];
    /**
     * Every fd that came with the message, in order. The receiver owns them now: a state
     * machine that refuses the message later (e.g. a KICK for a ring in the wrong state)
     * must close them.
     */
    readonly fds: readonly number[];
  };
}[SupportedRequest];

/**
 * Every `reason` a rejected message carries in its `ERR_VRING_PROTOCOL` VringError. Stable:
 * tests and logs match on them.
 */
export type VhostUserRejectReason =
  | 'short-header'
  | 'oversized-message'
  | 'size-mismatch'
  | 'bad-size'
  | 'bad-version'
  | 'reserved-flags'
  | 'reply-flag-on-request'
  | 'bad-reply-flags'
  | 'reply-mismatch'
  | 'unknown-request'
  | 'unsupported-request'
  | 'too-many-fds'
  | 'unexpected-fds'
  | 'missing-fds'
  | 'vring-index-out-of-range'
  | 'reserved-bits'
  | 'bad-ring-size'
  | 'bad-enable-value'
  | 'misaligned-ring'
  | 'region-count'
  | 'empty-region'
  | 'region-overflow'
  | 'overlapping-regions'
  | 'bad-inflight-area';

/** Limits that depend on the connection; decoding is strict when they are not given. */
export interface DecodeOptions {
  /** Vring indices must be below this (default {@link VHOST_USER_DEFAULT_MAX_VRINGS}). */
  maxVrings?: number | undefined;
  /**
   * Whether RING_PACKED was negotiated. Split rings (the default) need power-of-two sizes,
   * a 16-bit base and split alignment; packed rings allow any size up to 2^15.
   */
  ringPacked?: boolean | undefined;
}

// mmap offsets are a signed off_t: an end beyond 2^63 cannot be mapped, and capping it here
// also keeps "round the end up to the page/hugepage size" from wrapping to a tiny mapping
// (DPDK c6420a3632 "catch overflow causing mmap of size 0").
const MMAP_END_LIMIT = 1n << 63n;
const KNOWN_FLAGS = VHOST_USER_VERSION_MASK | VHOST_USER_FLAG_REPLY | VHOST_USER_FLAG_NEED_REPLY;
const VRING_FILE_RESERVED = ~(VHOST_USER_VRING_INDEX_MASK | VHOST_USER_VRING_NOFD_MASK);

/**
 * The error that rejects what a vhost-user peer sent or asked for: `ERR_VRING_PROTOCOL` with
 * the machine-readable `reason` callers match on.
 * @internal
 */
export function protocolError(reason: string, message: string, cause?: unknown): VringError {
  return new VringError('ERR_VRING_PROTOCOL', message, { reason, cause });
}

function reject(reason: VhostUserRejectReason, message: string): never {
  throw protocolError(reason, message);
}

/**
 * Closes fds that came with a message nobody will act on. Errors are ignored: the fd is
 * either closed now or was never ours, and a second failure must not mask the first.
 */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // already closed or not a valid fd: nothing left to release
    }
  }
}

/**
 * Decodes and checks a header on its own, so a stream reader can refuse a bad version or a
 * hostile `size` before reading (or allocating for) the payload. Direction-specific flag
 * checks (REPLY on a request, exactly 0x5 on a reply) are left to {@link decodeRequest} and
 * {@link decodeReply}.
 * @throws VringError `ERR_VRING_PROTOCOL` (`short-header`, `bad-version`, `reserved-flags`,
 * `oversized-message`).
 */
export function decodeHeader(bytes: Uint8Array): VhostUserHeader {
  if (bytes.byteLength < VHOST_USER_HEADER_SIZE) {
    reject('short-header', `vhost-user header needs 12 bytes, got ${bytes.byteLength}`);
  }
  const view = viewOf(bytes);
  const request = view.getUint32(0, LITTLE_ENDIAN);
  const flags = view.getUint32(4, LITTLE_ENDIAN);
  const size = view.getUint32(8, LITTLE_ENDIAN);
  const name = requestName(request);
  if ((flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) {
    reject('bad-version', `${name}: version ${flags & VHOST_USER_VERSION_MASK}, expected 1`);
  }
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    reject('reserved-flags', `${name}: reserved flag bits set in 0x${flags.toString(16)}`);
  }
  if (size > VHOST_USER_MAX_PAYLOAD_SIZE) {
    reject(
      'oversized-message',
      `${name}: payload size ${size} exceeds ${VHOST_USER_MAX_PAYLOAD_SIZE}`,
    );
  }
  return { request, flags, size };
}

/** Checks that the frame holds exactly the header plus the `size` it announces. */
function payloadOf(frame: Uint8Array, header: VhostUserHeader): DataView {
  const expected = VHOST_USER_HEADER_SIZE + header.size;
  if (frame.byteLength !== expected) {
    reject(
      'size-mismatch',
      `${requestName(header.request)}: frame is ${frame.byteLength} bytes, header says ${expected}`,
    );
  }
  return new DataView(frame.buffer, frame.byteOffset + VHOST_USER_HEADER_SIZE, header.size);
}

function checkVringIndex(name: string, index: number | bigint, maxVrings: number): number {
  if (index >= maxVrings) {
    reject('vring-index-out-of-range', `${name}: vring index ${index} not below ${maxVrings}`);
  }
  return Number(index);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function fdCountFor(kind: PayloadKind, view: DataView): number {
  if (kind === 'mem') return view.getUint32(0, LITTLE_ENDIAN);
  if (kind === 'inflight-fd' || kind === 'mem-region') return 1;
  if (kind === 'file') {
    return (view.getBigUint64(0, LITTLE_ENDIAN) & VHOST_USER_VRING_NOFD_MASK) !== 0n ? 0 : 1;
  }
  return 0;
}

function expectedSize(kind: PayloadKind, view: DataView): number {
  if (kind !== 'mem') return PAYLOAD_SIZE[kind];
  // The table's own count decides its size; a size that disagrees is refused before the
  // count is trusted for anything else.
  if (view.byteLength < MEMORY_TABLE_HEADER) return MEMORY_TABLE_HEADER;
  return MEMORY_TABLE_HEADER + REGION_SIZE * view.getUint32(0, LITTLE_ENDIAN);
}

function readState(view: DataView): VringState {
  return { index: view.getUint32(0, LITTLE_ENDIAN), num: view.getUint32(4, LITTLE_ENDIAN) };
}

function overlaps(aStart: bigint, aSize: bigint, bStart: bigint, bSize: bigint): boolean {
  return aStart < bStart + bSize && bStart < aStart + aSize;
}

/** One 32-byte region at `at`, its arithmetic checked (`i` names it in errors). */
function readRegion(name: string, view: DataView, at: number, fd: number, i: number): MemoryRegion {
  const region: MemoryRegion = {
    guestPhysAddr: view.getBigUint64(at, LITTLE_ENDIAN),
    memorySize: view.getBigUint64(at + 8, LITTLE_ENDIAN),
    userspaceAddr: view.getBigUint64(at + 16, LITTLE_ENDIAN),
    mmapOffset: view.getBigUint64(at + 24, LITTLE_ENDIAN),
    fd,
  };
  if (region.memorySize === 0n) reject('empty-region', `${name}: region ${i} has size 0`);
  if (region.guestPhysAddr + region.memorySize > U64_LIMIT) {
    reject('region-overflow', `${name}: region ${i} guest_phys_addr + size overflows u64`);
  }
  if (region.userspaceAddr + region.memorySize > U64_LIMIT) {
    reject('region-overflow', `${name}: region ${i} userspace_addr + size overflows u64`);
  }
  if (region.mmapOffset + region.memorySize > MMAP_END_LIMIT) {
    reject('region-overflow', `${name}: region ${i} mmap_offset + size exceeds 2^63`);
  }
  return region;
}

/**
 * Whether two regions overlap in either address space. Overlaps make translation ambiguous:
 * a descriptor (GPA) or ring (UVA) address would resolve to two different mappings depending
 * on lookup order.
 * @internal
 */
export function regionsOverlap(a: Omit<MemoryRegion, 'fd'>, b: Omit<MemoryRegion, 'fd'>): boolean {
  return (
    overlaps(a.guestPhysAddr, a.memorySize, b.guestPhysAddr, b.memorySize) ||
    overlaps(a.userspaceAddr, a.memorySize, b.userspaceAddr, b.memorySize)
  );
}

function readMemoryTable(name: string, view: DataView, fds: readonly number[]): MemoryTable {
  const count = view.getUint32(0, LITTLE_ENDIAN);
  const regions: MemoryRegion[] = [];
  for (let i = 0; i < count; i++) {
    const at = MEMORY_TABLE_HEADER + REGION_SIZE * i;
    const region = readRegion(name, view, at, fds[i] ?? -1, i);
    for (const [j, other] of regions.entries()) {
      if (regionsOverlap(region, other)) {
        reject('overlapping-regions', `${name}: regions ${j} and ${i} overlap`);
      }
    }
    regions.push(region);
  }
  return { regions };
}

function readInflightArea(
  name: string,
  view: DataView,
  fd: number | undefined,
  maxVrings: number,
): InflightArea {
  const area: InflightArea = {
    mmapSize: view.getBigUint64(0, LITTLE_ENDIAN),
    mmapOffset: view.getBigUint64(8, LITTLE_ENDIAN),
    numQueues: view.getUint16(16, LITTLE_ENDIAN),
    queueSize: view.getUint16(18, LITTLE_ENDIAN),
    fd,
  };
  // An unchecked queue count indexed past DPDK's queue array (CVE-2021-3839).
  if (area.numQueues === 0 || area.numQueues > maxVrings) {
    reject('bad-inflight-area', `${name}: ${area.numQueues} queues, expected 1..${maxVrings}`);
  }
  if (!isPowerOfTwo(area.queueSize)) {
    reject('bad-inflight-area', `${name}: queue size ${area.queueSize} is not a power of two`);
  }
  if (area.mmapOffset + area.mmapSize > MMAP_END_LIMIT) {
    reject('region-overflow', `${name}: mmap_offset + mmap_size exceeds 2^63`);
  }
  return area;
}

function readVringAddress(
  name: string,
  view: DataView,
  maxVrings: number,
  packed: boolean,
): VringAddress {
  const address: VringAddress = {
    index: checkVringIndex(name, view.getUint32(0, LITTLE_ENDIAN), maxVrings),
    flags: view.getUint32(4, LITTLE_ENDIAN),
    descUser: view.getBigUint64(8, LITTLE_ENDIAN),
    usedUser: view.getBigUint64(16, LITTLE_ENDIAN),
    availUser: view.getBigUint64(24, LITTLE_ENDIAN),
    log: view.getBigUint64(32, LITTLE_ENDIAN),
  };
  if ((address.flags & ~VHOST_VRING_F_LOG) !== 0) {
    reject(
      'reserved-bits',
      `${name}: reserved vring address flags 0x${address.flags.toString(16)}`,
    );
  }
  // Alignments from the virtio spec; a misaligned ring would make the 16-bit index stores
  // the data path relies on tear or fault.
  const availAlign = packed ? 4n : 2n;
  if (
    address.descUser % 16n !== 0n ||
    address.availUser % availAlign !== 0n ||
    address.usedUser % 4n !== 0n
  ) {
    reject('misaligned-ring', `${name}: vring ${address.index} addresses are misaligned`);
  }
  return address;
}

function readPayload(
  request: SupportedRequest,
  kind: PayloadKind,
  view: DataView,
  fds: readonly number[],
  options: DecodeOptions,
): RequestPayloads[SupportedRequest] {
  const name = requestName(request);
  const maxVrings = options.maxVrings ?? VHOST_USER_DEFAULT_MAX_VRINGS;
  const packed = options.ringPacked ?? false;
  switch (kind) {
    case 'none':
      return undefined;
    case 'u64': {
      const value = view.getBigUint64(0, LITTLE_ENDIAN);
      if (request === VhostUserRequest.SET_STATUS && value > 0xffn) {
        reject('reserved-bits', `${name}: status 0x${value.toString(16)} is wider than a byte`);
      }
      return value;
    }
    case 'state': {
      const state = readState(view);
      checkVringIndex(name, state.index, maxVrings);
      if (request === VhostUserRequest.SET_VRING_NUM) {
        if (
          state.num === 0 ||
          state.num > VIRTQUEUE_MAX_SIZE ||
          (!packed && !isPowerOfTwo(state.num))
        ) {
          reject('bad-ring-size', `${name}: vring ${state.index} size ${state.num} is invalid`);
        }
      } else if (request === VhostUserRequest.SET_VRING_BASE) {
        // Split: bits 16–31 reserved. Packed: DPDK uses 0–15, the spec also 16–31; both legal.
        if (!packed && state.num > 0xffff) {
          reject(
            'reserved-bits',
            `${name}: split vring base 0x${state.num.toString(16)} > 16 bits`,
          );
        }
      } else if (request === VhostUserRequest.SET_VRING_ENABLE) {
        if (state.num > 1) reject('bad-enable-value', `${name}: enable value ${state.num}`);
      }
      // GET_VRING_BASE: `num` is reserved, but DPDK's virtio_user sends arbitrary values
      // there; refusing them would refuse DPDK, so it is deliberately not checked.
      return state;
    }
    case 'addr':
      return readVringAddress(name, view, maxVrings, packed);
    case 'file': {
      const raw = view.getBigUint64(0, LITTLE_ENDIAN);
      // Bits above 8 are reserved; a peer putting an index there hopes for truncation
      // (CVE-2020-10723 class), so they are refused rather than masked.
      if ((raw & VRING_FILE_RESERVED) !== 0n) {
        reject('reserved-bits', `${name}: reserved bits set in 0x${raw.toString(16)}`);
      }
      const index = checkVringIndex(name, raw & VHOST_USER_VRING_INDEX_MASK, maxVrings);
      const noFd = (raw & VHOST_USER_VRING_NOFD_MASK) !== 0n;
      return { index, fd: noFd ? undefined : fds[0] };
    }
    case 'mem':
      return readMemoryTable(name, view, fds);
    case 'inflight':
    case 'inflight-fd':
      return readInflightArea(name, view, fds[0], maxVrings);
    case 'mem-region':
    case 'mem-region-rem':
      // The first u64 is padding. REM's fd, if any, rides along only to be closed.
      return readRegion(name, view, 8, fds[0] as number, 0);
  }
}

/**
 * Decodes and validates a request without taking its fds: {@link decodeRequest} for a
 * receiver, and the encoder's check that what it sends would be accepted.
 * @internal
 */
export function parseRequest(
  frame: Uint8Array,
  fds: readonly number[],
  options: DecodeOptions,
): VhostUserRequestMessage {
  if (fds.length > VHOST_USER_MAX_FDS) {
    reject('too-many-fds', `${fds.length} fds with one message, at most ${VHOST_USER_MAX_FDS}`);
  }
  const header = decodeHeader(frame);
  const { request, flags } = header;
  const name = requestName(request);
  const view = payloadOf(frame, header);
  if (!isSupported(request)) {
    if (isKnownRequest(request)) reject('unsupported-request', `${name} is not supported`);
    reject('unknown-request', `unknown request ${request}`);
  }
  if ((flags & VHOST_USER_FLAG_REPLY) !== 0) {
    reject('reply-flag-on-request', `${name}: REPLY flag set on a request`);
  }
  const kind = REQUEST_PAYLOAD.get(request) ?? 'none';
  if (kind === 'mem' && header.size >= MEMORY_TABLE_HEADER) {
    // The count is checked before it sizes anything, so "9 regions" is reported as such
    // rather than as a size that happens to disagree.
    const count = view.getUint32(0, LITTLE_ENDIAN);
    if (count === 0 || count > VHOST_USER_MAX_MEMORY_REGIONS) {
      reject(
        'region-count',
        `${name}: ${count} regions, expected 1..${VHOST_USER_MAX_MEMORY_REGIONS}`,
      );
    }
  }
  const size = expectedSize(kind, view);
  if (header.size !== size)
    reject('bad-size', `${name}: payload size ${header.size}, expected ${size}`);
  // REM_MEM_REG should carry no fd but may carry one (older QEMU sends it).
  const wantFds = kind === 'mem-region-rem' ? Math.min(fds.length, 1) : fdCountFor(kind, view);
  if (fds.length > wantFds)
    reject('unexpected-fds', `${name}: ${fds.length} fds, expected ${wantFds}`);
  if (fds.length < wantFds)
    reject('missing-fds', `${name}: ${fds.length} fds, expected ${wantFds}`);
  const payload = readPayload(request, kind, view, fds, options);
  return {
    request,
    flags,
    needReply: (flags & VHOST_USER_FLAG_NEED_REPLY) !== 0,
    payload,
    fds: [...fds],
  } as VhostUserRequestMessage;
}

/**
 * Decodes and validates one complete request frame (header + payload) received with `fds`.
 * On success the returned message owns the fds. On rejection every fd is closed before the
 * error is thrown, so a hostile peer cannot grow our fd table with refused messages
 * (CVE-2019-14818, CVE-2022-0669).
 * @throws VringError `ERR_VRING_PROTOCOL` with a {@link VhostUserRejectReason} as `reason`.
 */
export function decodeRequest(
  frame: Uint8Array,
  fds: readonly number[] = [],
  options: DecodeOptions = {},
): VhostUserRequestMessage {
  try {
    return parseRequest(frame, fds, options);
  } catch (error) {
    closeFds(fds);
    throw error;
  }
}

/**
 * Decodes and validates the reply to `request` (its explicit body, or the REPLY_ACK u64).
 * Replies are held to what DPDK's front-end demands: flags exactly VERSION|REPLY, the same
 * request id, exact size, no fds (none of the supported replies carries one). Fds that came
 * with a rejected reply are closed.
 * @throws VringError `ERR_VRING_PROTOCOL` with a {@link VhostUserRejectReason} as `reason`.
 */
export function decodeReply<R extends SupportedRequest>(
  frame: Uint8Array,
  fds: readonly number[],
  request: R,
  options: DecodeOptions = {},
): ReplyPayload<R> {
  try {
    if (fds.length > VHOST_USER_MAX_FDS) {
      reject('too-many-fds', `${fds.length} fds with one message, at most ${VHOST_USER_MAX_FDS}`);
    }
    const header = decodeHeader(frame);
    const name = requestName(request);
    const view = payloadOf(frame, header);
    if (header.flags !== (VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY)) {
      reject(
        'bad-reply-flags',
        `${name} reply: flags 0x${header.flags.toString(16)}, expected 0x5`,
      );
    }
    if (header.request !== request) {
      reject('reply-mismatch', `reply to ${requestName(header.request)} while waiting for ${name}`);
    }
    const body = REPLY_BODY.get(request) ?? 'u64';
    const size = PAYLOAD_SIZE[body];
    if (header.size !== size)
      reject('bad-size', `${name} reply: payload size ${header.size}, expected ${size}`);
    const wantFds = body === 'inflight-fd' ? 1 : 0;
    if (fds.length > wantFds)
      reject('unexpected-fds', `${name} reply: ${fds.length} fds, expected ${wantFds}`);
    if (fds.length < wantFds)
      reject('missing-fds', `${name} reply: ${fds.length} fds, expected ${wantFds}`);
    if (body === 'inflight-fd') {
      const maxVrings = options.maxVrings ?? VHOST_USER_DEFAULT_MAX_VRINGS;
      return readInflightArea(name, view, fds[0], maxVrings) as ReplyPayload<R>;
    }
    if (body === 'state') {
      const state = readState(view);
      checkVringIndex(name, state.index, options.maxVrings ?? VHOST_USER_DEFAULT_MAX_VRINGS);
      return state as ReplyPayload<R>;
    }
    return view.getBigUint64(0, LITTLE_ENDIAN) as ReplyPayload<R>;
  } catch (error) {
    closeFds(fds);
    throw error;
  }
}
