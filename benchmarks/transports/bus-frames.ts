// The frame size every vring bus of a case uses, hosted or standalone, and its clients: one
// rule, so that both topologies carry a value of the case's size the same way.

/**
 * Frames for messages of `size`: large enough that a large value is one frame (written,
 * forwarded and read in place, like the Channel's rows), the client's default below 8 KiB.
 */
export const busMaxFrame = (size: number): number => (size < 8 * 1024 ? 9216 : size + 256);
