/**
 * vhost-user control messages: the 12-byte header, the payload layouts of every front-end
 * request the DPDK 22.11 handshakes use (plus GET_QUEUE_NUM, GET/SET_STATUS, GET_VRING_BASE
 * and RESET_OWNER), and their replies. Encoding is for the side that sends (our front-end's
 * requests, our back-end's replies); decoding is for the side that receives, and it validates
 * everything a message can be checked for on its own — size exact for the request, version
 * and reserved flag bits, fd count exact, indices and ring sizes in range, memory-table
 * arithmetic without overflow — before returning anything a state machine could act on.
 * Checks that need connection state (ring addresses before SET_MEM_TABLE, features not
 * offered, region larger than its file) belong to the state machines.
 *
 * All numbers are host byte order (vhost-user spec, "Message Specification"), unlike the
 * rings, which are little-endian. 64-bit fields are bigint so no address bit is ever lost.
 *
 * @packageDocumentation
 */
import { closeSync } from 'node:fs';
import { endianness } from 'node:os';
import { VringError } from '../errors.js';

/** Bytes in a message header: u32 request, u32 flags, u32 size. */
export const VHOST_USER_HEADER_SIZE = 12;
/** The only protocol version; lives in flag bits 0–1. */
export const VHOST_USER_VERSION = 0x1;
/** Flag bits 0–1: the version field. */
export const VHOST_USER_VERSION_MASK = 0x3;
/** Flag bit 2: set on every reply. */
export const VHOST_USER_FLAG_REPLY = 0x4;
/** Flag bit 3: the front-end asks for a u64 ack (only with PROTOCOL_F_REPLY_ACK). */
export const VHOST_USER_FLAG_NEED_REPLY = 0x8;
/**
 * The largest `size` a header may announce. Our largest payload is 264 bytes (a full memory
 * table); the bound is rust-vmm's 4 KiB so an unknown request's payload can still be skipped
 * and NACKed, while a hostile 64 KiB or 4 GiB size is refused before any buffer is sized by it.
 */
export const VHOST_USER_MAX_PAYLOAD_SIZE = 0x1000;
/** At most 8 fds travel with one message (DPDK's control buffer holds 8; more are cut). */
export const VHOST_USER_MAX_FDS = 8;
/** At most 8 regions in SET_MEM_TABLE (`VHOST_MEMORY_BASELINE_NREGIONS`). */
export const VHOST_USER_MAX_MEMORY_REGIONS = 8;
/** Default bound on vring indices: DPDK's `VHOST_MAX_VRING` (128 queue pairs). */
export const VHOST_USER_DEFAULT_MAX_VRINGS = 256;
/** Largest queue size virtio allows (2^15) for split and packed rings. */
export const VIRTQUEUE_MAX_SIZE = 32768;
/** SET_VRING_KICK/CALL/ERR payload bits 0–7: the vring index. */
export const VHOST_USER_VRING_INDEX_MASK = 0xffn;
/** SET_VRING_KICK/CALL/ERR payload bit 8: no fd follows; the ring is polled instead. */
export const VHOST_USER_VRING_NOFD_MASK = 0x100n;
/** SET_VRING_ADDR flags bit 0: log used-ring writes to `log` (dirty logging). */
export const VHOST_VRING_F_LOG = 0x1;

/**
 * Front-end → back-end request ids (vhost-user spec, "Front-end message types"). Every id is
 * named so logs can say what an unsupported request was; {@link SupportedRequest} is the
 * subset this module encodes and decodes.
 */
export const VhostUserRequest = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_BACKEND_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
  GET_SHARED_OBJECT: 41,
  SET_DEVICE_STATE_FD: 42,
  CHECK_DEVICE_STATE: 43,
} as const;

/** Any front-end request id the spec defines. */
export type VhostUserRequest = (typeof VhostUserRequest)[keyof typeof VhostUserRequest];

const REQUEST_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(VhostUserRequest).map(([name, id]) => [id, name]),
);

/** The name of a request id for logs and errors (`REQUEST_99` for ids the spec lacks). */
export function requestName(request: number): string {
  return REQUEST_NAMES.get(request) ?? `REQUEST_${request}`;
}

/** Payload of SET/GET_VRING_BASE, SET_VRING_NUM, SET_VRING_ENABLE: a ring and a number. */
export interface VringState {
  /** The vring (queue) index. */
  readonly index: number;
  /** Ring size, base index (split: bits 0–15) or enable flag, depending on the request. */
  readonly num: number;
}

/**
 * Payload of SET_VRING_ADDR. All addresses are in the front-end's *userspace* address space
 * (the `userspaceAddr` column of the memory table), not guest-physical. Wire order is desc,
 * used, avail — not the order one would guess.
 */
export interface VringAddress {
  /** The vring index. */
  readonly index: number;
  /** Bit 0 = {@link VHOST_VRING_F_LOG}; every other bit is reserved. */
  readonly flags: number;
  /** Descriptor table (split) or descriptor ring (packed). */
  readonly descUser: bigint;
  /** Used ring (split) or device event-suppression area (packed). */
  readonly usedUser: bigint;
  /** Available ring (split) or driver event-suppression area (packed). */
  readonly availUser: bigint;
  /** Guest-physical address of the used ring for dirty logging (0 when not logging). */
  readonly log: bigint;
}

