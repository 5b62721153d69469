// Entry point of a benchmark peer process: `node --import tsx peer.ts '<PeerArgs JSON>'`.
import { runNet } from './net-peer.js';
import { fromArgv } from './peer-args.js';
import { runVhostUser } from './vhost-user-peer.js';
import { runVring } from './vring-peer.js';

const args = fromArgv(process.argv.slice(2));
const run = { vring: runVring, net: runNet, 'vhost-user': runVhostUser }[args.transport];
await run(args);
