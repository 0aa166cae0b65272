import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { yaml } from './lazy.js';
import { CliError, EXIT } from './errors.js';

/** The CLI's own settings: where the server is, the session token, defaults. Stored 0600. */
export interface CliConfig {
  server: string;
  token?: string | undefined;
  user?: string | undefined;
  project?: string | undefined;
  output?: 'table' | 'json' | 'yaml' | undefined;
}
export const SETTABLE_KEYS = ['server', 'project', 'output'] as const;
const STRING_KEYS = ['server', 'token', 'user', 'project', 'output'] as const;
const OUTPUTS = ['table', 'json', 'yaml'];

/**
 * Checks the parsed file (five flat keys; checked by hand rather than with a
 * schema library so that every `infraflow` call does not pay for loading one).
 * Returns the problem as `path: message`, or the config.
 */
function checkConfig(raw: unknown): { error: string } | { config: CliConfig } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { error: '(root): expected a mapping of settings' };
  const rec = raw as Record<string, unknown>;
  for (const [k, v] of Object.entries(rec)) {
    if (!(STRING_KEYS as readonly string[]).includes(k)) continue; // unknown keys are ignored, as before
    if (v !== undefined && typeof v !== 'string') return { error: `${k}: expected a string` };
  }
  if (rec.output !== undefined && !OUTPUTS.includes(rec.output as string)) return { error: 'output: expected one of table, json, yaml' };
  const config: CliConfig = { server: (rec.server as string | undefined) ?? 'http://127.0.0.1:8080' };
  for (const k of ['token', 'user', 'project', 'output'] as const) if (rec[k] !== undefined) (config as unknown as Record<string, unknown>)[k] = rec[k];
  return { config };
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.INFRAFLOW_CLI_CONFIG) return env.INFRAFLOW_CLI_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'infraflow', 'config.yaml');
}

export function loadCliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  const path = configPath(env);
  let raw: unknown = {};
  if (existsSync(path)) {
    try {
      raw = yaml().parse(readFileSync(path, 'utf8')) ?? {};
    } catch {
      throw new CliError(`the CLI config ${path} is not valid YAML; fix or delete it`, EXIT.usage);
    }
  }
  const r = checkConfig(raw);
  if ('error' in r) throw new CliError(`the CLI config ${path}: ${r.error}; fix it with infraflow config set`, EXIT.usage);
  const cfg = r.config;
  if (env.INFRAFLOW_URL) cfg.server = env.INFRAFLOW_URL;
  if (env.INFRAFLOW_TOKEN) cfg.token = env.INFRAFLOW_TOKEN;
  if (env.INFRAFLOW_PROJECT) cfg.project = env.INFRAFLOW_PROJECT;
  return cfg;
}

export function saveCliConfig(cfg: CliConfig, env: NodeJS.ProcessEnv = process.env): string {
  const path = configPath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, yaml().stringify(cfg), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}
