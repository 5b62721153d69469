// CommonJS bus member of the packaging smoke test: requires the installed @vring/ipc.
const ipc = require('@vring/ipc');
const { run } = require('./member-roles.cjs');

const resolved = require.resolve('@vring/ipc');
if (!resolved.endsWith('/dist/index.cjs')) throw new Error(`require resolved to ${resolved}`);
run(ipc, process.argv.slice(2));
