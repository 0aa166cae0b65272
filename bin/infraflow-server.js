#!/usr/bin/env node
// `npm start`: the server (API, worker, health endpoints) from the compiled
// sources (dist/main.js), in this very process, so that a signal sent to the
// `npm start` process (npm forwards SIGTERM/SIGINT to its child, and the
// script's shell execs this one command) reaches the server's handlers.
// In a checkout, dist/ is (re)built first when src/ is newer.
import { ensureBuilt } from '../scripts/build.js';

await ensureBuilt();
await import('../dist/main.js');