/** Payload of SET_VRING_KICK/CALL/ERR: a ring and its eventfd, or none (polling). */
export interface VringFile {
  /** The vring index (0–255: it shares a u64 with the NOFD bit). */
  readonly index: number;
  /** The eventfd, or `undefined` when the NOFD bit says the ring is polled. */
  readonly fd: number | undefined;
}

/** One region of a memory table with the fd that backs it. */
export interface MemoryRegion {
  /** Start in the guest-physical space (the addresses descriptors carry). */
  readonly guestPhysAddr: bigint;
  /** Length in bytes; never 0. */
  readonly memorySize: bigint;
  /** Start in the front-end's userspace space (the addresses SET_VRING_ADDR carries). */
  readonly userspaceAddr: bigint;
  /** Where the region starts inside the fd. */
  readonly mmapOffset: bigint;
  /** The file (usually a memfd) to map. */
  readonly fd: number;
}

/** Payload of SET_MEM_TABLE: 1–8 regions, fds in the same order. */
export interface MemoryTable {
  /** The regions, in wire order. */
  readonly regions: readonly MemoryRegion[];
}

/** The payload each supported request carries (`undefined` = none). */
export interface RequestPayloads {
  [VhostUserRequest.GET_FEATURES]: undefined;
  [VhostUserRequest.SET_FEATURES]: bigint;
  [VhostUserRequest.SET_OWNER]: undefined;
  [VhostUserRequest.RESET_OWNER]: undefined;
  [VhostUserRequest.SET_MEM_TABLE]: MemoryTable;
  [VhostUserRequest.SET_VRING_NUM]: VringState;
  [VhostUserRequest.SET_VRING_ADDR]: VringAddress;
  [VhostUserRequest.SET_VRING_BASE]: VringState;
  [VhostUserRequest.GET_VRING_BASE]: VringState;
  [VhostUserRequest.SET_VRING_KICK]: VringFile;
  [VhostUserRequest.SET_VRING_CALL]: VringFile;
  [VhostUserRequest.SET_VRING_ERR]: VringFile;
  [VhostUserRequest.GET_PROTOCOL_FEATURES]: undefined;
  [VhostUserRequest.SET_PROTOCOL_FEATURES]: bigint;
  [VhostUserRequest.GET_QUEUE_NUM]: undefined;
  [VhostUserRequest.SET_VRING_ENABLE]: VringState;
  [VhostUserRequest.SET_STATUS]: bigint;
  [VhostUserRequest.GET_STATUS]: undefined;
}

/** The requests this module encodes and decodes. */
export type SupportedRequest = keyof RequestPayloads;

/** The explicit reply body of the requests that have one. */
export interface ReplyBodies {
  [VhostUserRequest.GET_FEATURES]: bigint;
  [VhostUserRequest.GET_PROTOCOL_FEATURES]: bigint;
  [VhostUserRequest.GET_QUEUE_NUM]: bigint;
  [VhostUserRequest.GET_VRING_BASE]: VringState;
  [VhostUserRequest.GET_STATUS]: bigint;
}

/**
 * What a reply to `R` carries: its explicit body, or for every other request the u64
 * REPLY_ACK status (0 = success) that NEED_REPLY asked for.
 */
export type ReplyPayload<R extends SupportedRequest> = R extends keyof ReplyBodies
  ? ReplyBodies[R]
  : bigint;

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

/** A decoded 12-byte header. */
export interface VhostUserHeader {
  /** Request id. */
  readonly request: number;
  /** Flags word. */
  readonly flags: number;
  /** Payload bytes that follow. */
  readonly size: number;
}

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
  | 'overlapping-regions';

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

// What a request's payload looks like on the wire; the one table every check derives from.
type PayloadKind = 'none' | 'u64' | 'state' | 'addr' | 'mem' | 'file';

const REQUEST_PAYLOAD: ReadonlyMap<number, PayloadKind> = new Map<SupportedRequest, PayloadKind>([
  [VhostUserRequest.GET_FEATURES, 'none'],
  [VhostUserRequest.SET_FEATURES, 'u64'],
  [VhostUserRequest.SET_OWNER, 'none'],
  [VhostUserRequest.RESET_OWNER, 'none'],
  [VhostUserRequest.SET_MEM_TABLE, 'mem'],
  [VhostUserRequest.SET_VRING_NUM, 'state'],
  [VhostUserRequest.SET_VRING_ADDR, 'addr'],
  [VhostUserRequest.SET_VRING_BASE, 'state'],
  [VhostUserRequest.GET_VRING_BASE, 'state'],
  [VhostUserRequest.SET_VRING_KICK, 'file'],
  [VhostUserRequest.SET_VRING_CALL, 'file'],
  [VhostUserRequest.SET_VRING_ERR, 'file'],
  [VhostUserRequest.GET_PROTOCOL_FEATURES, 'none'],
  [VhostUserRequest.SET_PROTOCOL_FEATURES, 'u64'],
  [VhostUserRequest.GET_QUEUE_NUM, 'none'],
  [VhostUserRequest.SET_VRING_ENABLE, 'state'],
  [VhostUserRequest.SET_STATUS, 'u64'],
  [VhostUserRequest.GET_STATUS, 'none'],
]);

