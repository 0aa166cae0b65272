import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/clock.js';
import { Engine } from '../engine/index.js';
import { DIALECTS, openTestStore, type TestDb } from '../../test/support/dialects.js';
import { ProviderRegistry } from './registry.js';
import { ResourceStore } from './store.js';
import type { KindHandler, Provider } from './types.js';

const KEY = Buffer.alloc(32, 9).toString('base64');

describe.each(DIALECTS)('resource store on %s', (dialect) => {
  let t: TestDb;
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.stop({ graceful: false });
    engine = undefined;
    await t?.cleanup();
  });

  it('creates with validated specs and unique live names; a deleted name can be reused', async () => {
    t = await openTestStore(dialect);
    const rs = new ResourceStore(t.store, { clock: new ManualClock() });
    const r = await rs.create({ kind: 'network/Network', name: 'net-a', project: 'p1', spec: {}, labels: { env: 'prod' } });
    expect(r).toMatchObject({ kind: 'network/Network', generation: 1, status: { phase: 'pending', observedGeneration: 0 }, spec: { mtu: 1500 } });
    await expect(rs.create({ kind: 'network/Network', name: 'net-a', project: 'p1', spec: {} })).rejects.toMatchObject({ code: 'resources.name_taken' });
    await expect(rs.create({ kind: 'network/Network', name: 'x', project: 'p1', spec: { mtu: 1 } })).rejects.toMatchObject({ code: 'resources.invalid_spec', message: expect.stringContaining('spec.mtu') });
    await expect(rs.create({ kind: 'network/Subnet', name: 'x', project: 'p1', spec: { network: 'n' } })).rejects.toMatchObject({ code: 'resources.invalid_spec', message: expect.stringContaining('cidr') });
    await expect(rs.create({ kind: 'compute/Teapot', name: 'x', project: 'p1', spec: {} })).rejects.toMatchObject({ code: 'resources.unknown_kind' });
    await expect(rs.create({ kind: 'network/Network', name: 'bad name!', project: 'p1', spec: {} })).rejects.toMatchObject({ code: 'resources.invalid_name' });
    expect((await rs.create({ kind: 'network/Network', name: 'net-a', project: 'p2', spec: {} })).project).toBe('p2');
    await rs.delete(r.id);
    const again = await rs.create({ kind: 'network/Network', name: 'net-a', project: 'p1', spec: {} });
    expect(again.id).not.toBe(r.id);
    expect((await rs.get(r.id)).status.phase).toBe('deleted');
    expect((await rs.getByName('p1', 'network/Network', 'net-a'))?.id).toBe(again.id);
  });

  it('lists with filters and a cursor', async () => {
    t = await openTestStore(dialect);
    const rs = new ResourceStore(t.store);
    for (let i = 0; i < 7; i++) await rs.create({ kind: i % 2 ? 'network/Network' : 'network/SecurityGroup', name: `r-${i}`, project: i < 5 ? 'p1' : 'p2', spec: {}, labels: { tier: i % 3 === 0 ? 'web' : 'db' }, owner: i < 3 ? 'stack:s1' : null });
    const page1 = await rs.list({ project: 'p1', limit: 2 });
    expect(page1.items.map((r) => r.name)).toEqual(['r-0', 'r-1']);
    const page2 = await rs.list({ project: 'p1', limit: 2, after: page1.nextCursor! });
    const page3 = await rs.list({ project: 'p1', limit: 2, after: page2.nextCursor! });
    expect([...page2.items, ...page3.items].map((r) => r.name)).toEqual(['r-2', 'r-3', 'r-4']);
    expect(page3.nextCursor).toBeUndefined();
    expect((await rs.list({ kind: 'network/Network' })).items.map((r) => r.name)).toEqual(['r-1', 'r-3', 'r-5']);
    expect((await rs.list({ labels: { tier: 'web' } })).items.map((r) => r.name)).toEqual(['r-0', 'r-3', 'r-6']);
    expect((await rs.list({ labels: { tier: 'web' }, project: 'p2' })).items.map((r) => r.name)).toEqual(['r-6']);
    expect((await rs.list({ owner: 'stack:s1' })).items.length).toBe(3);
    expect((await rs.list({ namePrefix: 'r-1' })).items.map((r) => r.name)).toEqual(['r-1']);
    await rs.updateStatus(page1.items[0]!.id, { phase: 'ready' });
    expect((await rs.list({ phase: 'ready' })).items.map((r) => r.name)).toEqual(['r-0']);
  });

  it('bumps the generation on spec updates and fences stale writers', async () => {
    t = await openTestStore(dialect);
    const rs = new ResourceStore(t.store);
    const r = await rs.create({ kind: 'network/Network', name: 'n', project: 'p1', spec: {} });
    const u = await rs.updateSpec(r.id, { mtu: 9000 }, { labels: { a: 'b' } });
    expect(u).toMatchObject({ generation: 2, spec: { mtu: 9000 }, labels: { a: 'b' } });
    await expect(rs.updateSpec(r.id, { mtu: 1400 }, { expectedGeneration: 1 })).rejects.toMatchObject({ code: 'resources.stale_generation' });
    await expect(rs.updateSpec(r.id, { mtu: 5 })).rejects.toMatchObject({ code: 'resources.invalid_spec' });
    expect((await rs.updateSpec(r.id, { mtu: 1400 }, { expectedGeneration: 2 })).generation).toBe(3);
  });

  it('merges conditions (keeping transition times), publishes events, and keeps secrets sealed', async () => {
    t = await openTestStore(dialect);
    const clock = new ManualClock();
    engine = new Engine({ store: t.store, clock });
    const rs = new ResourceStore(t.store, { clock, engine, secretKey: KEY });
    const r = await rs.create({ kind: 'network/Network', name: 'n', project: 'p1', spec: {} });
    await rs.updateStatus(r.id, { phase: 'creating', conditions: [{ type: 'Provisioned', status: 'False', reason: 'Scheduling', message: 'scheduling' }] });
    const t0 = clock.now();
    clock.advance(5000);
    await rs.updateStatus(r.id, { conditions: [{ type: 'Provisioned', status: 'False', reason: 'Booting', message: 'booting' }] });
    let cur = await rs.get(r.id);
    expect(cur.status.conditions[0]).toMatchObject({ reason: 'Booting', lastTransitionTime: t0 });
    clock.advance(5000);
    await rs.updateStatus(r.id, { phase: 'ready', outputs: { id: 'net-1' }, conditions: [{ type: 'Provisioned', status: 'True', reason: 'Created', message: 'ok' }], secrets: { token: 's3cr3t' } });
    cur = await rs.get(r.id);
    expect(cur.status.conditions[0]).toMatchObject({ status: 'True', lastTransitionTime: t0 + 10_000 });
    expect(JSON.stringify(cur)).not.toContain('s3cr3t');
    expect(await rs.getSecrets(r.id)).toEqual({ token: 's3cr3t' });
    const raw = await t.store.db.selectFrom('resources').select(['secrets']).where('id', '=', r.id).executeTakeFirstOrThrow();
    expect(raw.secrets).not.toContain('s3cr3t');
    await expect(new ResourceStore(t.store).getSecrets(r.id)).rejects.toMatchObject({ code: 'resources.secret_key_missing' });
    const events = await rs.events(r.id, {}, engine);
    expect(events.map((e) => e.type)).toEqual(['resource.created', 'resource.phase_changed', 'resource.condition_changed', 'resource.condition_changed', 'resource.phase_changed', 'resource.condition_changed']);
    expect(events[4]!.data).toMatchObject({ from: 'creating', to: 'ready', kind: 'network/Network', name: 'n', project: 'p1' });
    await rs.delete(r.id);
    expect((await rs.events(r.id, { types: ['resource.deleted'] }, engine)).length).toBe(1);
  });
});

