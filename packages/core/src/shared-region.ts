import { native } from './native.js';

interface NativeRegion {
  readonly fd: number;
  readonly size: number;
  readonly address: bigint;
  read(offset: number, length: number): Buffer;
  write(offset: number, data: Uint8Array): void;
  close(): void;
}

interface NativeRegionClass {
  create(size: number, name: string): NativeRegion;
  map(fd: number, offset: number, size: number, requireSeal: boolean): NativeRegion;
}

const NativeSharedRegion = native.SharedRegion as NativeRegionClass;

/** Options for {@link SharedRegion.fromFd}. @public */
export interface MapRegionOptions {
  /** Byte offset into the memfd where the region starts. Default 0. */
  offset?: number;
  /** Bytes to map; default: from `offset` to the end of the memfd. */
  size?: number;
  /**
   * Refuse a memfd that is not sealed against shrinking (default true). A region the peer
   * could shrink would turn its `ftruncate` into a SIGBUS in this process. Only turn this off
   * for peers that cannot seal (DPDK's own memory).
   */
  requireSeal?: boolean;
}

/**
 * A block of shared memory: an anonymous memfd, never named in `/dev/shm` or on disk,
 * shared with another process by passing its {@link SharedRegion.fd | fd} over a Unix
 * socket. Regions this library creates are fully allocated up front (a lack of memory fails
 * here, not as a SIGBUS later) and sealed so their size can never change.
 *
 * @public
 */
export class SharedRegion implements Disposable {
  /** @internal */
  readonly handle: NativeRegion;
  #closed = false;

  private constructor(handle: NativeRegion) {
    this.handle = handle;
  }

  /** Creates a region of at least `size` bytes (rounded up to the page size). */
  static create(size: number, options: { name?: string } = {}): SharedRegion {
    return new SharedRegion(NativeSharedRegion.create(size, options.name ?? 'vring'));
  }

  /**
   * Maps a memfd received from a peer. The range is checked against the file's real size
   * (and for overflow) before mapping. The fd is duplicated: the caller still owns `fd`.
   */
  static fromFd(fd: number, options: MapRegionOptions = {}): SharedRegion {
    return new SharedRegion(
      NativeSharedRegion.map(
        fd,
        options.offset ?? 0,
        options.size ?? 0,
        options.requireSeal ?? true,
      ),
    );
  }

  /** The memfd, to pass to a peer. Owned by the region: closed by {@link SharedRegion.close}. */
  get fd(): number {
    return this.handle.fd;
  }

  /** Mapped size in bytes. */
  get size(): number {
    return this.handle.size;
  }

  /** Where the region is mapped in this process (virtio-user uses it as the guest address). */
  get address(): bigint {
    return this.handle.address;
  }

  /** Copies `length` bytes out of the region. */
  read(offset: number, length: number): Buffer {
    return this.handle.read(offset, length);
  }

  /** Copies `data` into the region at `offset`. */
  write(offset: number, data: Uint8Array): void {
    this.handle.write(offset, data);
  }

  /** Whether {@link SharedRegion.close} has run: the mapping and fd are gone. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Closes the fd and releases this handle's mapping. Queue pairs built on the region keep
   * their own reference to the memory until they are closed. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.handle.close();
  }

  /** Same as {@link SharedRegion.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
