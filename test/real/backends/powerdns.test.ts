import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PowerDnsProvider } from '../../../src/providers/powerdns/index.js';
import { runProviderContract } from '../../../src/resources/contract.js';
import { isProviderError } from '../../../src/resources/errors.js';
import { parseSpec } from '../../../src/resources/kinds.js';
import type { ProviderCallContext } from '../../../src/resources/types.js';
import { dig, digFull, startPowerDns, type PdnsServer } from './pdns-server.js';

/** PowerDNS Authoritative started from Debian's pdns-server; every claim is checked with `dig` against it. */

let contractServer: PdnsServer;
runProviderContract('powerdns (pdns_server, sqlite3 backend)', async () => {
  contractServer = await startPowerDns();
  const provider = new PowerDnsProvider({ url: contractServer.url, apiKey: contractServer.apiKey });
  // the records' zone exists before the samples run (a prerequisite, as the contract says)
  await provider.handler('dns/Zone').create(parseSpec('dns/Zone', { name: 'contract-rec.test' }), { idempotencyKey: 'pre', project: 'contract', resourceId: 'res_pre', resourceName: 'pre' });
  return {
    provider,
    tick: () => new Promise((r) => setTimeout(r, 50)),
    maxReads: 100,
    samples: async () => [
      { kind: 'dns/Zone', spec: { name: 'contract-zone.test' }, update: { name: 'contract-zone.test', ttl: 600, email: 'dns@example.org' }, replace: { name: 'other.test' }, invalid: { name: 'not a zone!' } },
      { kind: 'dns/Record', spec: { zone: 'contract-rec.test', name: 'www', type: 'A', values: ['192.0.2.10'] }, update: { zone: 'contract-rec.test', name: 'www', type: 'A', ttl: 60, values: ['192.0.2.11', '192.0.2.12'] }, replace: { zone: 'contract-rec.test', name: 'www', type: 'AAAA', values: ['2001:db8::1'] }, invalid: { zone: 'contract-rec.test', name: 'www', type: 'A', values: ['not-an-ip'] } },
    ],
    cleanup: async () => { await contractServer?.stop(); },
  };
}, { describe, it, beforeAll, afterAll }, { kinds: ['dns/Zone', 'dns/Record'] });

