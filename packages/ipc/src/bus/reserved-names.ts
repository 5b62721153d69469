/**
 * Names that belong to the bus itself: every topic and RPC name whose first token is
 * `$vring`. The bus answers requests to them; clients may request and subscribe, but never
 * serve or publish on them (the bus disconnects one that does, the client refuses first).
 */
export const RESERVED_TOKEN = '$vring';

/** The RPC name the bus answers with its counters (a {@link BusReport}). */
export const STATS_NAME = '$vring.stats';

/** Whether `name` (a checked topic or RPC name) is reserved for the bus. */
export function isReserved(name: string): boolean {
  // One character compared first: a publish pays this on every message.
  return (
    name.charCodeAt(0) === 0x24 &&
    (name === RESERVED_TOKEN || name.startsWith(`${RESERVED_TOKEN}.`))
  );
}
