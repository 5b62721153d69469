import { startsWithWholeMessage } from '../wire/frame-header.js';
import type { Reassembler } from '../wire/reassembler.js';

/**
 * Where a session with the peer begins among the frames a transport delivers. A transport
 * can outlive its peer (a front end that reconnects keeps its rings), so frames a previous
 * peer left behind, or the tail of a message it began, may come first. With a sync kind, a
 * session begins at the first frame that starts with a whole message of that kind, and the
 * frames before it are dropped (docs/wire-format.md, "Bus session"); without one, every
 * frame is taken.
 */
export class SessionStart {
  readonly #syncKind: number | undefined;
  readonly #reassembler: Reassembler;
  #synced: boolean;

  constructor(syncKind: number | undefined, reassembler: Reassembler) {
    this.#syncKind = syncKind;
    this.#reassembler = reassembler;
    this.#synced = syncKind === undefined;
  }

  /** The session has begun: frames are taken as they come. */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * Whether the frame `data[start, end)` begins the session (asked only while not synced).
   * From there on frames are taken, and fragments of the previous session are forgotten.
   */
  begins(data: Uint8Array, start: number, end: number): boolean {
    if (!startsWithWholeMessage(data, start, end, this.#syncKind!)) return false;
    this.#synced = true;
    this.#reassembler.clear();
    return true;
  }

  /** A new peer: messages in flight are forgotten, and frames dropped until it syncs. */
  restart(): void {
    if (this.#syncKind !== undefined) this.#synced = false;
    this.#reassembler.clear();
  }
}