describe('provider registry', () => {
  const fake = (name: string, kinds: string[]): Provider => ({ name, kinds: () => kinds, handler: (kind) => ({ kind }) as unknown as KindHandler });

  it('routes exact kind over domain wildcard over the default', () => {
    const reg = new ProviderRegistry({ 'dns/*': 'powerdns', 'dns/Zone': 'sim', '*': 'sim' })
      .register(fake('sim', ['dns/Zone', 'dns/Record', 'compute/Server']))
      .register(fake('powerdns', ['dns/Record']));
    expect(reg.providerNameFor('dns/Record')).toBe('powerdns');
    expect(reg.providerNameFor('dns/Zone')).toBe('sim');
    expect(reg.providerNameFor('compute/Server')).toBe('sim');
    expect(reg.resolve('dns/Record').provider.name).toBe('powerdns');
  });

  it('explains what is missing', () => {
    const reg = new ProviderRegistry({ 'dns/*': 'powerdns' }).register(fake('sim', ['compute/Server']));
    expect(() => reg.resolve('compute/Server')).toThrow(/no provider is configured for kind compute\/Server/);
    expect(() => reg.resolve('dns/Zone')).toThrow(/provider "powerdns" is not registered/);
    reg.configure({ '*': 'sim' });
    expect(() => reg.resolve('dns/Zone')).toThrow(/does not implement dns\/Zone/);
    expect(() => reg.configure({ 'Bad Key': 'sim' })).toThrow(/routing key/);
  });
});
