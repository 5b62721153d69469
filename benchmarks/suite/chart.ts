// The results as an SVG chart, built as a string (no browser, no native dependency): one-way
// throughput as times the `net` baseline per transport and size, and ping-pong latency
// (p50 and p99) per transport. Both axes are logarithmic: the figures span three decades.

import { sizeLabel } from './cases.js';
import { describeMachine, type Machine } from './machine.js';
import type { CaseResult } from './summary.js';

interface Series {
  name: string;
  color: string;
}

interface Group {
  label: string;
  values: Array<number | undefined>;
}

const WIDTH = 980;
const LABEL = 270;
const PLOT = WIDTH - LABEL - 90;
const BAR = 9;
const GAP = 10;
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1'];

const escapeXml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function fmt(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** A horizontal grouped bar panel on a log axis; returns its SVG and height. */
function panel(
  top: number,
  title: string,
  unit: string,
  series: Series[],
  groups: Group[],
  reference?: number,
): { svg: string; height: number } {
  const values = groups
    .flatMap((g) => g.values)
    .filter((v): v is number => v !== undefined && v > 0);
  if (values.length === 0) return { svg: '', height: 0 };
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values, reference ?? Infinity)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, reference ?? 0) * 1.01));
  const x = (v: number) => LABEL + (Math.log10(v / lo) / Math.log10(hi / lo)) * PLOT;
  const groupHeight = series.length * BAR + GAP;
  const plotTop = top + 48;
  const plotHeight = groups.length * groupHeight;
  const parts: string[] = [
    `<text x="16" y="${top + 18}" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  series.forEach((s, i) => {
    const lx = LABEL + i * 120;
    parts.push(
      `<rect x="${lx}" y="${top + 28}" width="10" height="10" fill="${s.color}"/>`,
      `<text x="${lx + 14}" y="${top + 37}" font-size="11">${escapeXml(s.name)}</text>`,
    );
  });
  for (let decade = lo; decade <= hi * 1.0001; decade *= 10) {
    const gx = x(decade);
    parts.push(
      `<line x1="${gx}" y1="${plotTop}" x2="${gx}" y2="${plotTop + plotHeight}" stroke="#ddd"/>`,
      `<text x="${gx}" y="${plotTop + plotHeight + 14}" font-size="10" text-anchor="middle">${fmt(decade)} ${unit}</text>`,
    );
  }
  if (reference !== undefined) {
    const rx = x(reference);
    parts.push(
      `<line x1="${rx}" y1="${plotTop - 4}" x2="${rx}" y2="${plotTop + plotHeight}" stroke="#333" stroke-dasharray="4 3"/>`,
    );
  }
  groups.forEach((g, gi) => {
    const gy = plotTop + gi * groupHeight;
    parts.push(
      `<text x="${LABEL - 8}" y="${gy + (series.length * BAR) / 2 + 4}" font-size="11" text-anchor="end">${escapeXml(g.label)}</text>`,
    );
    g.values.forEach((v, si) => {
      if (v === undefined || v <= 0) return;
      const y = gy + si * BAR;
      parts.push(
        `<rect x="${LABEL}" y="${y}" width="${Math.max(1, x(v) - LABEL)}" height="${BAR - 1}" fill="${series[si]!.color}"><title>${escapeXml(`${g.label}, ${series[si]!.name}: ${fmt(v)} ${unit}`)}</title></rect>`,
        `<text x="${x(v) + 3}" y="${y + BAR - 1}" font-size="8">${fmt(v)}</text>`,
      );
    });
  });
  return { svg: parts.join('\n'), height: 48 + plotHeight + 30 };
}

export function chart(results: CaseResult[], info: Machine, command: string): string {
  const ok = results.filter((r) => !r.unavailable && !r.error);
  const oneway = ok.filter((r) => r.case.scenario === 'oneway');
  const sizes = [...new Set(oneway.map((r) => r.case.size))].sort((a, b) => a - b);
  const transports = [...new Set(oneway.map((r) => r.case.transport))];
  const throughputGroups = transports.map((t) => {
    const rows = oneway.filter((r) => r.case.transport === t);
    return {
      label: rows[0]!.case.label,
      values: sizes.map((size) => {
        const r = rows.find((x) => x.case.size === size);
        if (!r) return undefined;
        return r.case.baseline ? r.ratios.msgs : 1;
      }),
    };
  });
  const pingpong = ok.filter((r) => r.case.scenario === 'pingpong');
  const latencySize = Math.min(...pingpong.map((r) => r.case.size));
  const latencyGroups = pingpong
    .filter((r) => r.case.size === latencySize)
    .map((r) => ({ label: r.case.label, values: [r.figures.p50?.median, r.figures.p99?.median] }));

  let y = 60;
  const body: string[] = [];
  const a = panel(
    y,
    'One-way throughput, × the net baseline of the same payload (raw or msgpack); higher is better',
    '×',
    sizes.map((s, i) => ({ name: sizeLabel(s), color: COLORS[i % COLORS.length]! })),
    throughputGroups,
    1,
  );
  body.push(a.svg);
  y += a.height + 20;
  if (latencyGroups.length > 0) {
    const b = panel(
      y,
      `Ping-pong round trip, ${sizeLabel(latencySize)}, µs; lower is better`,
      'µs',
      [
        { name: 'p50', color: COLORS[0]! },
        { name: 'p99', color: COLORS[3]! },
      ],
      latencyGroups,
    );
    body.push(b.svg);
    y += b.height + 10;
  }
  const header = [
    `<text x="16" y="24" font-size="17" font-weight="bold">vring benchmark: ${escapeXml(command)}</text>`,
    `<text x="16" y="44" font-size="11" fill="#555">${escapeXml(`${describeMachine(info)}, ${info.pinned ? 'peers pinned to cores 0 and 1' : 'peers not pinned'}, ${info.date}`)}</text>`,
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...header,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