describe('powerdns provider answers dig', () => {
  let server: PdnsServer;
  let p: PowerDnsProvider;
  let n = 0;
  const ctx = (key = `k${n++}`, project = 'p1'): ProviderCallContext => ({ idempotencyKey: key, project, resourceId: `res_${key}`, resourceName: key });
  const zone = (spec: Record<string, unknown>, c = ctx()) => p.handler('dns/Zone').create(parseSpec('dns/Zone', spec), c);
  const record = (spec: Record<string, unknown>, c = ctx()) => p.handler('dns/Record').create(parseSpec('dns/Record', spec), c);
  const serial = (name: string) => Number(dig(server, name, 'SOA')[0]!.split(/\s+/)[2]);

  beforeAll(async () => {
    server = await startPowerDns();
    p = new PowerDnsProvider({ url: server.url, apiKey: server.apiKey, nameservers: ['ns1.infra.test'] });
    await zone({ name: 'apps.test', ttl: 1200, email: 'noc@apps.test' });
  });
  afterAll(async () => { await server?.stop(); });

  it('creates A, AAAA, CNAME, TXT, SRV and MX records that dig resolves with their TTLs', async () => {
    await record({ zone: 'apps.test', name: 'api', type: 'A', ttl: 120, values: ['192.0.2.1', '192.0.2.2'] });
    await record({ zone: 'apps.test', name: 'api', type: 'AAAA', values: ['2001:db8::10'] });
    await record({ zone: 'apps.test', name: 'console', type: 'CNAME', values: ['api.apps.test'] });
    await record({ zone: 'apps.test', name: 'info', type: 'TXT', values: ['hello "world"', 'v=spf1 -all'] });
    await record({ zone: 'apps.test', name: '_https._tcp', type: 'SRV', values: ['10 5 443 api.apps.test'] });
    await record({ zone: 'apps.test', name: '@', type: 'MX', values: ['10 mail.apps.test'] });
    expect(dig(server, 'api.apps.test', 'A').sort()).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(dig(server, 'api.apps.test', 'AAAA')).toEqual(['2001:db8::10']);
    expect(dig(server, 'console.apps.test', 'CNAME')).toEqual(['api.apps.test.']);
    expect(dig(server, 'info.apps.test', 'TXT').sort()).toEqual(['"hello \\"world\\""', '"v=spf1 -all"']);
    expect(dig(server, '_https._tcp.apps.test', 'SRV')).toEqual(['10 5 443 api.apps.test.']);
    expect(dig(server, 'apps.test', 'MX')).toEqual(['10 mail.apps.test.']);
    expect(digFull(server, 'api.apps.test', 'A')).toMatch(/api\.apps\.test\.\s+120\s+IN\s+A\s+192\.0\.2\.1/);
    // zone SOA: our nameserver, mailbox and default TTL
    expect(dig(server, 'apps.test', 'SOA')[0]).toMatch(/^ns1\.infra\.test\. noc\.apps\.test\. \d+ 10800 3600 604800 1200$/);
  });

  it('moves the SOA serial on every change and applies a zone TTL update', async () => {
    const before = serial('apps.test');
    await record({ zone: 'apps.test', name: 'serial1', type: 'A', values: ['192.0.2.50'] });
    const after = serial('apps.test');
    expect(after).toBeGreaterThan(before);
    const zh = p.handler('dns/Zone');
    await zh.update!('apps.test.', parseSpec('dns/Zone', { name: 'apps.test', ttl: 900, email: 'noc@apps.test' }), parseSpec('dns/Zone', { name: 'apps.test' }), ctx());
    const soa = dig(server, 'apps.test', 'SOA')[0]!.split(/\s+/);
    expect(soa[6]).toBe('900');
    expect(Number(soa[2])).toBeGreaterThan(after);
    expect((await zh.read('apps.test.', ctx())).observed).toMatchObject({ ttl: 900, email: 'noc@apps.test' });
  });

  it('a retried create with the same key changes nothing (same id, same serial)', async () => {
    const c = ctx('retry-key');
    const spec = { zone: 'apps.test', name: 'retry', type: 'A', values: ['192.0.2.77'] };
    const first = await record(spec, c);
    const s1 = serial('apps.test');
    const second = await record(spec, c);
    expect(second.externalId).toBe(first.externalId);
    expect(serial('apps.test')).toBe(s1);
    expect(dig(server, 'retry.apps.test', 'A')).toEqual(['192.0.2.77']);
    // the zone too: a retried zone create adopts it
    const zc = ctx('zone-retry');
    const z1 = await zone({ name: 'retry-zone.test' }, zc);
    const z2 = await zone({ name: 'retry-zone.test' }, zc);
    expect(z2.externalId).toBe(z1.externalId);
  });

  it('detects a record changed behind its back and reconciles it with update', async () => {
    const spec = parseSpec<Record<string, unknown>>('dns/Record', { zone: 'apps.test', name: 'drift', type: 'A', ttl: 300, values: ['192.0.2.30'] });
    const h = p.handler('dns/Record');
    const { externalId } = await h.create(spec, ctx());
    expect((await h.read(externalId, ctx())).observed).toEqual({ ttl: 300, values: ['192.0.2.30'] });
    // someone edits PowerDNS directly
    const res = await fetch(`${server.url}/api/v1/servers/localhost/zones/apps.test.`, { method: 'PATCH', headers: { 'X-API-Key': server.apiKey, 'content-type': 'application/json' }, body: JSON.stringify({ rrsets: [{ name: 'drift.apps.test.', type: 'A', ttl: 30, changetype: 'REPLACE', records: [{ content: '198.51.100.66', disabled: false }] }] }) });
    expect(res.status).toBe(204);
    expect(dig(server, 'drift.apps.test', 'A')).toEqual(['198.51.100.66']);
    const observed = (await h.read(externalId, ctx())).observed!;
    expect(observed).toEqual({ ttl: 30, values: ['198.51.100.66'] });
    const drifted = Object.keys(observed).filter((k) => JSON.stringify(observed[k]) !== JSON.stringify(spec[k]));
    expect(drifted.sort()).toEqual(['ttl', 'values']);
    await h.update!(externalId, spec, spec, ctx());
    expect(dig(server, 'drift.apps.test', 'A')).toEqual(['192.0.2.30']);
    expect((await h.read(externalId, ctx())).observed).toEqual({ ttl: 300, values: ['192.0.2.30'] });
  });

  it('publishes PTR records in the reverse zone when asked, and removes them with the record', async () => {
    await zone({ name: '2.0.192.in-addr.arpa' });
    await zone({ name: '8.b.d.0.1.0.0.2.ip6.arpa' });
    const a = await record({ zone: 'apps.test', name: 'node1', type: 'A', values: ['192.0.2.41'], ptr: true });
    await record({ zone: 'apps.test', name: 'node1', type: 'AAAA', values: ['2001:db8::41'], ptr: true });
    expect(dig(server, '41.2.0.192.in-addr.arpa', 'PTR')).toEqual(['node1.apps.test.']);
    expect(run6(server)).toEqual(['node1.apps.test.']);
    await p.handler('dns/Record').delete(a.externalId, ctx());
    expect(dig(server, 'node1.apps.test', 'A')).toEqual([]);
    expect(dig(server, '41.2.0.192.in-addr.arpa', 'PTR')).toEqual([]);
  });

  it('refuses to take over a record it does not manage, and a zone owned by another project', async () => {
    await fetch(`${server.url}/api/v1/servers/localhost/zones/apps.test.`, { method: 'PATCH', headers: { 'X-API-Key': server.apiKey, 'content-type': 'application/json' }, body: JSON.stringify({ rrsets: [{ name: 'foreign.apps.test.', type: 'A', ttl: 60, changetype: 'REPLACE', records: [{ content: '203.0.113.9', disabled: false }] }] }) });
    const err = await record({ zone: 'apps.test', name: 'foreign', type: 'A', values: ['192.0.2.9'] }).catch((e: unknown) => e);
    expect(isProviderError(err) && err.reason).toBe('Conflict');
    expect(dig(server, 'foreign.apps.test', 'A')).toEqual(['203.0.113.9']);
    const zerr = await zone({ name: 'apps.test' }, ctx('other', 'p2')).catch((e: unknown) => e);
    expect(isProviderError(zerr) && zerr.reason).toBe('Conflict');
    const nz = await record({ zone: 'missing.test', name: 'x', type: 'A', values: ['192.0.2.1'] }).catch((e: unknown) => e);
    expect(isProviderError(nz) && nz.reason).toBe('NotFound');
  });

  it('64 concurrent creates into one zone all land (coalesced PATCHes) and all resolve', async () => {
    const specs = Array.from({ length: 64 }, (_, i) => ({ zone: 'apps.test', name: `bulk${i}`, type: 'A', values: [`10.9.${i >> 8}.${i & 255}`] }));
    await Promise.all(specs.map((s) => record(s)));
    for (const i of [0, 17, 63]) expect(dig(server, `bulk${i}.apps.test`, 'A')).toEqual([`10.9.0.${i}`]);
    const z = await p.getZone('apps.test');
    expect(z!.rrsets!.filter((r) => r.name.startsWith('bulk')).length).toBe(64);
  });

  it('wrong API key and a stopped server are classified errors', async () => {
    const bad = new PowerDnsProvider({ url: server.url, apiKey: 'wrong' });
    const e1 = await bad.handler('dns/Zone').read('apps.test.', ctx()).catch((e: unknown) => e);
    expect(isProviderError(e1) && e1.reason).toBe('BackendUnavailable');
    expect(isProviderError(e1) && e1.retryable).toBe(false);
    expect(String((e1 as Error).message)).not.toContain('wrong');
    const down = new PowerDnsProvider({ url: 'http://127.0.0.1:9', apiKey: 'x' });
    const e2 = await down.handler('dns/Zone').read('apps.test.', ctx()).catch((e: unknown) => e);
    expect(isProviderError(e2) && e2.reason).toBe('BackendUnavailable');
    expect(isProviderError(e2) && e2.retryable).toBe(true);
  });
});

function run6(server: PdnsServer): string[] {
  return dig(server, '1.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', 'PTR');
}
