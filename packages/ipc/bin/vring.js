#!/usr/bin/env node
// The `vring` command. A committed launcher, so pnpm can link the bin before anything is
// built; the command itself is built by tsup into dist/cli.js.
import '../dist/cli.js';
