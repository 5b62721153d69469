/**
 * vhost-user message layout: the 12-byte header, the request ids, and the payload layouts of
 * every front-end request the DPDK 22.11 handshakes use (plus GET_QUEUE_NUM, GET/SET_STATUS,
 * GET_VRING_BASE and RESET_OWNER) and of their replies. The tables at the end say how big each
 * payload is and what it holds; the decoder and the encoder both derive from them, so the two
 * directions cannot disagree about a message.
 *
 * All numbers are host byte order (vhost-user spec, "Message Specification"), unlike the
 * rings, which are little-endian. 64-bit fields are bigint so no address bit is ever lost.
 *
 * @packageDocumentation
 */
import { endianness } from 'node:os';

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
 * subset the decoder and the encoder handle.
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

/** Whether the spec defines `request`, supported here or not. @internal */
export function isKnownRequest(request: number): boolean {
  return REQUEST_NAMES.has(request);
}

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

/**
 * Payload of REM_MEM_REG: the region to remove, named by its addresses and size
 * (`mmapOffset` is ignored). The spec wants no fd with it, but lets a back-end accept one
 * (older QEMU sends it), which is then closed unused.
 */
export interface MemoryRegionRemoval extends Omit<MemoryRegion, 'fd'> {
  /** An fd that came with the request anyway, or undefined. */
  readonly fd: number | undefined;
}

/** Payload of SET_MEM_TABLE: 1–8 regions, fds in the same order. */
export interface MemoryTable {
  /** The regions, in wire order. */
  readonly regions: readonly MemoryRegion[];
}

/**
 * Payload of GET_INFLIGHT_FD (request and reply) and SET_INFLIGHT_FD: where the in-flight
 * record lies in its file, and the queues it covers (docs/architecture.md#in-flight-recovery).
 */
export interface InflightArea {
  /** Bytes of the record (0 in a GET_INFLIGHT_FD request). */
  readonly mmapSize: bigint;
  /** Where the record starts in the fd (0 in a GET_INFLIGHT_FD request). */
  readonly mmapOffset: bigint;
  /** Queues the record covers, each one per-queue region. */
  readonly numQueues: number;
  /** Descriptors per queue the record is laid out for. */
  readonly queueSize: number;
  /** The record's memfd: in the GET_INFLIGHT_FD reply and SET_INFLIGHT_FD, else undefined. */
  readonly fd: number | undefined;
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
  [VhostUserRequest.GET_INFLIGHT_FD]: InflightArea;
  [VhostUserRequest.SET_INFLIGHT_FD]: InflightArea;
  [VhostUserRequest.GET_MAX_MEM_SLOTS]: undefined;
  [VhostUserRequest.ADD_MEM_REG]: MemoryRegion;
  [VhostUserRequest.REM_MEM_REG]: MemoryRegionRemoval;
}

/** The requests the decoder and the encoder handle. */
export type SupportedRequest = keyof RequestPayloads;

/** The explicit reply body of the requests that have one. */
export interface ReplyBodies {
  [VhostUserRequest.GET_FEATURES]: bigint;
  [VhostUserRequest.GET_PROTOCOL_FEATURES]: bigint;
  [VhostUserRequest.GET_QUEUE_NUM]: bigint;
  [VhostUserRequest.GET_VRING_BASE]: VringState;
  [VhostUserRequest.GET_STATUS]: bigint;
  [VhostUserRequest.GET_INFLIGHT_FD]: InflightArea;
  [VhostUserRequest.GET_MAX_MEM_SLOTS]: bigint;
}

/**
 * What a reply to `R` carries: its explicit body, or for every other request the u64
 * REPLY_ACK status (0 = success) that NEED_REPLY asked for.
 */
export type ReplyPayload<R extends SupportedRequest> = R extends keyof ReplyBodies
  ? ReplyBodies[R]
  : bigint;

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
 * What a request's payload looks like on the wire; the one table every check derives from.
 * @internal
 */
export type PayloadKind =
  | 'none'
  | 'u64'
  | 'state'
  | 'addr'
  | 'mem'
  | 'file'
  | 'inflight'
  | 'inflight-fd'
  | 'mem-region'
  | 'mem-region-rem';

/** The payload kind of each supported request. @internal */
export const REQUEST_PAYLOAD: ReadonlyMap<number, PayloadKind> = new Map<
  SupportedRequest,
  PayloadKind
>([
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
  // The same 24 bytes; SET carries the record's fd, the GET request none.
  [VhostUserRequest.GET_INFLIGHT_FD, 'inflight'],
  [VhostUserRequest.SET_INFLIGHT_FD, 'inflight-fd'],
  [VhostUserRequest.GET_MAX_MEM_SLOTS, 'none'],
  // u64 padding, then one region as in a memory table; ADD carries its fd, REM none (or one).
  [VhostUserRequest.ADD_MEM_REG, 'mem-region'],
  [VhostUserRequest.REM_MEM_REG, 'mem-region-rem'],
]);

/** The kind of each explicit reply body; every other reply is the REPLY_ACK u64. @internal */
export const REPLY_BODY: ReadonlyMap<number, 'u64' | 'state' | 'inflight-fd'> = new Map<
  SupportedRequest,
  'u64' | 'state' | 'inflight-fd'
>([
  [VhostUserRequest.GET_FEATURES, 'u64'],
  [VhostUserRequest.GET_PROTOCOL_FEATURES, 'u64'],
  [VhostUserRequest.GET_QUEUE_NUM, 'u64'],
  [VhostUserRequest.GET_VRING_BASE, 'state'],
  [VhostUserRequest.GET_STATUS, 'u64'],
  [VhostUserRequest.GET_INFLIGHT_FD, 'inflight-fd'],
  [VhostUserRequest.GET_MAX_MEM_SLOTS, 'u64'],
]);

/** Bytes of one memory-table region: four u64. @internal */
export const REGION_SIZE = 32;
/** Bytes of the memory table before its regions: u32 count, u32 padding. @internal */
export const MEMORY_TABLE_HEADER = 8;
/** Payload bytes of every fixed-size kind (a memory table's size follows its count). @internal */
export const PAYLOAD_SIZE: Record<Exclude<PayloadKind, 'mem'>, number> = {
  none: 0,
  u64: 8,
  state: 8,
  addr: 40,
  file: 8,
  // u64 mmap_size, u64 mmap_offset, u16 num_queues, u16 queue_size, 4 bytes of padding
  // (the C struct's size, which DPDK insists on).
  inflight: 24,
  'inflight-fd': 24,
  'mem-region': 40,
  'mem-region-rem': 40,
};
/** One past the largest u64. @internal */
export const U64_LIMIT = 1n << 64n;
/**
 * Whether the host is little-endian: every message field is in host byte order, so each
 * DataView access passes this.
 * @internal
 */
export const LITTLE_ENDIAN = endianness() === 'LE';

/** Whether `request` is one the tables describe. @internal */
export function isSupported(request: number): request is SupportedRequest {
  return REQUEST_PAYLOAD.has(request);
}

/** A DataView over exactly `bytes`. @internal */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
