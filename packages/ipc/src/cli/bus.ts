// `vring bus`: a bus hosted from a shell, for @vring/ipc clients in other processes.
import type { NotificationMode } from '@vring/core';
import {
  defineCommand,
  LISTEN_ACCESS_OPTIONS,
  listenAccessFrom,
  PEER_LIMIT_OPTIONS,
  peerLimitsFrom,
  stopSignal,
} from '@vring/core/cli';
import { createBus } from '../bus/bus.js';

const NOTIFICATION_MODES = [
  'event',
  'adaptive',
  'poll',
] as const satisfies readonly NotificationMode[];

export const busCommand = defineCommand({
  name: 'bus',
  summary: 'host a bus: publish/subscribe and RPC among @vring/ipc processes',
  description:
    'Hosts a bus at PATH for @vring/ipc clients (connectBus): publish/subscribe and RPC among ' +
    'processes. Runs until Ctrl-C (SIGINT) or SIGTERM, then prints its counters, ' +
    'disconnects the clients and exits 0. Clients reconnect and subscribe again by themselves ' +
    'when a bus comes back. The socket file is 0600 and only processes of this uid (or root) ' +
    'may attach unless --socket-mode, --allow-uid or --allow-gid say otherwise; refused ' +
    'clients are logged with their pid and uid, counted, and see ERR_VRING_PEER_REFUSED. A ' +
    'client over one of the --max-* limits is disconnected, logged, counted, and sees ' +
    'ERR_VRING_LIMIT_EXCEEDED.',
  options: {
    socket: {
      type: 'string',
      value: 'PATH',
      required: true,
      description: 'the Unix socket path to listen on; a stale socket file is replaced',
    },
    notification: {
      type: 'string',
      value: 'MODE',
      choices: NOTIFICATION_MODES,
      default: 'adaptive',
      description: "how the bus's rings wake it; adaptive polls only while that pays",
    },
    ...LISTEN_ACCESS_OPTIONS,
    ...PEER_LIMIT_OPTIONS,
  },
  examples: [
    "vring bus --socket /tmp/bus.sock   # clients: connectBus('/tmp/bus.sock')",
    'vring bus --socket /run/vring/bus.sock --socket-mode 0666 --allow-uid 1000,1001',
  ],
  async run(values) {
    const { socket, notification } = values;
    const bus = createBus(socket, {
      notification,
      ...listenAccessFrom(socket, values),
      ...peerLimitsFrom(values),
    });
    const stopped = stopSignal();
    console.log(
      `vring bus: listening on ${bus.path} (notification ${notification}); ` +
        'Ctrl-C or SIGTERM prints the counters and stops it',
    );
    const signal = await stopped;
    const s = bus.stats;
    console.log(
      `vring bus: ${signal}: clients ${s.clients}, subscriptions ${s.subscriptions}, ` +
        `published ${s.published}, delivered ${s.delivered}, dropped ${s.dropped}, ` +
        `requests ${s.requests}, rejected ${s.rejected}, refused ${s.refused}, ` +
        `limited ${s.limited}`,
    );
    await bus[Symbol.asyncDispose]();
    return 0;
  },
});
