import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { createContext, type AppContext } from '../src/app/context.js';
import { buildApi, type ApiHost } from '../src/api/app.js';

/**
 * The OpenStack façade in process (no client installed): Keystone tokens and
 * application credentials, microversion negotiation, error shapes per
 * service, project isolation, and a server's life as a durable run.
 */
const PASSWORD = 'facade-admin-password';
let dir: string;
let ctx: AppContext;
let host: ApiHost;
let app: FastifyInstance;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'os-facade-'));
  const config = loadConfig({ env: { INFRAFLOW_DATA_DIR: dir, INFRAFLOW_SIM_SPEED: '2000' } });
  ctx = await createContext(config, silentLogger, { startWorker: true });
  const { inventory, ipam, allocations, resources, registry, sim, stacks } = ctx;
  host = await buildApi({
    config, store: ctx.store, clock: ctx.clock, logger: silentLogger, engine: ctx.engine,
    areas: { inventory, ipam, allocations, resources, registry, sim, stacks, openstack: { imageDir: join(dir, 'images') } },
    env: { INFRAFLOW_ADMIN_PASSWORD: PASSWORD, INFRAFLOW_RATE_LIMIT: '0' }, print: () => {}, server: { docs: false },
  });
  app = host.app;
  await app.ready();
}, 120_000);
afterAll(async () => {
  await app?.close();
  await ctx?.close();
  await rm(dir, { recursive: true, force: true });
});

const json = (body: string) => JSON.parse(body) as any;
async function token(user: string, password: string, project: string): Promise<{ token: string; body: any; status: number }> {
  const r = await app.inject({ method: 'POST', url: '/openstack/identity/v3/auth/tokens', payload: { auth: { identity: { methods: ['password'], password: { user: { name: user, password, domain: { name: 'Default' } } } }, scope: { project: { name: project, domain: { name: 'Default' } } } } } });
  return { token: String(r.headers['x-subject-token'] ?? ''), body: json(r.body), status: r.statusCode };
}

