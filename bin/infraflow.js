#!/usr/bin/env node
// The `infraflow` command: runs the compiled CLI (dist/cli). In a checkout,
// dist/ is (re)built first when src/ is newer (scripts/build.js, ~0.5 s once).
import { ensureBuilt } from '../scripts/build.js';

await ensureBuilt();
const { runCli, nodeIo } = await import('../dist/cli/main.js');
process.exitCode = await runCli(process.argv.slice(2), nodeIo());
