// A plain-text table for a terminal: columns padded to their widest cell, text to the
// left and numbers to the right, as `ps` and `nats server list` print them.

/** Rows under `headers`, one line each, columns two spaces apart. */
export function textTable(
  headers: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number>>,
): string {
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => String(row[i] ?? '').length)),
  );
  // A column is numeric when every cell in it is a number (or a '-' for none).
  const numeric = headers.map((_, i) =>
    rows.every((row) => typeof row[i] === 'number' || row[i] === '-'),
  );
  const line = (cells: ReadonlyArray<string | number>) =>
    cells
      .map((cell, i) =>
        numeric[i] ? String(cell).padStart(widths[i]!) : String(cell).padEnd(widths[i]!),
      )
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
