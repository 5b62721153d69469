/**
 * `@vring/core/cli`: the `ping` and `echo` commands of the `vring` command, as functions and
 * as {@link Command}s, and the command layer that runs them. The `vring` executable itself
 * ships with `@vring/ipc`, the top package, which adds `vring bus` and hands everything to
 * {@link runProgram}. Importing this module has no side effects.
 *
 * @module \@vring/core/cli
 */
import { LISTEN_ACCESS_OPTIONS, listenAccessFrom } from './access-options.js';
import { type Command, defineCommand } from './command.js';
import { echo } from './echo.js';
import { PEER_LIMIT_OPTIONS, peerLimitsFrom } from './limit-options.js';
import { ping } from './ping.js';
import { PING_MAX_FRAME, PING_MIN_FRAME } from './ping-frame.js';

export { LISTEN_ACCESS_OPTIONS, listenAccessFrom } from './access-options.js';
export {
  type BooleanOption,
  type Command,
  type CommandArgument,
  type CommandOption,
  type CommandOptions,
  commandUsage,
  defineCommand,
  type IntegerOption,
  type OptionValues,
  type ParsedCommand,
  type Program,
  type ProgramOutput,
  parseCommand,
  programUsage,
  runProgram,
  type StringOption,
  UsageError,
} from './command.js';
export { type EchoOptions, echo } from './echo.js';
export { PEER_LIMIT_OPTIONS, peerLimitsFrom } from './limit-options.js';
export { type PingOptions, ping } from './ping.js';
export { stopSignal } from './stop-signal.js';

// Declared as plain `Command`s: the literal option types only matter inside `run`, and a
// public type spelled out option by option would be noise in the API reference.
/** `vring ping`. @public */
export const pingCommand: Command = defineCommand({
  name: 'ping',
  summary: 'send frames to a vhost-user backend; check that each comes back intact',
  description:
    'Runs a virtio-user frontend, sends N Ethernet frames to the vhost-user backend at PATH ' +
    '(vring echo, or DPDK testpmd in io forwarding) and checks that each comes back intact. ' +
    'Prints one summary line (sent, received, lost, corrupted, rate, RTT p50/p99) and exits 0 ' +
    'only if every frame came back, 1 otherwise. With --server it listens until a backend ' +
    'connects (60 s at most); Ctrl-C or SIGTERM stops it.',
  options: {
    socket: {
      type: 'string',
      value: 'PATH',
      required: true,
      description: "the backend's socket, or with --server the path to listen on",
    },
    server: {
      type: 'boolean',
      description: 'listen at PATH and let the backend connect (DPDK net_vhost client=1)',
    },
    count: { type: 'integer', value: 'N', default: 1000, min: 1, description: 'frames to send' },
    size: {
      type: 'integer',
      value: 'BYTES',
      default: 64,
      min: PING_MIN_FRAME,
      max: PING_MAX_FRAME,
      description: `bytes per frame, ${PING_MIN_FRAME}..${PING_MAX_FRAME} (Ethernet without FCS)`,
    },
  },
  examples: [
    'vring echo --socket /tmp/vring.sock &',
    'vring ping --socket /tmp/vring.sock --count 1000 --size 64',
  ],
  run(options) {
    if (options.server) {
      // VirtioUser listens as soon as it is opened, so this line can precede it; a path
      // that cannot be listened on is reported on the next line.
      console.log(
        `vring ping: listening on ${options.socket} for a vhost-user backend; ` +
          'Ctrl-C or SIGTERM stops it',
      );
    }
    return ping(options);
  },
});

/** `vring echo`. @public */
export const echoCommand: Command = defineCommand({
  name: 'echo',
  summary: 'run a vhost-user backend that sends every frame back to its sender',
  description:
    'Runs a vhost-user backend at PATH that sends every frame back to the port it came from: ' +
    'the peer of vring ping, and a target for DPDK virtio_user. Runs until Ctrl-C (SIGINT) ' +
    'or SIGTERM, then prints one line of counters per port and exits 0. The socket file is ' +
    '0600 and only processes of this uid (or root) may attach unless --socket-mode, ' +
    '--allow-uid or --allow-gid say otherwise; refused peers are logged with their pid and ' +
    'uid and never get their memory mapped. A peer over one of the --max-* limits is ' +
    'disconnected, logged, and sees ERR_VRING_LIMIT_EXCEEDED.',
  options: {
    socket: {
      type: 'string',
      value: 'PATH',
      required: true,
      description: 'the path to listen on, or with --client the frontend to connect to',
    },
    client: {
      type: 'boolean',
      description: 'connect to a frontend listening at PATH (DPDK virtio_user server=1)',
    },
    packed: {
      type: 'boolean',
      description: 'offer packed virtqueues too (DPDK virtio_user packed_vq=1 takes them)',
    },
    'in-order': {
      type: 'boolean',
      description: 'offer VIRTIO_F_IN_ORDER too (DPDK virtio_user in_order=1 takes it)',
    },
    ...LISTEN_ACCESS_OPTIONS,
    ...PEER_LIMIT_OPTIONS,
  },
  examples: [
    'vring echo --socket /tmp/vring.sock',
    'vring echo --socket /run/vring/echo.sock --socket-mode 0660 --allow-gid 1001',
    'vring echo --socket /tmp/vring.sock --packed --in-order',
  ],
  run: (options) =>
    echo({
      socket: options.socket,
      client: options.client,
      packedRings: options.packed,
      inOrder: options['in-order'],
      ...listenAccessFrom(options.socket, options),
      ...peerLimitsFrom(options),
    }),
});

/** The commands that @vring/core provides, in the order `vring --help` lists them. @public */
export const coreCommands = [pingCommand, echoCommand] as const;
