// `vring bus`: a bus hosted from a shell, for @vring/ipc clients in other processes.
import type { NotificationMode } from '@vring/core';
import {
  defineCommand,
  LISTEN_ACCESS_OPTIONS,
  listenAccessFrom,
  PEER_LIMIT_OPTIONS,
  peerLimitsFrom,
  stopSignal,
  UsageError,
} from '@vring/core/cli';
import { createBus } from '../bus/bus.js';
import type { NatsBridgeOptions } from '../bus/nats-bridge.js';

const list = (text: string | undefined) =>
  text === undefined ? [] : text.split(',').filter((s) => s.length > 0);

/** The bridge the options ask for; --export and --import without --nats are a mistake. */
function natsBridgeFrom(values: {
  nats: string | undefined;
  export: string | undefined;
  import: string | undefined;
}): NatsBridgeOptions | undefined {
  if (values.nats === undefined) {
    if (values.export !== undefined || values.import !== undefined) {
      throw new UsageError('--export and --import need --nats');
    }
    return undefined;
  }
  return { servers: list(values.nats), export: list(values.export), import: list(values.import) };
}

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
    'max-frame': {
      type: 'string',
      value: 'BYTES',
      description:
        'largest frame a client may use (default 65535): a message that fits one crosses the bus whole, with one copy per subscriber; each client costs the bus about three buffers of this size',
    },
    'split-only': {
      type: 'boolean',
      description:
        'refuse clients that ask for packed rings (connectBus packed: true): they see ERR_VRING_FEATURE_MISMATCH; by default each client runs the rings it asks for',
    },
    nats: {
      type: 'string',
      value: 'URL',
      description: 'bridge the bus to NATS at URL (several servers of a cluster: comma-separated)',
    },
    export: {
      type: 'string',
      value: 'SUBJECT,...',
      description:
        'with --nats: subjects whose publishes go to NATS and whose local responders answer NATS requests',
    },
    import: {
      type: 'string',
      value: 'SUBJECT,...',
      description:
        'with --nats: subjects whose NATS messages are delivered here and whose requests go to NATS',
    },
    ...LISTEN_ACCESS_OPTIONS,
    ...PEER_LIMIT_OPTIONS,
  },
  examples: [
    "vring bus --socket /tmp/bus.sock   # clients: connectBus('/tmp/bus.sock')",
    'vring bus --socket /tmp/bus.sock --max-frame 1048832   # 1 MiB values cross whole',
    'vring bus --socket /run/vring/bus.sock --socket-mode 0666 --allow-uid 1000,1001',
    "vring bus --socket /tmp/bus.sock --nats nats://10.0.0.5:4222 --export 'orders.>' --import 'prices.>,quote'",
  ],
  async run(values) {
    const { socket, notification } = values;
    const nats = natsBridgeFrom(values);
    const maxFrame = values['max-frame'];
    if (maxFrame !== undefined && !/^[0-9]+$/.test(maxFrame)) {
      throw new UsageError(`--max-frame takes a whole number of bytes; got '${maxFrame}'`);
    }
    const bus = createBus(socket, {
      notification,
      ...(maxFrame !== undefined && { maxFrame: Number(maxFrame) }),
      ...(values['split-only'] && { packed: false }),
      ...listenAccessFrom(socket, values),
      ...peerLimitsFrom(values),
      ...(nats && { nats }),
    });
    const stopped = stopSignal();
    console.log(
      `vring bus: listening on ${bus.path} (notification ${notification}); ` +
        'Ctrl-C or SIGTERM prints the counters and stops it',
    );
    let bridgeFailed = false;
    if (bus.nats) {
      const bridge = bus.nats;
      bridge.ready.then(
        () =>
          console.log(
            `vring bus: bridged to NATS at ${values.nats}: export ${values.export ?? '-'}, ` +
              `import ${values.import ?? '-'}`,
          ),
        // The bridge printed why on stderr; without it, this is not the bus that was asked for.
        () => {
          bridgeFailed = true;
          process.kill(process.pid, 'SIGTERM');
        },
      );
    }
    const signal = await stopped;
    const s = bus.stats;
    console.log(
      `vring bus: ${signal}: clients ${s.clients}, subscriptions ${s.subscriptions}, ` +
        `published ${s.published}, delivered ${s.delivered}, dropped ${s.dropped}, ` +
        `requests ${s.requests}, rejected ${s.rejected}, refused ${s.refused}, ` +
        `limited ${s.limited}`,
    );
    if (bus.nats) {
      const n = bus.nats.stats;
      console.log(
        `vring bus: nats bridge: exported ${n.exported}, imported ${n.imported}, ` +
          `requests out ${n.requestsOut}, requests in ${n.requestsIn}, dropped ${n.dropped}, ` +
          `rejected ${n.rejected}, reconnects ${n.reconnects}`,
      );
    }
    await bus[Symbol.asyncDispose]();
    return bridgeFailed ? 1 : 0;
  },
});
