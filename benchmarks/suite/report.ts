// The results as tables: one per scenario, size and concurrency, rendered as aligned text
// for the terminal and as Markdown for the README.
import { type Case, sizeLabel } from './cases.js';
import { scenario } from './scenarios.js';
import type { CaseResult, Spread } from './summary.js';

export interface Table {
  title: string;
  header: string[];
  rows: string[][];
}

const fixed = (n: number, digits: number) =>
  n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Three significant figures, with k / M / G for large rates. */
export function formatNumber(n: number): string {
  if (n >= 1e9) return `${fixed(n / 1e9, 2)} G`;
  if (n >= 1e6) return `${fixed(n / 1e6, 2)} M`;
  if (n >= 1e4) return `${fixed(n / 1e3, 0)} k`;
  if (n >= 100) return fixed(n, 0);
  if (n >= 10) return fixed(n, 1);
  return fixed(n, 2);
}

function withSpread(s: Spread | undefined, runs: number): string {
  if (!s) return '–';
  if (runs < 2) return formatNumber(s.median);
  return `${formatNumber(s.median)} (${formatNumber(s.min)}–${formatNumber(s.max)})`;
}

function ratio(r: CaseResult, key: string): string {
  const v = r.ratios[key];
  if (v === undefined) return r.case.baseline ? '–' : 'baseline';
  return `${fixed(v, v >= 10 ? 0 : 2)}×`;
}

/** Each side's idle CPU %, the median of the runs. */
function idleBySide(r: CaseResult): string {
  const sides = [...new Set(r.runs.flatMap((run) => Object.keys((run.idle ?? {}) as object)))];
  if (sides.length === 0) return '–';
  return sides
    .sort()
    .map((side) => {
      const values = r.runs
        .map((run) => (run.idle as Record<string, number> | undefined)?.[side])
        .filter((v): v is number => v !== undefined)
        .sort((a, b) => a - b);
      return `${side} ${fixed(values[values.length >> 1]!, 2)}`;
    })
    .join(', ');
}

/** A fan-out's subscribers name themselves s1, s2, …; past three they share one entry. */
const subscriber = /^s(\d+)$/;
const MAX_SUBSCRIBERS_SHOWN = 3;

/**
 * "side value, side value", medians, sides in name order; `scale` multiplies each value.
 * More than three subscribers show as one entry, "s1–s30 Σ value" (`many: 'sum'`, for CPU
 * per delivery, whose shares add up) or "s1–s30 max value" (`'max'`, for GC shares).
 */
function bySide(
  values: Record<string, Spread>,
  keep: (side: string) => boolean,
  many: 'sum' | 'max',
  scale = 1,
) {
  const index = (side: string) => Number(subscriber.exec(side)?.[1] ?? 0);
  const sides = Object.entries(values)
    .filter(([side]) => keep(side))
    .sort(([a], [b]) => index(a) - index(b) || a.localeCompare(b));
  if (sides.length === 0) return '–';
  const subscribers = sides.filter(([side]) => subscriber.test(side));
  const shown =
    subscribers.length > MAX_SUBSCRIBERS_SHOWN
      ? sides.filter((s) => !subscribers.includes(s))
      : sides;
  const parts = shown.map(([side, s]) => `${side} ${formatNumber(s.median * scale)}`);
  if (shown !== sides) {
    const medians = subscribers.map(([, s]) => s.median * scale);
    const value = many === 'sum' ? medians.reduce((a, b) => a + b, 0) : Math.max(...medians);
    const range = `${subscribers[0]![0]}–${subscribers.at(-1)![0]}`;
    parts.push(`${range} ${many === 'sum' ? 'Σ' : 'max'} ${formatNumber(value)}`);
  }
  return parts.join(', ');
}

function groupTitle(c: Case): string {
  const spec = scenario(c.scenario);
  const parts = [spec.title];
  if (c.scenario !== 'idle') parts.push(sizeLabel(c.size));
  if (spec.concurrency.length > 1) parts.push(`concurrency ${c.concurrency}`);
  if (spec.subscribers) parts.push(`1 → ${c.subscribers}`);
  return parts.join(', ');
}

export function tables(results: CaseResult[]): Table[] {
  const out: Table[] = [];
  for (const r of results) {
    const title = groupTitle(r.case);
    let table = out.find((t) => t.title === title);
    const spec = scenario(r.case.scenario);
    const [head, ...rest] = spec.metrics;
    if (!table) {
      const header = [
        'transport',
        `${head!.label}${head!.unit === head!.label ? '' : ` ${head!.unit}`}`,
      ];
      for (const m of rest) header.push(`${m.label}${m.unit === m.label ? '' : ` ${m.unit}`}`);
      if (r.case.scenario !== 'idle') {
        header.push(r.case.scenario === 'pingpong' ? '× net p50 / p99' : '× net');
        if (spec.receivers) header.push('GC % receiving');
        header.push(r.case.scenario === 'pingpong' ? 'CPU µs per round trip' : 'CPU µs per msg');
      } else {
        header.push('CPU % by side');
      }
      table = { title, header, rows: [] };
      out.push(table);
    }
    const problem = r.unavailable
      ? `unavailable: ${r.unavailable}`
      : r.error
        ? `failed: ${r.error}`
        : undefined;
    if (problem) {
      table.rows.push([r.case.label, problem.split('\n')[0]!.slice(0, 120)]);
      continue;
    }
    const row = [r.case.label, withSpread(r.figures[head!.key], r.runs.length)];
    for (const m of rest) row.push(r.figures[m.key] ? formatNumber(r.figures[m.key]!.median) : '–');
    if (r.case.scenario === 'idle') {
      row.push(idleBySide(r));
    } else {
      row.push(
        r.case.scenario === 'pingpong'
          ? `${ratio(r, 'p50')} / ${ratio(r, 'p99')}`
          : ratio(r, head!.key),
      );
      if (spec.receivers) row.push(bySide(r.gcShare, spec.receivers, 'max', 100));
      row.push(bySide(r.cpuPerMessage, () => true, 'sum'));
    }
    table.rows.push(row);
  }
  return out;
}

export function renderText(all: Table[]): string {
  const lines: string[] = [];
  for (const t of all) {
    const widths = t.header.map((h, i) =>
      Math.max(
        h.length,
        ...t.rows.map((r) => (r.length === 2 && i === 1 ? 0 : (r[i] ?? '').length)),
      ),
    );
    lines.push('', t.title);
    const render = (cells: string[]) =>
      `  ${cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')}`;
    lines.push(render(t.header));
    for (const r of t.rows) lines.push(render(r));
  }
  return lines.join('\n');
}

/** Markdown tables laid out as the repository's formatter (Biome) lays them out. */
export function renderMarkdown(all: Table[]): string {
  const lines: string[] = [];
  for (const t of all) {
    const rows = t.rows.map((r) => [
      ...r,
      ...Array(Math.max(0, t.header.length - r.length)).fill(''),
    ]);
    const widths = t.header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) =>
      `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
    lines.push(`**${t.title}**`, '');
    lines.push(line(t.header), line(widths.map((w) => '-'.repeat(w))));
    for (const r of rows) lines.push(line(r));
    lines.push('');
  }
  return lines.join('\n');
}