const REPLY_BODY: ReadonlyMap<number, 'u64' | 'state'> = new Map<SupportedRequest, 'u64' | 'state'>(
  [
    [VhostUserRequest.GET_FEATURES, 'u64'],
    [VhostUserRequest.GET_PROTOCOL_FEATURES, 'u64'],
    [VhostUserRequest.GET_QUEUE_NUM, 'u64'],
    [VhostUserRequest.GET_VRING_BASE, 'state'],
    [VhostUserRequest.GET_STATUS, 'u64'],
  ],
);

const REGION_SIZE = 32;
const MEMORY_TABLE_HEADER = 8;
const PAYLOAD_SIZE: Record<Exclude<PayloadKind, 'mem'>, number> = {
  none: 0,
  u64: 8,
  state: 8,
  addr: 40,
  file: 8,
};
const U64_LIMIT = 1n << 64n;
// mmap offsets are a signed off_t: an end beyond 2^63 cannot be mapped, and capping it here
// also keeps "round the end up to the page/hugepage size" from wrapping to a tiny mapping
// (DPDK c6420a3632 "catch overflow causing mmap of size 0").
const MMAP_END_LIMIT = 1n << 63n;
const KNOWN_FLAGS = VHOST_USER_VERSION_MASK | VHOST_USER_FLAG_REPLY | VHOST_USER_FLAG_NEED_REPLY;
const VRING_FILE_RESERVED = ~(VHOST_USER_VRING_INDEX_MASK | VHOST_USER_VRING_NOFD_MASK);
const LITTLE_ENDIAN = endianness() === 'LE';

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

function isSupported(request: number): request is SupportedRequest {
  return REQUEST_PAYLOAD.has(request);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
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

function readMemoryTable(name: string, view: DataView, fds: readonly number[]): MemoryTable {
  const count = view.getUint32(0, LITTLE_ENDIAN);
  const regions: MemoryRegion[] = [];
  for (let i = 0; i < count; i++) {
    const at = MEMORY_TABLE_HEADER + REGION_SIZE * i;
    const region: MemoryRegion = {
      guestPhysAddr: view.getBigUint64(at, LITTLE_ENDIAN),
      memorySize: view.getBigUint64(at + 8, LITTLE_ENDIAN),
      userspaceAddr: view.getBigUint64(at + 16, LITTLE_ENDIAN),
      mmapOffset: view.getBigUint64(at + 24, LITTLE_ENDIAN),
      fd: fds[i] ?? -1,
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
    // Overlaps make address translation ambiguous: a descriptor (GPA) or ring (UVA) address
    // would resolve to two different mappings depending on lookup order.
    for (const [j, other] of regions.entries()) {
      if (
        overlaps(region.guestPhysAddr, region.memorySize, other.guestPhysAddr, other.memorySize) ||
        overlaps(region.userspaceAddr, region.memorySize, other.userspaceAddr, other.memorySize)
      ) {
        reject('overlapping-regions', `${name}: regions ${j} and ${i} overlap`);
      }
    }
    regions.push(region);
  }
  return { regions };
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
  }
}

function parseRequest(
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
    if (REQUEST_NAMES.has(request)) reject('unsupported-request', `${name} is not supported`);
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
  const wantFds = fdCountFor(kind, view);
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
    if (header.size !== 8)
      reject('bad-size', `${name} reply: payload size ${header.size}, expected 8`);
    if (fds.length > 0) reject('unexpected-fds', `${name} reply: ${fds.length} fds, expected 0`);
    if (REPLY_BODY.get(request) === 'state') {
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

// DataView setters wrap out-of-range values silently (-1 becomes 0xffffffff); an encoder
// must refuse them instead, or it would send a different message than the caller asked for.
function u32(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new VringError('ERR_VRING_INVALID_ARGUMENT', `${field} ${value} is not a u32`);
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
        const o = at + MEMORY_TABLE_HEADER + REGION_SIZE * i;
        view.setBigUint64(o, u64(r.guestPhysAddr, 'guestPhysAddr'), LITTLE_ENDIAN);
        view.setBigUint64(o + 8, u64(r.memorySize, 'memorySize'), LITTLE_ENDIAN);
        view.setBigUint64(o + 16, u64(r.userspaceAddr, 'userspaceAddr'), LITTLE_ENDIAN);
        view.setBigUint64(o + 24, u64(r.mmapOffset, 'mmapOffset'), LITTLE_ENDIAN);
      }
      return regions.map((r) => r.fd);
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
  const frame = Buffer.alloc(VHOST_USER_HEADER_SIZE + 8);
  const view = viewOf(frame);
  writeHeader(view, request, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY, 8);
  writePayload(view, REPLY_BODY.get(request) ?? 'u64', payload);
  return frame;
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
