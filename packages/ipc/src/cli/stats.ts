// `vring stats`: a bus's counters, read through the bus itself ($vring.stats).
import { defineCommand } from '@vring/core/cli';
import type { BusReport } from '../bus/bus-stats.js';
import { connectFromCli, SOCKET_OPTION, WAIT_OPTION } from './bus-connection.js';
import { textTable } from './text-table.js';

export const statsCommand = defineCommand({
  name: 'stats',
  summary: "print a bus's counters, per client and per subject",
  description:
    'Asks the bus at PATH for its counters (a request to $vring.stats, which the bus answers ' +
    'itself) and prints them: the totals, one row per client attached now (this one ' +
    "included) and one per subject published to. RINGS is the format of the client's " +
    'rings: split, or packed for one that asked (connectBus packed: true). SLOW counts ' +
    'slow-consumer events: times the ' +
    "bus found a client's queue full, once until it drains to half. Exits 0, or 1 when no " +
    'bus answered (ERR_VRING_TIMEOUT) or it is too old to count (ERR_VRING_FEATURE_MISMATCH).',
  options: {
    socket: SOCKET_OPTION,
    json: { type: 'boolean', description: 'print the report as one line of JSON' },
    wait: WAIT_OPTION,
  },
  examples: [
    'vring stats --socket /tmp/bus.sock',
    "vring stats --socket /tmp/bus.sock --json | jq '.clients[] | select(.dropped > 0)'",
  ],
  async run({ socket, json, wait }) {
    const client = await connectFromCli(socket, wait);
    try {
      const report = await client.busReport({ timeout: wait });
      console.log(json ? JSON.stringify(report) : formatReport(socket, report));
    } finally {
      client.close();
    }
    return 0;
  },
});

function formatReport(socket: string, report: BusReport): string {
  const t = report.totals;
  const totals =
    `bus ${socket}: clients ${t.clients}, subscriptions ${t.subscriptions}, ` +
    `published ${t.published}, delivered ${t.delivered}, dropped ${t.dropped}, ` +
    `requests ${t.requests}, rejected ${t.rejected}, refused ${t.refused}`;
  const clients = textTable(
    [
      'CLIENT',
      'PID',
      'UID',
      'RINGS',
      'QUEUED',
      'PUBLISHED',
      'DELIVERED',
      'DROPPED',
      'SLOW',
      'REQ SENT',
      'REQ SERVED',
    ],
    report.clients.map((c) => [
      c.id,
      c.pid ?? '-',
      c.uid ?? '-',
      c.rings ?? '-',
      c.queued,
      c.published,
      c.delivered,
      c.dropped,
      c.slowConsumer,
      c.requestsSent,
      c.requestsServed,
    ]),
  );
  const other = report.otherSubjects;
  const subjectRows: Array<Array<string | number>> = report.subjects.map((s) => [
    s.subject,
    s.published,
    s.delivered,
    s.dropped,
  ]);
  if (other.published > 0) {
    subjectRows.push(['(others)', other.published, other.delivered, other.dropped]);
  }
  const subjects =
    subjectRows.length > 0
      ? textTable(['SUBJECT', 'PUBLISHED', 'DELIVERED', 'DROPPED'], subjectRows)
      : 'no subject published to yet';
  return [totals, '', clients, '', subjects].join('\n');
}
