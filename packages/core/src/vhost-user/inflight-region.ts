/**
 * The in-flight record of a back-end (vhost-user INFLIGHT_SHMFD): a memfd the back-end makes
 * on GET_INFLIGHT_FD and the front-end keeps, hands back with SET_INFLIGHT_FD after the
 * back-end restarted, and the device queues write to as they take and return chains. This
 * module lays it out and checks what a front-end hands back; the per-descriptor bookkeeping
 * is the native device queue's (docs/architecture.md#in-flight-recovery).
 *
 * @packageDocumentation
 */
import type { VringError } from '../errors.js';
import { SharedRegion } from '../shared-region.js';
import { protocolError } from './message-decoder.js';
import type { InflightArea } from './message-layout.js';

/** Bytes of a split queue's record header: features u64, then four u16. */
const QUEUE_HEADER_BYTES = 16;
/** Bytes of one descriptor's state: inflight u8, 5 padding, next u16, counter u64. */
const DESC_STATE_BYTES = 16;
/** Each queue's record starts 64-byte aligned (as DPDK and libvhost-user lay it out). */
const QUEUE_ALIGN = 64;

/**
 * Bytes of one split queue's record for `queueSize` descriptors.
 * @internal
 */
export function inflightQueueBytes(queueSize: number): number {
  const raw = QUEUE_HEADER_BYTES + DESC_STATE_BYTES * queueSize;
  return Math.ceil(raw / QUEUE_ALIGN) * QUEUE_ALIGN;
}

/**
 * One mapped in-flight record: `numQueues` per-queue records of `queueSize` descriptors,
 * back to back from the start of {@link InflightRegion.region}.
 * @internal
 */
export class InflightRegion {
  readonly region: SharedRegion;
  readonly numQueues: number;
  readonly queueSize: number;

  private constructor(region: SharedRegion, numQueues: number, queueSize: number) {
    this.region = region;
    this.numQueues = numQueues;
    this.queueSize = queueSize;
  }

  /** Bytes the record covers (the mapping may be larger: it is page-rounded). */
  get size(): number {
    return this.numQueues * inflightQueueBytes(this.queueSize);
  }

  /**
   * A fresh, zeroed record for GET_INFLIGHT_FD (sealed against shrinking, like all our
   * memory). Every queue's record starts unused (version 0): the device initialises it.
   */
  static create(numQueues: number, queueSize: number): InflightRegion {
    return new InflightRegion(
      SharedRegion.create(numQueues * inflightQueueBytes(queueSize), { name: 'vring-inflight' }),
      numQueues,
      queueSize,
    );
  }

  /**
   * Maps the record SET_INFLIGHT_FD hands back, after checking that its size covers what
   * its queue count and size need, that it starts 64-byte aligned in its file, and
   * (by fstat) that the file holds all of it. The fd stays the caller's.
   * @throws VringError `ERR_VRING_PROTOCOL` with reason `bad-inflight-area` (size or
   * offset), `region-not-sealed` (with `requireSeal`) or `bad-region` (beyond the file).
   */
  static adopt(area: InflightArea, requireSeal: boolean): InflightRegion {
    const want = area.numQueues * inflightQueueBytes(area.queueSize);
    if (area.mmapSize < BigInt(want)) {
      throw protocolError(
        'bad-inflight-area',
        `SET_INFLIGHT_FD: mmap_size ${area.mmapSize}, ${area.numQueues} queues of ` +
          `${area.queueSize} need ${want}`,
      );
    }
    // Each queue's counters are u64s accessed atomically: they must be naturally aligned.
    if (area.mmapOffset % BigInt(QUEUE_ALIGN) !== 0n) {
      throw protocolError(
        'bad-inflight-area',
        `SET_INFLIGHT_FD: mmap_offset ${area.mmapOffset} is not ${QUEUE_ALIGN}-byte aligned`,
      );
    }
    if (area.mmapOffset > BigInt(Number.MAX_SAFE_INTEGER) || area.fd === undefined) {
      throw protocolError('bad-inflight-area', 'SET_INFLIGHT_FD: mmap_offset beyond 2^53');
    }
    try {
      const region = SharedRegion.fromFd(area.fd, {
        offset: Number(area.mmapOffset),
        size: want,
        requireSeal,
      });
      return new InflightRegion(region, area.numQueues, area.queueSize);
    } catch (error) {
      const e = error as VringError;
      throw protocolError(
        e.code === 'ERR_VRING_REGION_NOT_SEALED' ? 'region-not-sealed' : 'bad-region',
        `SET_INFLIGHT_FD: the record cannot be mapped: ${e.message}`,
        error,
      );
    }
  }

  /** Where queue `index`'s record starts in {@link InflightRegion.region}. */
  queueOffset(index: number): number {
    return index * inflightQueueBytes(this.queueSize);
  }

  /** What GET_INFLIGHT_FD answers: the whole record from offset 0, with its fd. */
  area(): InflightArea {
    return {
      mmapSize: BigInt(this.size),
      mmapOffset: 0n,
      numQueues: this.numQueues,
      queueSize: this.queueSize,
      fd: this.region.fd,
    };
  }

  /** Unmaps the record and closes its fd. */
  close(): void {
    this.region.close();
  }
}
