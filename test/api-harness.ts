import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { openTestStore, type TestDb } from './support/dialects.js';
import type { DialectName } from '../src/store/store.js';
import { Iam } from '../src/iam/service.js';
import { SecretBox } from '../src/core/secrets.js';
import { systemClock } from '../src/core/clock.js';
import { silentLogger, type Logger } from '../src/core/log.js';
import { createServer, type ServerOptions } from '../src/api/server.js';
import type { ApiDeps } from '../src/api/route.js';
import type { EngineApi } from '../src/engine/types.js';

export const ADMIN_PASSWORD = 'admin-password-for-tests';
export const USER_PASSWORD = 'user-password-for-tests';

export interface Harness {
  t: TestDb;
  iam: Iam;
  box: SecretBox;
  app: FastifyInstance;
  deps: ApiDeps;
  adminToken: string;
  req(method: string, url: string, opts?: { token?: string | undefined; body?: unknown; headers?: Record<string, string>; rawBody?: string }): Promise<LightMyRequestResponse>;
  login(name: string, password: string): Promise<string>;
  /** A user with `role` on `project` (or system), logged in. */
  userWith(name: string, role: string | null, scope: { project?: string; system?: boolean }): Promise<{ id: string; token: string }>;
  close(): Promise<void>;
}

export async function makeHarness(dialect: DialectName, opts: { engine?: EngineApi; server?: ServerOptions; logger?: Logger; areas?: Record<string, unknown>; t?: TestDb } = {}): Promise<Harness> {
  const t = opts.t ?? await openTestStore(dialect);
  const box = SecretBox.random();
  const iam = new Iam({ store: t.store, box, cacheTtlMs: 0 });
  await iam.bootstrap({ adminPassword: ADMIN_PASSWORD });
  const deps: ApiDeps = { store: t.store, clock: systemClock, logger: opts.logger ?? silentLogger, iam, engine: opts.engine, ...(opts.areas ? { areas: opts.areas } : {}) };
  const app = await createServer(deps, { rateLimit: false, ...opts.server });
  await app.ready();
  const req: Harness['req'] = (method, url, o = {}) => app.inject({
    method: method as any,
    url,
    headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined || o.rawBody !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
    ...(o.rawBody !== undefined ? { payload: o.rawBody } : o.body !== undefined ? { payload: JSON.stringify(o.body) } : {}),
  });
  const login = async (name: string, password: string) => (await iam.login(name, password)).token;
  const adminToken = await login('admin', ADMIN_PASSWORD);
  return {
    t, iam, box, app, deps, adminToken, req, login,
    async userWith(name, role, scope) {
      const u = await iam.createUser({ name, password: USER_PASSWORD });
      if (role) await iam.assign({ role, user: u.id, ...(scope.system ? { system: true } : { project: scope.project! }) });
      return { id: u.id, token: await login(name, USER_PASSWORD) };
    },
    async close() {
      await app.close();
      if (!opts.t) await t.cleanup();
    },
  };
}

/** Parses an SSE body into events. */
export function parseSse(body: string): { id?: string; event?: string; data?: any }[] {
  return body.split('\n\n').filter((b) => b.trim() && !b.startsWith(':')).map((block) => {
    const ev: { id?: string; event?: string; data?: any } = {};
    for (const line of block.split('\n')) {
      if (line.startsWith('id: ')) ev.id = line.slice(4);
      else if (line.startsWith('event: ')) ev.event = line.slice(7);
      else if (line.startsWith('data: ')) ev.data = JSON.parse(line.slice(6));
    }
    return ev;
  }).filter((e) => e.event !== undefined || e.id !== undefined);
}
