/**
 * @vring/ipc: msgpack messages, pub/sub and RPC between Node.js processes over vring.
 *
 * Empty until the IPC layer lands (Channel, Bus, RPC); the package exists now so the
 * workspace, its build and its dependency on @vring/core are in place.
 *
 * @packageDocumentation
 */
export {};
