/**
 * A front-end's memory as a back-end sees it: the regions of one SET_MEM_TABLE, mapped into
 * this process, with the guest-physical addresses descriptors use and the userspace
 * addresses ring pointers use.
 *
 * @packageDocumentation
 */
import type { VringError } from '../errors.js';
import { SharedRegion } from '../shared-region.js';
import { protocolError } from './message-decoder.js';
import type { MemoryRegion, MemoryTable } from './message-layout.js';

/** One mapped region of a memory table. @internal */
export interface MappedRegion {
  readonly region: SharedRegion;
  /** Where the region starts in the front-end's guest-physical space (descriptor addresses). */
  readonly guestAddress: bigint;
  /** Where the region starts in the front-end's virtual address space (ring addresses). */
  readonly userAddress: bigint;
}

/**
 * Maps one region after checking it fits a number and (by fstat) its file: a region beyond
 * EOF, which DPDK accepts and later SIGBUSes on, is refused here. `what` names it in errors.
 */
function mapRegion(r: MemoryRegion, requireSeal: boolean, what: string): MappedRegion {
  // SharedRegion takes numbers; beyond 2^53 a region could not be mapped anyway.
  if (
    r.mmapOffset > BigInt(Number.MAX_SAFE_INTEGER) ||
    r.memorySize > BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    throw protocolError('region-overflow', `${what} is beyond 2^53`);
  }
  try {
    const region = SharedRegion.fromFd(r.fd, {
      offset: Number(r.mmapOffset),
      size: Number(r.memorySize),
      requireSeal,
    });
    return { region, guestAddress: r.guestPhysAddr, userAddress: r.userspaceAddr };
  } catch (error) {
    const e = error as VringError;
    throw protocolError(
      e.code === 'ERR_VRING_REGION_NOT_SEALED' ? 'region-not-sealed' : 'bad-region',
      `${what} cannot be mapped: ${e.message}`,
      error,
    );
  }
}

/**
 * The mapped regions of one memory table. The mappings hold their own duplicates of the
 * table's fds, and stay until {@link MappedMemory.close}: a replaced table is closed only
 * once the rings that pointed into it are stopped.
 * @internal
 */
export class MappedMemory {
  readonly regions: readonly MappedRegion[];

  private constructor(regions: readonly MappedRegion[]) {
    this.regions = regions;
  }

  /**
   * Maps every region of `table` or none. The table's fds stay the caller's.
   * @throws VringError `ERR_VRING_PROTOCOL` with reason `region-overflow` (beyond 2^53),
   * `region-not-sealed` (with `requireSeal`) or `bad-region` (cannot be mapped, e.g. beyond
   * the end of its file).
   */
  static map(table: MemoryTable, requireSeal: boolean): MappedMemory {
    const mapped: MappedRegion[] = [];
    try {
      for (const [i, r] of table.regions.entries()) {
        mapped.push(mapRegion(r, requireSeal, `SET_MEM_TABLE: region ${i}`));
      }
    } catch (error) {
      for (const m of mapped) m.region.close();
      throw error;
    }
    return new MappedMemory(mapped);
  }

  /**
   * These regions and one more (ADD_MEM_REG), mapped with the checks of
   * {@link MappedMemory.map}. The regions are shared with this instance, which the caller
   * drops without closing; the fd stays the caller's.
   */
  withRegion(region: MemoryRegion, requireSeal: boolean): MappedMemory {
    return new MappedMemory([...this.regions, mapRegion(region, requireSeal, 'ADD_MEM_REG')]);
  }

  /**
   * These regions without the one at `index` (REM_MEM_REG), which the caller closes once the
   * rings that may point into it are stopped; the rest are shared as in
   * {@link MappedMemory.withRegion}.
   */
  withoutRegion(index: number): MappedMemory {
    return new MappedMemory(this.regions.filter((_, i) => i !== index));
  }

  /** No regions yet: where ADD_MEM_REG starts when no table came first. */
  static empty(): MappedMemory {
    return new MappedMemory([]);
  }

  /**
   * Whether `address` (a front-end virtual address) lies in some region. Only where a ring
   * starts is checked here; the native device queue checks whole ranges.
   */
  contains(address: bigint): boolean {
    return this.regions.some(
      (r) => address >= r.userAddress && address < r.userAddress + BigInt(r.region.size),
    );
  }

  /**
   * The index field of the used ring at `used` (a front-end virtual address): where the
   * device stopped. Undefined when the ring's first four bytes are not inside one region.
   */
  usedIndex(used: bigint): number | undefined {
    for (const r of this.regions) {
      const size = BigInt(r.region.size);
      if (used >= r.userAddress && used + 4n <= r.userAddress + size) {
        const at = Number(used - r.userAddress);
        return r.region.read(at + 2, 2).readUInt16LE(0);
      }
    }
    return undefined;
  }

  /** Unmaps every region. */
  close(): void {
    for (const r of this.regions) r.region.close();
  }
}
