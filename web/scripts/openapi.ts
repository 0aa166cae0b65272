/**
 * Writes the server's OpenAPI document to web/src/api/openapi.json (not
 * committed): the console's typed client is generated from it by
 * openapi-typescript at build time, so it always matches the routes of this
 * checkout. Builds the whole application in a temporary directory (no worker,
 * nothing listening) and asks Fastify for its document.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { createContext } from '../../src/app/context.js';
import { buildApi } from '../../src/api/app.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'api', 'openapi.json');
const dir = mkdtempSync(join(tmpdir(), 'infraflow-openapi-'));
try {
  const config = loadConfig({ env: {}, file: '/dev/null', overrides: { dataDir: dir, 'worker.enabled': false } });
  const ctx = await createContext(config, silentLogger, { startWorker: false });
  // every area of the context, as src/main.ts hands them to the API: the client knows every route
  const { config: _config, logger: _logger, clock: _clock, store: _store, secrets: _secrets, engine: _engine, close: _close, ...areas } = ctx;
  const { app } = await buildApi({ config, store: ctx.store, clock: ctx.clock, logger: silentLogger, engine: ctx.engine, areas: { ...areas, openstack: { imageDir: join(dir, 'images') } }, env: { INFRAFLOW_ADMIN_PASSWORD: 'openapi-generation-only' }, print: () => undefined, server: { docs: false } });
  await app.ready();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(app.swagger(), null, 1));
  await app.close();
  await ctx.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`wrote ${out}\n`);
