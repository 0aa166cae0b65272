import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { parseSse } from './api-harness.js';

/**
 * Stacks and the single-VM path through the API, on the real stacks module,
 * engine and simulated datacenter: plan, apply, watch the run's event stream
 * to the end, read the stack and its resources, destroy; POST /servers; the
 * error cases (bad documents name their position, stale revisions, unknown
 * stacks, another tenant's stack).
 */
describe.each(DIALECTS)('API stacks and servers on %s', (dialect) => {
  let t: TestDb;
  let s: StackHarness;
  let h: Harness;
  let member: string;
  let outsider: string;

  beforeAll(async () => {
    t = await openTestStore(dialect);
    s = await stackHarness(t.store);
    h = await makeHarness(dialect, { engine: s.engine, t, areas: { resources: s.resources, stacks: s.stacks } });
    await h.iam.createProject({ name: 'elsewhere' });
    member = (await h.userWith('stack-member', 'member', { project: 'default' })).token;
    outsider = (await h.userWith('stack-outsider', 'member', { project: 'elsewhere' })).token;
  });
  afterAll(async () => {
    await h?.close();
    await s?.close();
    await t?.cleanup();
  });

  const webTier = () => readFileSync('examples/stacks/web-tier.yaml', 'utf8');

  it('plans, applies, streams the run to its end, reads the stack and destroys it', async () => {
    const plan = await h.req('POST', '/api/v1/stacks/plan', { token: member, body: { document: webTier(), file: 'web-tier.yaml', params: { replicas: 2 } } });
    expect(plan.statusCode, plan.body).toBe(200);
    expect(plan.json().text).toContain('create');
    const apply = await h.req('POST', '/api/v1/stacks', { token: member, body: { document: webTier(), file: 'web-tier.yaml', params: { replicas: 2 } } });
    expect(apply.statusCode, apply.body).toBe(202);
    const { stack, run } = apply.json();
    expect(run.project).toBe('default');
    const stream = await h.req('GET', `/api/v1/runs/${run.id}/events/stream`, { token: member });
    const events = parseSse(stream.body);
    expect(events.at(-1)!.event).toBe('end');
    expect(events.map((e) => e.event)).toContain('run.succeeded');
    const got = await h.req('GET', `/api/v1/stacks/${stack.id}`, { token: member });
    expect(got.statusCode).toBe(200);
    expect(got.headers.etag).toBe(`"${got.json().revision}"`);
    const res = await h.req('GET', `/api/v1/stacks/${stack.id}/resources`, { token: member });
    expect(res.json().items.length).toBeGreaterThan(5);
    const servers = await h.req('GET', '/api/v1/resources?project=default&kind=compute/Server', { token: member });
    expect(servers.json().items).toHaveLength(2);
    expect(servers.json().items.every((r: any) => r.status.phase === 'ready')).toBe(true);
    // a stale revision is refused, a bad document names its position
    const stale = await h.req('POST', '/api/v1/stacks', { token: member, body: { document: webTier(), params: { replicas: 2 }, expectedRevision: 0 } });
    expect([409, 412]).toContain(stale.statusCode);
    const bad = await h.req('POST', '/api/v1/stacks/plan', { token: member, body: { document: 'apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: x\nspec:\n  resources:\n    a:\n      kind: compute/Nope\n', file: 'bad.yaml' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().detail).toMatch(/bad\.yaml|line|compute\/Nope/);
    // another tenant cannot see or destroy it
    expect((await h.req('GET', `/api/v1/stacks/${stack.id}`, { token: outsider })).statusCode).toBe(404);
    expect((await h.req('POST', `/api/v1/stacks/${stack.id}/destroy`, { token: outsider })).statusCode).toBe(404);
    expect((await h.req('GET', '/api/v1/stacks/stk_nope0000000000', { token: member })).statusCode).toBe(404);
    const destroy = await h.req('POST', `/api/v1/stacks/${stack.id}/destroy`, { token: member });
    expect(destroy.statusCode, destroy.body).toBe(202);
    const done = await s.engine.result(destroy.json().run.id);
    expect(done.status).toBe('succeeded');
    const after = await h.req('GET', '/api/v1/resources?project=default&kind=compute/Server', { token: member });
    expect(after.json().items).toHaveLength(0);
    expect((await h.req('DELETE', `/api/v1/stacks/${stack.id}`, { token: member })).statusCode).toBe(204);
  });

  it('POST /servers creates a server with what it needs as a small stack', async () => {
    const r = await h.req('POST', '/api/v1/servers', {
      token: member,
      body: { project: 'default', name: 'vm1', flavor: 'SCS-2V-4', image: 'ubuntu-24.04', bootVolumeSize: 20, networks: ['appnet'], securityGroups: ['ssh'], keyName: 'ops', publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb3m6yTk0n8dJZ6r7q2m8r3M3bq8eY8H2dHnQk0Zk7x ops@example.com' },
    });
    expect(r.statusCode, r.body).toBe(202);
    const { run, server } = r.json();
    expect(server.stack).toBe('server-vm1');
    const final = await s.engine.result(run.id);
    expect(final.status, JSON.stringify(final.error)).toBe('succeeded');
    const vms = await h.req('GET', '/api/v1/resources?project=default&kind=compute/Server', { token: member });
    expect(vms.json().items.map((x: any) => x.status.phase)).toEqual(['ready']);
    // the server's stack holds the server; what it needed sits in shared stacks, one per name
    const kinds = (await h.req('GET', `/api/v1/stacks/${server.stack}/resources?project=default`, { token: member })).json().items.map((x: any) => x.kind).sort();
    expect(kinds).toEqual(['compute/Server']);
    const shared = (await h.req('GET', '/api/v1/stacks?project=default', { token: member })).json().items.map((x: any) => x.name).sort();
    expect(shared).toEqual(['server-vm1', 'shared-key-ops', 'shared-net-appnet', 'shared-sg-ssh']);
    expect((await h.req('GET', '/api/v1/stacks/shared-net-appnet/resources?project=default', { token: member })).json().items.map((x: any) => x.kind).sort()).toEqual(['network/Network', 'network/Subnet']);
    expect(final.output).toMatchObject({ stackName: 'server-vm1', resource: 'server-vm1-server' });
    // a second server on the same network reuses it
    const r2 = await h.req('POST', '/api/v1/servers', { token: member, body: { project: 'default', name: 'vm2', flavor: 'SCS-2V-4', image: 'ubuntu-24.04', bootVolumeSize: 10, networks: ['appnet'], securityGroups: ['ssh'], keyName: 'ops' } });
    expect(r2.statusCode, r2.body).toBe(202);
    const fin2 = await s.engine.result(r2.json().run.id);
    expect(fin2.status, JSON.stringify(fin2.error)).toBe('succeeded');
    // nothing was created twice: vm2's stack holds only its server
    expect((await h.req('GET', `/api/v1/stacks/${r2.json().server.stack}/resources?project=default`, { token: member })).json().items.map((x: any) => x.kind)).toEqual(['compute/Server']);
    expect((await h.req('GET', '/api/v1/resources?project=default&kind=network/Network', { token: member })).json().items).toHaveLength(1);
    // the name is taken now: 409 naming the field
    const again = await h.req('POST', '/api/v1/servers', { token: member, body: { project: 'default', name: 'vm2', flavor: 'SCS-2V-4', image: 'ubuntu-24.04', bootVolumeSize: 10, networks: ['appnet'] } });
    expect(again.statusCode).toBe(409);
    // a keyName that names no keypair, without publicKey: 400 at once
    const nokey = await h.req('POST', '/api/v1/servers', { token: member, body: { project: 'default', name: 'vm4', flavor: 'SCS-2V-4', image: 'ubuntu-24.04', bootVolumeSize: 10, networks: ['appnet'], keyName: 'nope' } });
    expect(nokey.statusCode).toBe(400);
    expect(nokey.json().errors.map((e: any) => e.field)).toEqual(['keyName']);
    const bad = await h.req('POST', '/api/v1/servers', { token: member, body: { project: 'default', name: 'Bad_Name', flavor: 'f', image: 'i', networks: [] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors.map((e: any) => e.field)).toEqual(expect.arrayContaining(['body.name', 'body.networks']));
    expect((await h.req('POST', '/api/v1/servers', { token: outsider, body: { project: 'default', name: 'vm3', flavor: 'f', image: 'i', networks: ['n'] } })).statusCode).toBe(404);
  });
});
