// Entry point of a benchmark peer process: `node --import tsx peer.ts '<PeerArgs JSON>'`.
import { runNet } from './net-peer.js';
import { fromArgv } from './peer-args.js';
import { runVring } from './vring-peer.js';

const args = fromArgv(process.argv.slice(2));
await (args.transport === 'vring' ? runVring(args) : runNet(args));
