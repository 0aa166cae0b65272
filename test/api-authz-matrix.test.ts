import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS } from './support/dialects.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { fullUrl, type AnyRoute } from '../src/api/route.js';
import { routeTable, servedRoutes, PLUGIN_PATH_PREFIXES, STATIC_ROUTES } from '../src/api/server.js';
import { PERMISSIONS } from '../src/iam/permissions.js';
import { defineWorkflow } from '../src/engine/types.js';
import type { RoutePolicy } from '../src/iam/policy.js';

/**
 * The authorization matrix, generated from the route table: every route ×
 * every kind of caller × the caller's own project or another one. The
 * expected answer comes from the role definitions written out below (the
 * specification, not the code under test). The server runs in
 * authorize-only mode: a route that authorizes answers 200 without running
 * its handler, so the matrix has no side effects.
 */

// The role specification (Keystone-like admin ⊃ member ⊃ reader), written independently of src/iam/permissions.ts.
const READER = ['projects:read', 'runs:read', 'events:read', 'resources:read', 'stacks:read', 'inventory:read', 'ipam:read', 'allocations:read', 'sim:read', 'secrets:list'];
const MEMBER = [...READER, 'runs:operate', 'resources:write', 'stacks:write', 'stacks:apply', 'secrets:write'];
const ADMIN = Object.keys(PERMISSIONS);
const ROLE_PERMS: Record<string, string[]> = { reader: READER, member: MEMBER, admin: ADMIN };

interface Caller {
  name: string;
  /** role on the system */
  system?: string;
  /** role on project "own" */
  own?: string;
  /** token limits */
  tokenProject?: string;
  tokenPerms?: string[];
  anonymous?: boolean;
}

const CALLERS: Caller[] = [
  { name: 'anonymous', anonymous: true },
  { name: 'no-role' },
  { name: 'own-reader', own: 'reader' },
  { name: 'own-member', own: 'member' },
  { name: 'own-admin', own: 'admin' },
  { name: 'system-reader', system: 'reader' },
  { name: 'system-admin', system: 'admin' },
  { name: 'scoped-token', system: 'admin', tokenProject: 'own', tokenPerms: ['runs:read', 'projects:read', 'secrets:list'] },
];

type Outcome = 'allow' | 'unauthenticated' | 'forbidden' | 'hidden';

function expected(c: Caller, policy: RoutePolicy, target: 'own' | 'other' | undefined): Outcome {
  if (policy.scope === 'public') return 'allow';
  if (c.anonymous) return 'unauthenticated';
  if (policy.scope === 'authenticated') return 'allow';
  const perm = policy.permission;
  const tokenAllows = (p: string) => !c.tokenPerms || c.tokenPerms.includes(p);
  const sys = (c.system ? ROLE_PERMS[c.system]! : []).filter(tokenAllows);
  const onProject = (p: string): string[] => {
    if (c.tokenProject && c.tokenProject !== p) return [];
    const fromSys = c.system ? ROLE_PERMS[c.system]! : [];
    const fromOwn = p === 'own' && c.own ? ROLE_PERMS[c.own]! : [];
    return [...fromSys, ...fromOwn].filter(tokenAllows);
  };
  const seesProject = (p: string) => (!c.tokenProject || c.tokenProject === p) && (!!c.system || (p === 'own' && !!c.own));
  if (policy.scope === 'system') return !c.tokenProject && sys.includes(perm) ? 'allow' : 'forbidden';
  const anywhere = onProject('own').includes(perm) || onProject('other').includes(perm) || (!c.tokenProject && sys.includes(perm));
  if (policy.scope === 'any' || target === undefined) return anywhere ? 'allow' : 'forbidden';
  if (onProject(target).includes(perm)) return 'allow';
  return seesProject(target) ? 'forbidden' : 'hidden';
}

function observed(r: AnyRoute, status: number, body: any): Outcome | `status ${number}` {
  if (status === 200 && body?.authorized === true) return 'allow';
  // routes without a project authorize before the body is validated: a 400 means the caller got past the policy
  if (status === 400 && r.policy.scope !== 'project') return 'allow';
  if (status === 401) return 'unauthenticated';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'hidden';
  return `status ${status}`;
}

