import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ValidationError } from './errors.js';

/**
 * Configuration: defaults, then a file (`INFRAFLOW_CONFIG` or
 * `./infraflow.yaml` if present), then environment variables.
 * Environment wins. Every key is validated; a bad value names the key.
 */
export const ConfigSchema = z.object({
  /** Data directory: SQLite file, key file, logs. */
  dataDir: z.string().default('./data'),
  /** `sqlite:<path>` or `postgres://...`; default is `<dataDir>/infraflow.db`. */
  databaseUrl: z.string().optional(),
  /** SQLite synchronous mode: FULL survives power loss; NORMAL may lose the last commits on power loss. */
  sqliteSynchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
  http: z.object({
    host: z.string().default('127.0.0.1'),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    bodyLimitBytes: z.coerce.number().int().positive().default(1_048_576),
  }).prefault({}),
  worker: z.object({
    enabled: z.boolean().default(true),
    /** Runs executed concurrently by this process. */
    concurrency: z.coerce.number().int().positive().default(64),
    leaseMs: z.coerce.number().int().positive().default(30_000),
    heartbeatMs: z.coerce.number().int().positive().default(10_000),
    pollMs: z.coerce.number().int().positive().default(250),
  }).prefault({}),
  sim: z.object({
    /** Simulated time runs this many times faster than real time. */
    speed: z.coerce.number().positive().default(1),
    seed: z.coerce.number().int().default(42),
  }).prefault({}),
  /**
   * Which provider implements which kinds: `<kind or domain/*>` → provider name.
   * The most specific match wins; default: everything on the simulator.
   */
  providers: z.record(z.string(), z.string()).default({ '*': 'sim' }),
  /**
   * A real OpenStack to drive (the `openstack` provider; route kinds to it
   * with `providers:`). The password or application credential secret comes
   * from the secret store (`secret: <project>/<name>`, an Infraflow secret) or
   * INFRAFLOW_OPENSTACK_PASSWORD, never from this file.
   */
  openstack: z.strictObject({
    authUrl: z.string().url(),
    username: z.string().optional(),
    userDomain: z.string().default('Default'),
    projectName: z.string().optional(),
    projectDomain: z.string().default('Default'),
    applicationCredentialId: z.string().optional(),
    region: z.string().optional(),
    secret: z.string().regex(/^[^/]+\/[^/]+$/, 'secret: <project>/<secret name> of an Infraflow secret holding the password or application credential secret').optional(),
  }).optional(),
  /** Default datacenter for bare-metal allocation from the inventory. */
  datacenter: z.string().default('dc1'),
  /** Base64 AES-256 key for secrets at rest; else a key file in dataDir is created on first start. */
  secretKey: z.string().optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Config = z.infer<typeof ConfigSchema>;

const ENV_MAP: Record<string, string[]> = {
  INFRAFLOW_DATA_DIR: ['dataDir'],
  DATABASE_URL: ['databaseUrl'],
  INFRAFLOW_DATABASE_URL: ['databaseUrl'],
  INFRAFLOW_SQLITE_SYNCHRONOUS: ['sqliteSynchronous'],
  INFRAFLOW_HOST: ['http', 'host'],
  PORT: ['http', 'port'],
  INFRAFLOW_PORT: ['http', 'port'],
  INFRAFLOW_WORKER_CONCURRENCY: ['worker', 'concurrency'],
  INFRAFLOW_WORKER_ENABLED: ['worker', 'enabled'],
  INFRAFLOW_LEASE_MS: ['worker', 'leaseMs'],
  INFRAFLOW_SIM_SPEED: ['sim', 'speed'],
  INFRAFLOW_SIM_SEED: ['sim', 'seed'],
  INFRAFLOW_SECRET_KEY: ['secretKey'],
  LOG_LEVEL: ['logLevel'],
};

function setPath(obj: Record<string, any>, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (typeof cur[key] !== 'object' || cur[key] === null) cur[key] = {};
    cur = cur[key];
  }
  cur[path[path.length - 1]!] = value;
}

export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Record<string, unknown> } = {}): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.INFRAFLOW_CONFIG ?? (existsSync('infraflow.yaml') ? 'infraflow.yaml' : undefined);
  let raw: Record<string, any> = {};
  if (file) {
    const path = resolve(file);
    if (!existsSync(path)) throw new ValidationError('config.file_not_found', `config file ${path} does not exist: create it or unset INFRAFLOW_CONFIG`);
    const parsed = parseYaml(readFileSync(path, 'utf8')) as unknown;
    if (parsed !== null && typeof parsed !== 'object') throw new ValidationError('config.invalid', `config file ${path} must hold a mapping of keys`);
    raw = (parsed ?? {}) as Record<string, any>;
  }
  for (const [name, path] of Object.entries(ENV_MAP)) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    setPath(raw, path, path[path.length - 1] === 'enabled' ? v !== 'false' && v !== '0' : v);
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) setPath(raw, k.split('.'), v);
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new ValidationError('config.invalid', `config key ${issue.path.join('.') || '(root)'}: ${issue.message}`, { details: { issues: result.error.issues } });
  }
  return result.data;
}
