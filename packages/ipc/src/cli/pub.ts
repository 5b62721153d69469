// `vring pub`: publishes one message on a bus, as `nats pub` does.
import { defineCommand } from '@vring/core/cli';
import { connectFromCli, SOCKET_OPTION, WAIT_OPTION } from './bus-connection.js';
import { parseValue } from './value-text.js';

export const pubCommand = defineCommand({
  name: 'pub',
  summary: 'publish one message on a bus',
  description:
    'Publishes VALUE on SUBJECT on the bus at PATH and exits 0 once the bus has routed it ' +
    '(to every matching subscription then; at most once, as any publish). VALUE is read as ' +
    'JSON when it parses (42, true, {"id":1}), otherwise as a string; one that starts with ' +
    "'-' goes after --. Exits 1 when no bus answered (ERR_VRING_TIMEOUT), 2 for a bad " +
    'command line, a subject with wildcards or one reserved for the bus ($vring.…).',
  options: { socket: SOCKET_OPTION, wait: WAIT_OPTION },
  arguments: [
    { name: 'SUBJECT', description: 'the topic to publish on, e.g. orders.new' },
    { name: 'VALUE', description: 'the message: JSON, or else a string' },
  ],
  examples: [
    `vring pub --socket /tmp/bus.sock orders.new '{"id": 1, "total": 9.5}'`,
    'vring pub --socket /tmp/bus.sock -- temperature.room1 -3.5',
  ],
  async run({ socket, wait }, [subject, value]) {
    const client = await connectFromCli(socket, wait);
    try {
      await client.publish(subject!, parseValue(value!));
      await client.flush();
    } finally {
      client.close();
    }
    return 0;
  },
});