describe.each(DIALECTS)('authorization matrix on %s', (dialect) => {
  let h: FullHarness;
  const tokens: Record<string, string | undefined> = {};
  const ids: Record<'own' | 'other', Record<string, string>> = { own: {}, other: {} };
  let table: AnyRoute[];

  beforeAll(async () => {
    h = await makeFullHarness(dialect, { server: { authorizeOnly: true } });
    table = routeTable(h.deps);
    h.engine.register(defineWorkflow({ name: 'matrix.noop', version: 1, run: async () => null }));
    for (const p of ['own', 'other'] as const) {
      await h.iam.createProject({ name: p });
      ids[p].run = (await h.engine.start('matrix.noop', {}, { labels: { project: p } })).id;
      ids[p].resource = (await h.resources.create({ kind: 'test/Thing', name: `thing-${p}`, project: p, spec: {} })).id;
      ids[p].secret = (await h.iam.createSecret({ project: p, name: `sec-${p}`, value: 'v' })).id;
      ids[p].stack = (await h.stacks.apply({ document: { metadata: { name: `st-${p}`, project: p } } })).stack.id;
      ids[p].project = p;
    }
    const adminId = (await h.iam.getUser('admin')).id;
    for (const c of CALLERS) {
      if (c.anonymous) continue;
      if (c.name === 'system-admin') {
        tokens[c.name] = h.adminToken;
        continue;
      }
      if (c.name === 'scoped-token') {
        tokens[c.name] = (await h.iam.createApiToken(adminId, { name: 'scoped', project: c.tokenProject, permissions: c.tokenPerms })).token;
        continue;
      }
      const u = await h.userWith(c.name, c.own ?? c.system ?? null, c.system ? { system: true } : { project: 'own' });
      tokens[c.name] = u.token;
    }
  });
  afterAll(async () => h?.cleanupAll());

  it('every route declares a valid policy, and every served path is in the route table', async () => {
    const served: string[] = [];
    for (const r of table) {
      expect(r.policy, `${r.method} ${fullUrl(r)} has no policy`).toBeDefined();
      expect(['public', 'authenticated', 'system', 'project', 'any']).toContain(r.policy.scope);
      if ('permission' in r.policy) expect(Object.keys(PERMISSIONS), `${fullUrl(r)}`).toContain(r.policy.permission);
      if (r.policy.scope === 'project') expect(r.project, `${fullUrl(r)} needs a project resolver`).toBeTypeOf('function');
    }
    // every route Fastify serves is either in the table or a documentation asset
    const known = new Set([...table, ...STATIC_ROUTES].map((r) => `${r.method} ${fullUrl(r)}`));
    for (const route of servedRoutes(h.app)) {
      const [method, path] = route.split(' ') as [string, string];
      if (PLUGIN_PATH_PREFIXES.some((p) => path.startsWith(p))) continue;
      served.push(route);
      expect(known.has(route) || (method === 'HEAD' && known.has(`GET ${path}`)), `${route} is served but has no entry (and no policy) in the route table`).toBe(true);
    }
    expect(served.length).toBeGreaterThan(50);
    // a route without a policy stops the server from starting
    const { createServer } = await import('../src/api/server.js');
    await expect(createServer(h.deps, { extraRoutes: [{ method: 'GET', url: '/nopolicy', summary: 'x', tags: [], schema: {}, handler: () => ({}) } as unknown as AnyRoute] })).rejects.toThrow(/has no policy/);
  });

  it('every route × caller × own/other project answers as the role specification says', async () => {
    const failures: string[] = [];
    let checked = 0;
    for (const r of table) {
      const targets: ('own' | 'other' | undefined)[] = r.policy.scope === 'project' ? ['own', 'other'] : [undefined];
      for (const target of targets) {
        const url = fullUrl(r);
        const hasIdParam = url.includes(':id') || url.includes(':project');
        const listAcross = r.policy.scope === 'project' && !hasIdParam && r.method === 'GET';
        const takesProject = !!(r.schema.querystring as { shape?: Record<string, unknown> } | undefined)?.shape?.project;
        const variants: ('own' | 'other' | undefined)[] = listAcross ? (!takesProject ? (target === 'own' ? [undefined] : []) : target === 'own' ? [undefined, 'own'] : [target]) : [target];
        for (const v of variants) {
          for (const c of CALLERS) {
            const req = buildRequest(r, v, ids);
            const res = await h.app.inject({ method: r.method, url: req.url, headers: { ...(tokens[c.name] ? { authorization: `Bearer ${tokens[c.name]}` } : {}), ...(req.body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(req.body !== undefined ? { payload: JSON.stringify(req.body) } : {}) });
            let body: unknown;
            try {
              body = res.json();
            } catch {
              body = res.body;
            }
            const want = expected(c, r.policy, r.policy.scope === 'project' ? v : undefined);
            const got = observed(r, res.statusCode, body);
            checked++;
            if (want !== got) failures.push(`${r.method} ${url} [${v ?? 'no project'}] as ${c.name}: expected ${want}, got ${got} ${typeof body === 'object' ? JSON.stringify(body).slice(0, 160) : ''}`);
          }
        }
      }
    }
    expect(failures, failures.slice(0, 30).join('\n')).toEqual([]);
    expect(checked).toBeGreaterThan(table.length * CALLERS.length);
  });
});

/** A request for `r` aimed at `target`'s objects, with a body that passes the route's schema. */
function buildRequest(r: AnyRoute, target: 'own' | 'other' | undefined, ids: Record<'own' | 'other', Record<string, string>>): { url: string; body?: unknown } {
  const url = fullUrl(r);
  const t = target ?? 'own';
  const area = url.split('/')[3] ?? '';
  const objectFor: Record<string, string> = { runs: 'run', resources: 'resource', secrets: 'secret', stacks: 'stack', projects: 'project' };
  let path = url.replace(':id', () => (r.policy.scope === 'project' ? ids[t][objectFor[area] ?? ''] ?? 'unknown-fixture' : 'x-id')).replace(':user', 'someone').replace(':project', t).replace(':name', 'matrix').replace(':cluster', 'matrix');
  const qs = r.policy.scope === 'project' && !url.includes(':id') && !url.includes(':project') && r.method === 'GET' && target !== undefined ? `?project=${t}` : '';
  path += qs;
  const key = `${r.method} ${url}`;
  const doc = `apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: matrix\n  project: ${t}\n`;
  const bodies: Record<string, unknown> = {
    'POST /api/v1/auth/login': { name: 'someone', password: 'whatever' },
    'POST /api/v1/secrets': { project: t, name: 'matrix', value: 'v' },
    'POST /api/v1/servers': { project: t, name: 'vm', flavor: 'f', image: 'i', networks: ['n'] },
    'POST /api/v1/resources': { project: t, kind: 'network/Network', name: 'matrix-net' },
    'POST /api/v1/stacks': { document: doc },
    'POST /api/v1/stacks/plan': { document: doc },
    'POST /api/v1/runs/:id/skip': { step: 'x' },
    'POST /api/v1/runs/:id/signal': { name: 'x' },
    'POST /api/v1/stacks/:id/approve': { step: 'x' },
    'PATCH /api/v1/secrets/:id': { description: 'x' },
    'POST /api/v1/apps': { project: t, name: 'matrix', cluster: 'c', template: { files: { 'template.yaml': 'name: m' } } },
    'POST /api/v1/apps/render': { template: { files: { 'template.yaml': 'name: m' } } },
    'PUT /api/v1/apps/:project/:name/load': { rps: 1 },
    'PUT /api/v1/apps/clusters/:project/:cluster/autoscaler': { pools: [{ name: 'w', min: 1, max: 2, cpu: 1000, memoryMiB: 1024 }] },
  };
  if (key in bodies) return { url: path, body: bodies[key] };
  if (r.method === 'POST' || r.method === 'PATCH' || r.method === 'PUT') return { url: path, body: {} };
  return { url: path };
}
