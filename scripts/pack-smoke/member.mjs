// ESM bus member of the packaging smoke test: imports the installed @vring/ipc.
import { fileURLToPath } from 'node:url';
import * as ipc from '@vring/ipc';
import roles from './member-roles.cjs';

// The ESM build must be the one loaded here, not the CommonJS one through interop.
const resolved = fileURLToPath(import.meta.resolve('@vring/ipc'));
if (!resolved.endsWith('/dist/index.js')) throw new Error(`ESM import resolved to ${resolved}`);
roles.run(ipc, process.argv.slice(2));
