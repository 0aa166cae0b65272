import type { FastifyInstance } from 'fastify';
import type { Config } from '../core/config.js';
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { SecretBox } from '../core/secrets.js';
import type { Store } from '../store/store.js';
import type { EngineApi } from '../engine/types.js';
import { Iam } from '../iam/service.js';
import { createServer, type ServerOptions } from './server.js';
import { OidcFederation } from '../iam/oidc.js';
import type { SignInSettings } from './session.js';
import type { ApiDeps } from './route.js';

export interface ApiHost {
  app: FastifyInstance;
  iam: Iam;
  box: SecretBox;
  deps: ApiDeps;
}

/**
 * Builds the HTTP API for a process: the secret box (key from config or the
 * key file in dataDir), IAM (first start creates the administrator), and the
 * Fastify server with every route module whose area is present.
 */
export async function buildApi(opts: {
  config: Config;
  store: Store;
  clock: Clock;
  logger: Logger;
  engine?: EngineApi | undefined;
  areas?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  server?: ServerOptions;
  /** Where the generated admin password is printed (default stderr). */
  print?: (text: string) => void;
}): Promise<ApiHost> {
  const box = SecretBox.fromConfig(opts.config);
  const iam = new Iam({ store: opts.store, box, clock: opts.clock, logger: opts.logger });
  const env = opts.env ?? process.env;
  const boot = await iam.bootstrap({ adminPassword: env.INFRAFLOW_ADMIN_PASSWORD || undefined });
  if (boot.created) {
    const print = opts.print ?? ((t: string) => process.stderr.write(t));
    if (boot.generated) {
      print(`\ninfraflow: first start — created the administrator account "${boot.name}" with this generated password:\n\n    ${boot.password}\n\n  It is shown only this once. Log in with: infraflow login --user ${boot.name}\n  (set INFRAFLOW_ADMIN_PASSWORD before the first start to choose it instead)\n\n`);
    } else {
      print(`infraflow: first start — created the administrator account "${boot.name}" with the password from INFRAFLOW_ADMIN_PASSWORD\n`);
    }
  }
  const signin = signInFromConfig(opts.config, iam, opts.logger);
  const deps: ApiDeps = { store: opts.store, clock: opts.clock, logger: opts.logger, iam, engine: opts.engine, areas: { ...opts.areas, signin } };
  const rateMax = Number(env.INFRAFLOW_RATE_LIMIT ?? '');
  const app = await createServer(deps, {
    bodyLimitBytes: opts.config.http.bodyLimitBytes,
    ...(Number.isFinite(rateMax) && rateMax > 0 ? { rateLimit: { max: rateMax, timeWindowMs: 60_000 } } : env.INFRAFLOW_RATE_LIMIT === '0' ? { rateLimit: false as const } : {}),
    ...opts.server,
  });
  return { app, iam, box, deps };
}

/** Sign-in settings from `auth` in the configuration: password sign-in on or off, session length, the OpenID provider. */
export function signInFromConfig(config: Config, iam: Iam, logger: Logger): SignInSettings {
  const a = config.auth;
  const sessionTtlMs = a.sessionTtlSeconds * 1000;
  const base = (a.publicUrl ?? `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${config.http.port}`).replace(/\/$/, '');
  const oidc = a.oidc ? new OidcFederation({ iam, settings: a.oidc, redirectUri: `${base}/api/v1/auth/oidc/callback`, sessionTtlMs, logger }) : undefined;
  if (!a.passwordLogin && !oidc) logger.warn('auth.passwordLogin is false and no auth.oidc provider is configured: only existing API tokens can sign in');
  return { passwordLogin: a.passwordLogin, cookieSecure: a.cookieSecure, publicUrl: a.publicUrl, sessionTtlMs, oidc };
}
