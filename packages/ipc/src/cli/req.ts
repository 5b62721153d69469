// `vring req`: one request to a service on a bus, its reply printed, as `nats req` does.
import type { VringError } from '@vring/core';
import { defineCommand } from '@vring/core/cli';
import { connectFromCli, SOCKET_OPTION, WAIT_OPTION } from './bus-connection.js';
import { formatValue, parseValue } from './value-text.js';

export const reqCommand = defineCommand({
  name: 'req',
  summary: 'send one request on a bus and print the reply',
  description:
    'Sends VALUE as a request to NAME (to one of the clients serving it) on the bus at PATH, ' +
    'prints the reply as one line of JSON and exits 0. VALUE is read as JSON when it parses, ' +
    "otherwise as a string (one that starts with '-' goes after --). On failure it prints the " +
    'error with its code and exits 1: ERR_VRING_NO_RESPONDERS, ERR_VRING_TIMEOUT, ' +
    "ERR_VRING_PEER_DISCONNECTED, or the handler's own code. Exits 2 for a bad command line.",
  options: {
    socket: SOCKET_OPTION,
    timeout: {
      type: 'integer',
      value: 'MS',
      default: 5000,
      min: 1,
      description: 'how long to wait for the reply, in ms',
    },
    wait: WAIT_OPTION,
  },
  arguments: [
    { name: 'NAME', description: 'the service name, e.g. math.add' },
    { name: 'VALUE', description: 'the request: JSON, or else a string' },
  ],
  examples: [
    "vring req --socket /tmp/bus.sock math.add '[2, 3]'",
    "vring req --socket /tmp/bus.sock --timeout 500 '$vring.stats' null",
  ],
  async run({ socket, timeout, wait }, [name, value]) {
    const client = await connectFromCli(socket, wait);
    try {
      console.log(formatValue(await client.request(name!, parseValue(value!), { timeout })));
      return 0;
    } catch (error) {
      // A handler's error is the outcome, not a mistake on the command line, whatever its code.
      const e = error as VringError;
      if (!e.remote) throw error;
      console.error(`vring req: ${e.message} [${e.code}]`);
      return 1;
    } finally {
      client.close();
    }
  },
});
