import { VringError } from '@vring/core';

/** What an RPC error looks like on the wire: `{ code, message, data? }`. */
export interface WireError {
  code: string;
  message: string;
  data?: unknown;
}

/**
 * How a handler's failure travels: its `code` when it has a string one (a VringError, a
 * Node system error, an application error with a code), `ERR_VRING_REMOTE` otherwise.
 */
export function toWireError(error: unknown): WireError {
  const e = error as { code?: unknown; message?: unknown; data?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' && e.code.length > 0 ? e.code : 'ERR_VRING_REMOTE';
  const message = typeof e?.message === 'string' ? e.message : `handler failed: ${String(error)}`;
  return e?.data === undefined ? { code, message } : { code, message, data: e.data };
}

/** Rebuilds a remote failure as a VringError carrying the remote code. */
export function fromWireError(value: unknown): VringError {
  const w = value as Partial<WireError> | null;
  if (typeof w?.code !== 'string' || typeof w.message !== 'string') {
    return VringError.remote('ERR_VRING_REMOTE', 'the responder failed without a readable error');
  }
  return VringError.remote(w.code, w.message, { data: w.data });
}