describe('OpenStack façade', () => {
  it('Keystone: a project-scoped token with roles and the catalogue; validation; revocation', async () => {
    const t = await token('admin', PASSWORD, 'default');
    expect(t.status).toBe(201);
    expect(t.body.token.project.name).toBe('default');
    expect(t.body.token.roles.map((r: { name: string }) => r.name)).toContain('admin');
    expect(t.body.token.catalog.map((c: { type: string }) => c.type)).toEqual(expect.arrayContaining(['identity', 'compute', 'image', 'network', 'volumev3']));
    const v = await app.inject({ method: 'GET', url: '/openstack/identity/v3/auth/tokens', headers: { 'x-auth-token': t.token, 'x-subject-token': t.token } });
    expect(v.statusCode).toBe(200);
    expect(json(v.body).token.user.name).toBe('admin');
    const other = await token('admin', PASSWORD, 'default');
    expect((await app.inject({ method: 'DELETE', url: '/openstack/identity/v3/auth/tokens', headers: { 'x-auth-token': t.token, 'x-subject-token': other.token } })).statusCode).toBe(204);
    const after = await app.inject({ method: 'GET', url: '/openstack/compute/v2.1/flavors', headers: { 'x-auth-token': other.token } });
    expect(after.statusCode).toBe(401);
    expect(json(after.body).unauthorized.code).toBe(401);
  });

  it('refuses a wrong password and a project the user has no role on, in Keystone\'s shape', async () => {
    const bad = await token('admin', 'wrong', 'default');
    expect(bad.status).toBe(401);
    expect(bad.body.error).toMatchObject({ code: 401, title: 'Unauthorized' });
    await host.iam.createUser({ name: 'alice', password: 'alice-password-123' });
    await host.iam.createProject({ name: 'other' });
    const denied = await token('alice', 'alice-password-123', 'other');
    expect(denied.status).toBe(401);
    expect(denied.body.error.message).toMatch(/not authorized for project other/);
  });

  it('application credentials: create (secret once), authenticate with id and secret, revoke', async () => {
    const t = await token('admin', PASSWORD, 'default');
    const uid = t.body.token.user.id;
    const created = await app.inject({ method: 'POST', url: `/openstack/identity/v3/users/${uid}/application_credentials`, headers: { 'x-auth-token': t.token }, payload: { application_credential: { name: 'ci' } } });
    expect(created.statusCode).toBe(201);
    const ac = json(created.body).application_credential;
    expect(ac.secret).toBeTruthy();
    const listed = json((await app.inject({ method: 'GET', url: `/openstack/identity/v3/users/${uid}/application_credentials`, headers: { 'x-auth-token': t.token } })).body);
    expect(listed.application_credentials.map((x: { id: string; secret?: string }) => [x.id, x.secret])).toEqual([[ac.id, undefined]]);
    const auth = (id: string, secret: string) => app.inject({ method: 'POST', url: '/openstack/identity/v3/auth/tokens', payload: { auth: { identity: { methods: ['application_credential'], application_credential: { id, secret } } } } });
    const ok = await auth(ac.id, ac.secret);
    expect(ok.statusCode).toBe(201);
    expect(json(ok.body).token.project.name).toBe('default');
    expect((await auth(ac.id, 'wrong-secret')).statusCode).toBe(401);
    expect((await app.inject({ method: 'DELETE', url: `/openstack/identity/v3/users/${uid}/application_credentials/${ac.id}`, headers: { 'x-auth-token': t.token } })).statusCode).toBe(204);
    expect((await auth(ac.id, ac.secret)).statusCode).toBe(401);
  });

  it('Nova microversions: negotiated, echoed, 406 outside the range; errors in each service\'s shape', async () => {
    const { token: tk } = await token('admin', PASSWORD, 'default');
    const h = { 'x-auth-token': tk };
    const latest = await app.inject({ method: 'GET', url: '/openstack/compute/v2.1/flavors/detail', headers: { ...h, 'openstack-api-version': 'compute latest' } });
    expect(latest.headers['openstack-api-version']).toBe('compute 2.60');
    const old = await app.inject({ method: 'GET', url: '/openstack/compute/v2.1/flavors/detail', headers: h });
    expect(old.headers['openstack-api-version']).toBe('compute 2.1');
    const tooNew = await app.inject({ method: 'GET', url: '/openstack/compute/v2.1/flavors', headers: { ...h, 'openstack-api-version': 'compute 2.99' } });
    expect(tooNew.statusCode).toBe(406);
    expect(json(tooNew.body).notAcceptable.message).toMatch(/maximum is 2\.60/);
    const missing = await app.inject({ method: 'GET', url: '/openstack/compute/v2.1/servers/00000000-0000-0000-0000-000000000000', headers: h });
    expect(json(missing.body)).toEqual({ itemNotFound: { code: 404, message: expect.stringMatching(/could not be found/) } });
    const net = await app.inject({ method: 'GET', url: '/openstack/network/v2.0/networks/nope', headers: h });
    expect(net.statusCode).toBe(404);
    expect(json(net.body).NeutronError).toMatchObject({ type: 'NetworkNotFound' });
    const badBody = await app.inject({ method: 'POST', url: '/openstack/network/v2.0/networks', headers: { ...h, 'content-type': 'application/json' }, payload: '{"network": ' });
    expect(badBody.statusCode).toBe(400);
    expect(json(badBody.body).NeutronError).toBeDefined();
  });

  it('a server is a resource created by a durable run: BUILD → ACTIVE, stop → SHUTOFF, delete → 404; another project cannot see it', async () => {
    const { token: tk, body } = await token('admin', PASSWORD, 'default');
    const h = { 'x-auth-token': tk };
    const net = json((await app.inject({ method: 'POST', url: '/openstack/network/v2.0/networks', headers: h, payload: { network: { name: 'n1' } } })).body).network;
    const sub = await app.inject({ method: 'POST', url: '/openstack/network/v2.0/subnets', headers: h, payload: { subnet: { network_id: net.id, cidr: '10.9.0.0/24', ip_version: 4 } } });
    expect(sub.statusCode).toBe(201);
    const created = await app.inject({ method: 'POST', url: '/openstack/compute/v2.1/servers', headers: h, payload: { server: { name: 'web 1', flavorRef: 'flv-scs-1v-2-10', imageRef: 'img-debian-12', networks: [{ uuid: net.id }], metadata: { tier: 'web' } } } });
    expect(created.statusCode).toBe(202);
    const id = json(created.body).server.id as string;
    const resource = await ctx.resources.get(id);
    expect(resource.kind).toBe('compute/Server');
    expect(resource.labels['openstack.org/name']).toBe('web 1');
    const runs = await ctx.engine.list({ labels: { resource: id } });
    expect(runs.map((r) => r.workflow)).toEqual(['resource.provision']);
    const show = async () => json((await app.inject({ method: 'GET', url: `/openstack/compute/v2.1/servers/${id}`, headers: h })).body).server;
    await vi.waitFor(async () => expect((await show()).status).toBe('ACTIVE'), { timeout: 60_000, interval: 50 });
    expect(Object.values((await show()).addresses).flat()).toEqual([expect.objectContaining({ addr: expect.stringMatching(/^10\.9\.0\./), 'OS-EXT-IPS:type': 'fixed' })]);
    expect((await app.inject({ method: 'POST', url: `/openstack/compute/v2.1/servers/${id}/action`, headers: h, payload: { 'os-start': null } })).statusCode).toBe(409);
    expect((await app.inject({ method: 'POST', url: `/openstack/compute/v2.1/servers/${id}/action`, headers: h, payload: { 'os-stop': null } })).statusCode).toBe(202);
    await vi.waitFor(async () => expect((await show()).status).toBe('SHUTOFF'), { timeout: 60_000, interval: 50 });

    // another project's member sees none of it
    await host.iam.createUser({ name: 'bob', password: 'bob-password-1234' });
    await host.iam.createProject({ name: 'team-b' });
    await host.iam.assign({ role: 'member', user: 'bob', project: 'team-b' });
    const bob = await token('bob', 'bob-password-1234', 'team-b');
    expect(bob.status).toBe(201);
    const bobView = await app.inject({ method: 'GET', url: `/openstack/compute/v2.1/servers/${id}`, headers: { 'x-auth-token': bob.token } });
    expect(bobView.statusCode).toBe(404);
    expect(json((await app.inject({ method: 'GET', url: '/openstack/compute/v2.1/servers/detail', headers: { 'x-auth-token': bob.token } })).body).servers).toEqual([]);
    void body;

    expect((await app.inject({ method: 'DELETE', url: `/openstack/compute/v2.1/servers/${id}`, headers: h })).statusCode).toBe(204);
    await vi.waitFor(async () => expect((await app.inject({ method: 'GET', url: `/openstack/compute/v2.1/servers/${id}`, headers: h })).statusCode).toBe(404), { timeout: 60_000, interval: 50 });
  });
});
