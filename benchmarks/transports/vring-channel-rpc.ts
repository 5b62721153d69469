// RPC over a point-to-point @vring/ipc Channel (one queue pair, no bus in between): the best
// case of a vring RPC, each request crossing one ring each way. The listener serves `echo`,
// the connecting peer calls it.
import type { NotificationMode } from '@vring/core';
import { Channel } from '@vring/ipc';
import { atMost, echoServer, rpcClient } from './fanout-rpc.js';
import type { Payload } from './payload.js';
import { modeLabel, type PeerArgs, type Transport } from './transport.js';
import { openQueuePair } from './vring-connect.js';

async function run(args: PeerArgs, mode: NotificationMode): Promise<void> {
  if (args.scenario !== 'rpc') throw new Error(`channel rpc: no ${args.scenario} scenario`);
  const { socket, end } = await openQueuePair(args, mode);
  const channel = new Channel(end);
  if (args.role === 'listen') {
    const echo = echoServer();
    channel.serve<Payload, Payload>('echo', echo.handle);
    await echo.ended;
    // The client hangs up once it has the END reply.
    await atMost(socket.closed, 1000);
  } else {
    await rpcClient((value) => channel.request('echo', value), args);
  }
  channel.close();
  socket.close();
}

export function vringChannelRpc(mode: NotificationMode): Transport {
  return {
    name: `channel-rpc-${mode}`,
    // The queue pair's default mode (EndpointOptions.notification) is adaptive.
    label: `vring Channel RPC (point-to-point), ${modeLabel(mode, 'adaptive')}`,
    payload: 'msgpack',
    layout: { processes: 'pair' },
    scenarios: ['rpc'],
    run: (args) => run(args, mode),
  };
}
