// How `vring pub`, `vring sub` and `vring req` read a value from the command line and
// print one: JSON where it parses, so `42`, `true` and `{"id":1}` mean what they say.

/** A VALUE argument: JSON when it parses as JSON, otherwise the text itself, as a string. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * A received msgpack value as one line of JSON. What JSON lacks is spelled out: bytes as
 * `{"$binary": base64}`, a bigint as its decimal string, `undefined` as null.
 */
export function formatValue(value: unknown): string {
  return (
    JSON.stringify(value, function (this: Record<string, unknown>, key, v: unknown) {
      // The holder's own property: a Buffer's toJSON has already run on `v`.
      const raw = this[key];
      if (raw instanceof Uint8Array) return { $binary: Buffer.from(raw).toString('base64') };
      if (typeof v === 'bigint') return v.toString();
      return v === undefined ? null : v;
    }) ?? 'null'
  );
}
