/**
 * The copy of a borrowed body (a view valid only during a call, such as a message the bus
 * reads where its publisher wrote it) that messages waiting in send queues keep. A router
 * posts the same view to every receiver in one go: the receivers that must queue it share
 * one copy, instead of one copy each. Queued bodies are only read, so sharing is safe.
 *
 * A copy lives in a buffer of the pool below, which goes back to the pool once the last
 * queue keeping it has sent it (or failed): a fresh buffer per large message cost the bus
 * an allocation, page faults and garbage collection per message, far more than the copy.
 * @internal
 */
export class KeptCopy {
  /** Queues whose message still reads {@link KeptCopy.body}. */
  users = 0;

  constructor(
    /** The copied bytes. */
    readonly body: Buffer,
    /** The buffer of the pool the body lies in (undefined: a buffer of its own). */
    readonly pooled: Buffer | undefined,
  ) {}
}

/** Bodies from this size on are copied into pooled buffers; smaller ones are cheap to make. */
const POOLED_MIN = 8 * 1024;
/** Larger bodies get buffers of their own: pooling them would keep too much memory. */
const POOLED_MAX = 16 * 1024 * 1024;
/** Free bytes the pool keeps at most, all sizes together. */
const POOL_BYTES = 64 * 1024 * 1024;

/** Free buffers by size class (see {@link sizeClassOf}), and the bytes they hold together. */
const free = new Map<number, Buffer[]>();
let freeBytes = 0;

/** Sizes in steps of a quarter of a power of two: a buffer is at most 25 % larger than asked. */
function sizeClassOf(bytes: number): number {
  const step = 2 ** Math.floor(Math.log2(bytes)) / 4;
  return Math.ceil(bytes / step) * step;
}

function takeBuffer(bytes: number): Buffer | undefined {
  if (bytes < POOLED_MIN || bytes > POOLED_MAX) return undefined;
  const size = sizeClassOf(bytes);
  const buffer = free.get(size)?.pop();
  if (buffer) {
    freeBytes -= size;
    return buffer;
  }
  // Every byte a body uses is written before it is read: no zero-filling.
  return Buffer.allocUnsafeSlow(size);
}

/**
 * One queue is done with `copy` (its message was sent, or failed): the last one gives a
 * pooled buffer back.
 */
export function dropKept(copy: KeptCopy): void {
  if (--copy.users > 0 || !copy.pooled) return;
  const buffer = copy.pooled;
  if (freeBytes + buffer.length > POOL_BYTES) return;
  const list = free.get(buffer.length);
  if (list) list.push(buffer);
  else free.set(buffer.length, [buffer]);
  freeBytes += buffer.length;
}

/**
 * One entry, for the rest of the current turn: a router posts a message to all its receivers
 * synchronously, and the entry must not keep a large copy (or the view) alive after that.
 * The view of another message is another object, so the entry never answers for it.
 */
let lastView: Uint8Array | undefined;
let lastCopy: KeptCopy | undefined;

const RESOLVED = Promise.resolve();
const forget = (): void => {
  lastView = undefined;
  lastCopy = undefined;
};

/**
 * A copy of `view` for one more queue to keep, made once however many queues ask for it in
 * this turn. Each caller hands it back with {@link dropKept} when its message is done.
 */
export function keptCopyOf(view: Uint8Array): KeptCopy {
  if (view !== lastView || lastCopy === undefined) {
    if (lastView === undefined) RESOLVED.then(forget);
    const bytes = view.byteLength;
    const pooled = takeBuffer(bytes);
    // Every byte is written: no zero-filling first, which Buffer.from does for a large view.
    const body = pooled ? pooled.subarray(0, bytes) : Buffer.allocUnsafe(bytes);
    body.set(view);
    lastCopy = new KeptCopy(body, pooled);
    lastView = view;
  }
  lastCopy.users++;
  return lastCopy;
}
