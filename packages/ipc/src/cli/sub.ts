// `vring sub`: prints the messages on a subject pattern as they come, as `nats sub` does.
import { defineCommand, stopSignal } from '@vring/core/cli';
import { connectFromCli, SOCKET_OPTION, WAIT_OPTION } from './bus-connection.js';
import { formatValue } from './value-text.js';

export const subCommand = defineCommand({
  name: 'sub',
  summary: 'print the messages published on a subject pattern',
  description:
    'Subscribes to PATTERN (* one token, a final > the rest) on the bus at PATH and prints ' +
    'each message as one line: its topic, a space, its value as JSON. Says on stderr when ' +
    'the subscription is in place. Exits 0 after --count messages, or on Ctrl-C (SIGINT) or ' +
    'SIGTERM; 1 when no bus answered (ERR_VRING_TIMEOUT). With --queue it joins that queue ' +
    'group and gets its share of the messages instead of all of them. It reconnects by ' +
    'itself when the bus restarts.',
  options: {
    socket: SOCKET_OPTION,
    queue: {
      type: 'string',
      value: 'NAME',
      description: 'join queue group NAME: each message goes to one member',
    },
    count: {
      type: 'integer',
      value: 'N',
      min: 1,
      description: 'exit after N messages',
    },
    wait: WAIT_OPTION,
  },
  arguments: [{ name: 'PATTERN', description: 'the topics to receive, e.g. orders.> or *.new' }],
  examples: [
    "vring sub --socket /tmp/bus.sock 'orders.>'",
    "vring sub --socket /tmp/bus.sock 'jobs.*' --queue workers --count 10",
  ],
  async run({ socket, queue, count, wait }, [pattern]) {
    const client = await connectFromCli(socket, wait);
    try {
      const subscription = client.subscribe(pattern!, queue === undefined ? {} : { queue });
      void stopSignal().then(() => subscription.unsubscribe());
      await client.flush();
      console.error(
        `vring sub: subscribed to ${pattern}${queue === undefined ? '' : ` in queue group ${queue}`}` +
          '; Ctrl-C or SIGTERM stops it',
      );
      let received = 0;
      for await (const { topic, value } of subscription) {
        console.log(`${topic} ${formatValue(value)}`);
        if (++received === count) break;
      }
    } finally {
      client.close();
    }
    return 0;
  },
});
