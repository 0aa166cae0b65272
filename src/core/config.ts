import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ValidationError } from './errors.js';
import { zodError } from './input.js';

/**
 * Configuration: defaults, then a file (`INFRAFLOW_CONFIG` or
 * `./infraflow.yaml` if present), then environment variables.
 * Environment wins. Every key is validated; a bad value or an unknown key
 * (a typo) names the key's path.
 */
const boolFlag = z.union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')]);

export const ConfigSchema = z.strictObject({
  /** Data directory: SQLite file, key file, logs. */
  dataDir: z.string().default('./data'),
  /** `sqlite:<path>` or `postgres://...`; default is `<dataDir>/infraflow.db`. */
  databaseUrl: z.string().optional(),
  /** SQLite synchronous mode: FULL survives power loss; NORMAL may lose the last commits on power loss. */
  sqliteSynchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
  http: z.strictObject({
    host: z.string().default('127.0.0.1'),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    bodyLimitBytes: z.coerce.number().int().positive().default(1_048_576),
  }).prefault({}),
  worker: z.strictObject({
    enabled: z.boolean().default(true),
    /** Runs executed concurrently by this process. */
    concurrency: z.coerce.number().int().positive().default(64),
    leaseMs: z.coerce.number().int().positive().default(30_000),
    heartbeatMs: z.coerce.number().int().positive().default(10_000),
    pollMs: z.coerce.number().int().positive().default(250),
  }).prefault({}),
  sim: z.strictObject({
    /** Simulated time runs this many times faster than real time. */
    speed: z.coerce.number().positive().default(1),
    seed: z.coerce.number().int().default(42),
    /** The simulated clusters' Kubernetes API (HTTPS): host and port (0 = a free port, shown in kubeconfigs). */
    kubeHost: z.string().default('127.0.0.1'),
    kubePort: z.coerce.number().int().min(0).max(65535).default(0),
  }).prefault({}),
  /**
   * Which provider implements which kinds: `<kind or domain/*>` → provider name.
   * The most specific match wins; default: everything on the simulator.
   */
  providers: z.record(z.string(), z.string()).default({ '*': 'sim' }),
  /**
   * Connection settings of the real backends `providers` may route to
   * (powerdns, kea, ovs, bmc); validated by src/providers/backends.ts.
   * Empty by default: everything stays on the simulator.
   */
  backends: z.record(z.string(), z.unknown()).default({}),
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
  /** Cluster fulfillment (src/fulfillment, docs/fulfillment.md). */
  fulfillment: z.object({
    /** Git URL the post-install manifests are pushed to; default a bare repository `<dataDir>/gitops.git`. */
    gitUrl: z.string().optional(),
    baseDomain: z.string().default('clusters.example.com'),
    vlanPool: z.string().default('tenant'),
    machineNetworkParent: z.string().default('dc1:10.128.0.0/16'),
    machineNetworkLength: z.coerce.number().int().min(8).max(30).default(26),
    floatingPool: z.string().default('public:203.0.113.0/24'),
    /** Orders or scalings to more nodes than this wait for an approval. */
    approvalAboveNodes: z.coerce.number().int().min(1).optional(),
    /** How often stages poll the backends (ms of engine time). */
    pollMs: z.coerce.number().int().min(1).default(2_000),
  }).prefault({}),
  /** Sign-in: password, an OpenID Connect provider, browser session cookies (docs/configuration.md#sign-in). */
  auth: z.object({
    /** Local password sign-in (POST /auth/login, /auth/session); false leaves only the OIDC provider and API tokens. */
    passwordLogin: boolFlag.default(true),
    /** Where users reach the server (e.g. https://infraflow.example.com): the OIDC redirect URI is built from it. */
    publicUrl: z.string().url().optional(),
    /** Browser session cookies are `Secure`: auto = when publicUrl (or the request) is https. */
    cookieSecure: z.enum(['auto', 'always', 'never']).default('auto'),
    /** Browser and CLI sessions last this long (seconds, at most 12 h). */
    sessionTtlSeconds: z.coerce.number().int().min(60).max(12 * 3600).default(12 * 3600),
    oidc: z.object({
      /** The provider's issuer URL (its /.well-known/openid-configuration is read from it; the issuer must match exactly). */
      issuer: z.string().url(),
      clientId: z.string().min(1),
      clientSecret: z.string().optional(),
      scopes: z.string().default('openid profile email'),
      /** The button text: "Sign in with <displayName>". */
      displayName: z.string().default('single sign-on'),
      /** The claim that lists the user's upstream groups (Keycloak: groups). */
      groupsClaim: z.string().default('groups'),
      /** Upstream group → Infraflow group name; a group not listed maps to the Infraflow group of the same name, if one exists. */
      groupMap: z.record(z.string(), z.string()).default({}),
      /** The claim that becomes the user name on first sign-in (else the subject). */
      usernameClaim: z.string().default('preferred_username'),
      /** The console asks the server to refresh OIDC sessions this often (seconds): upstream group changes apply then. */
      refreshSeconds: z.coerce.number().int().min(10).default(300),
      /** Allow an http:// issuer (tests and local providers only). */
      allowInsecure: boolFlag.default(false),
    }).optional(),
  }).prefault({}),
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
  INFRAFLOW_SIM_KUBE_HOST: ['sim', 'kubeHost'],
  INFRAFLOW_SIM_KUBE_PORT: ['sim', 'kubePort'],
  INFRAFLOW_SECRET_KEY: ['secretKey'],
  LOG_LEVEL: ['logLevel'],
  INFRAFLOW_GITOPS_URL: ['fulfillment', 'gitUrl'],
  INFRAFLOW_PASSWORD_LOGIN: ['auth', 'passwordLogin'],
  INFRAFLOW_PUBLIC_URL: ['auth', 'publicUrl'],
  INFRAFLOW_SESSION_TTL_SECONDS: ['auth', 'sessionTtlSeconds'],
  INFRAFLOW_OIDC_ISSUER: ['auth', 'oidc', 'issuer'],
  INFRAFLOW_OIDC_CLIENT_ID: ['auth', 'oidc', 'clientId'],
  INFRAFLOW_OIDC_CLIENT_SECRET: ['auth', 'oidc', 'clientSecret'],
  INFRAFLOW_OIDC_SCOPES: ['auth', 'oidc', 'scopes'],
  INFRAFLOW_OIDC_GROUPS_CLAIM: ['auth', 'oidc', 'groupsClaim'],
  INFRAFLOW_OIDC_NAME: ['auth', 'oidc', 'displayName'],
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
  if (!result.success) throw zodError('config.invalid', result.error, { what: file ? `config (${resolve(file)}, environment) key` : 'config key', root: '(config)' });
  return result.data;
}
