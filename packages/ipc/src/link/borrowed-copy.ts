/**
 * The copy of a borrowed body (a view valid only during a call, such as a message the bus
 * reads where its publisher wrote it) that messages waiting in send queues keep. A router
 * posts the same view to every receiver in one go: the receivers that must queue it share
 * one copy, instead of one copy each. Queued bodies are only read, so sharing is safe.
 *
 * One entry, for the rest of the current turn: a router posts a message to all its receivers
 * synchronously, and the entry must not keep a large copy (or the view) alive after that.
 * The view of another message is another object, so the entry never answers for it.
 * @internal
 */
let lastView: Uint8Array | undefined;
let lastCopy: Buffer | undefined;

const RESOLVED = Promise.resolve();
const forget = (): void => {
  lastView = undefined;
  lastCopy = undefined;
};

/** A copy of `view` to keep, made once however many queues ask for it in this turn. */
export function keptCopyOf(view: Uint8Array): Buffer {
  if (view !== lastView || lastCopy === undefined) {
    if (lastView === undefined) RESOLVED.then(forget);
    // Every byte is written: no zero-filling first, which Buffer.from does for a large view.
    lastCopy = Buffer.allocUnsafe(view.byteLength);
    lastCopy.set(view);
    lastView = view;
  }
  return lastCopy;
}
