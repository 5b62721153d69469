import type { NotificationMode } from './endpoint-options.js';
import type { VringError } from './errors.js';
import type { InPlaceBatch } from './in-place-batch.js';
import type { MessageBatch } from './message-batch.js';
import type { WaitOptions, WaitSendableOptions } from './queue-pair-end.js';

/**
 * A port: one end of a connection that carries whole frames (up to {@link maxMessage}
 * bytes each) in both directions, in batches. Every transport vring runs messages over
 * implements it: either end of a queue pair, a `VirtioUser` (the virtio-user front end), a
 * `VhostUserPort` (one front end attached to a `VhostUserBackend`), and the bus's in-memory
 * connection to a client in its own process. `@vring/ipc`'s Channel and Bus run over any
 * of them.
 *
 * A port is lossless and ordered: a frame it accepted is delivered once, in order, unless
 * the port fails, and then `closed` says why.
 */
export interface FramePort {
  /** Largest frame this port carries, in bytes. */
  readonly maxMessage: number;
  /** Resolves when the port is closed: with the error that ended it, or undefined after `close()`. */
  readonly closed: Promise<VringError | undefined>;
  /** How this port waits for its peer, and so how long a reader should poll before it sleeps. */
  readonly notification: NotificationMode;
  /**
   * The peer runs in this thread (a bus hosted by this process): it reads in a later
   * microtask anyway, so a frame gains nothing by going out before the rest of its turn.
   */
  readonly peerInThread: boolean;
  /**
   * Taking frames without waiting, when this port offers it: a reader may then poll (in
   * `adaptive` and `poll` mode) instead of awaiting {@link receive}. Undefined when the only
   * way to read is to wait: a port whose peer runs in this thread is filled synchronously
   * by sends of that thread, so polling it can only find what a wait would.
   */
  readonly polling: FramePolling | undefined;
  /**
   * Reading frames where they lie in shared memory, and writing them where the peer will
   * read them, when this port offers it (undefined otherwise).
   */
  readonly lending: FrameLending | undefined;
  /**
   * Puts frames `start..` of `batch` into the ring without waiting; returns how many went.
   * The rest did not fit: try again after {@link waitSendable}.
   */
  trySend(batch: MessageBatch, start?: number): number;
  /** Resolves once the ring may have room again (for a frame of `bytes`, when given). */
  waitSendable(options?: WaitSendableOptions): Promise<void>;
  /** Sends every frame of `batch`, waiting for room as needed. */
  sendBatch(batch: MessageBatch, options?: WaitOptions): Promise<void>;
  /** Waits until at least one frame has arrived, and fills `batch` with what is there. */
  receive(batch: MessageBatch, options?: WaitOptions): Promise<MessageBatch>;
  /** Let pending waits keep the process alive. */
  ref(): unknown;
  /** Let the process exit while waits are pending. */
  unref(): unknown;
  /** Releases the port; pending waits reject with `ERR_VRING_CLOSED`. Idempotent. */
  close(): void;
}

/** The polling capability of a {@link FramePort}. */
export interface FramePolling {
  /**
   * The longest a reader should poll before it sleeps, in µs, in `adaptive` mode (the
   * port's `spinMicros` option).
   */
  readonly spinMicros: number;
  /**
   * Takes what has arrived into `batch` without waiting or spinning; returns the number of
   * frames. A queue-pair end finds an empty ring with a bare native check (no buffers
   * marshalled), so a poll may call this often.
   */
  tryReceive(batch: MessageBatch): number;
  /** Resolves once something has arrived (sleeping on the eventfd; never spins). */
  waitReceivable(options?: WaitOptions): Promise<void>;
}

/**
 * The zero-copy capability of a {@link FramePort}: a large frame is read where the peer
 * wrote it and written where the peer will read it, instead of being copied through a
 * batch on each side.
 */
export interface FrameLending {
  /** Frames of at least this many bytes are read in place; smaller ones are copied. */
  readonly inPlaceMin: number;
  /**
   * Takes what has arrived into `batch` without waiting, like {@link FramePolling.tryReceive}.
   * Frames read in place stay held (the peer cannot reuse their memory) until
   * {@link FrameLending.release}; release them before waiting for more.
   */
  tryReceiveInPlace(batch: InPlaceBatch): number;
  /** Gives back the oldest `count` frames held. */
  release(count: number): void;
  /**
   * Whether this end writes frames in place ({@link FrameLending.reserve} can return room):
   * a driver end does; a device end writes into the buffers its driver posted, so it
   * never does.
   */
  readonly writesInPlace: boolean;
  /**
   * Room to write the next frame into, as large as is contiguous now and at least
   * `minBytes`, or undefined when there is none yet (or this end cannot write in place).
   * Valid until the next send, reserve or commit.
   */
  reserve(minBytes: number): Buffer | undefined;
  /** Sends the first `bytes` bytes written into the reserved room as one frame. */
  commit(bytes: number): void;
  /**
   * Sends one frame made of `head` followed by `body` without waiting, each copied once
   * straight into the memory the peer reads: for forwarding a frame read in place behind a
   * header of one's own, with no batch in between. False when there is no room for it now.
   * @throws VringError `ERR_VRING_OVERSIZED_MESSAGE` (nothing sent) beyond `maxMessage`.
   */
  trySendJoined(head: Uint8Array, body: Uint8Array): boolean;
}
