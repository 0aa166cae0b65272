import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createPgDatabase } from './support/dialects.js';
import { loadConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { createContext } from '../src/app/context.js';

/**
 * Several processes on one PostgreSQL database must share the secret key.
 * The first process stores a check value of its key; a process whose key
 * cannot open it refuses to start with one line saying what to do, instead
 * of failing later on the first secret it reads.
 */
describe('the secret key across processes on PostgreSQL', () => {
  let db: { url: string; drop(): Promise<void> };
  const dirs: string[] = [];
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'infraflow-key-'));
    dirs.push(d);
    return d;
  };
  beforeAll(async () => {
    db = await createPgDatabase('keycheck');
  });
  afterAll(async () => {
    await db?.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const config = (dataDir: string, secretKey?: string) => loadConfig({ file: '', env: { INFRAFLOW_DATA_DIR: dataDir, INFRAFLOW_DATABASE_URL: db.url, INFRAFLOW_WORKER_ENABLED: 'false', ...(secretKey ? { INFRAFLOW_SECRET_KEY: secretKey } : {}) } });

  it('a second process with its own generated key is refused; with the shared key it starts', async () => {
    const first = dir();
    const a = await createContext(config(first), silentLogger, { startWorker: false });
    await a.close();
    // its own data directory: its own generated secret.key
    await expect(createContext(config(dir()), silentLogger, { startWorker: false })).rejects.toMatchObject({ code: 'config.secret_key_mismatch', message: expect.stringContaining('INFRAFLOW_SECRET_KEY') });
    // the first process's key, shared through INFRAFLOW_SECRET_KEY
    const key = readFileSync(join(first, 'secret.key'), 'utf8').trim();
    const b = await createContext(config(dir(), key), silentLogger, { startWorker: false });
    await b.close();
  });

  it('`npm start` with the wrong key exits with one line', async () => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(process.cwd(), 'src/main.ts')], {
      cwd: dir(),
      env: { ...process.env, INFRAFLOW_CONFIG: '', INFRAFLOW_DATA_DIR: dir(), INFRAFLOW_DATABASE_URL: db.url, INFRAFLOW_PORT: '0', INFRAFLOW_SECRET_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'silent', INFRAFLOW_ADMIN_PASSWORD: 'x-admin-password' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(1);
    const lines = err.trim().split('\n');
    expect(lines, err).toHaveLength(1);
    expect(lines[0]).toMatch(/^infraflow: config\.secret_key_mismatch: .*INFRAFLOW_SECRET_KEY/);
  }, 120_000);
});
