import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { CliError, EXIT } from './errors.js';

/** The CLI's own settings: where the server is, the session token, defaults. Stored 0600. */
export const CliConfigSchema = z.object({
  server: z.string().default('http://127.0.0.1:8080'),
  token: z.string().optional(),
  user: z.string().optional(),
  project: z.string().optional(),
  output: z.enum(['table', 'json', 'yaml']).optional(),
});
export type CliConfig = z.infer<typeof CliConfigSchema>;
export const SETTABLE_KEYS = ['server', 'project', 'output'] as const;

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
      raw = parse(readFileSync(path, 'utf8')) ?? {};
    } catch {
      throw new CliError(`the CLI config ${path} is not valid YAML; fix or delete it`, EXIT.usage);
    }
  }
  const r = CliConfigSchema.safeParse(raw);
  if (!r.success) throw new CliError(`the CLI config ${path}: ${r.error.issues[0]!.path.join('.')}: ${r.error.issues[0]!.message}; fix it with infraflow config set`, EXIT.usage);
  const cfg = r.data;
  if (env.INFRAFLOW_URL) cfg.server = env.INFRAFLOW_URL;
  if (env.INFRAFLOW_TOKEN) cfg.token = env.INFRAFLOW_TOKEN;
  if (env.INFRAFLOW_PROJECT) cfg.project = env.INFRAFLOW_PROJECT;
  return cfg;
}

export function saveCliConfig(cfg: CliConfig, env: NodeJS.ProcessEnv = process.env): string {
  const path = configPath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, stringify(cfg), { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}
