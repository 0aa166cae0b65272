import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeaProvider } from '../../../src/providers/kea/index.js';
import { runProviderContract } from '../../../src/resources/contract.js';
import { isProviderError } from '../../../src/resources/errors.js';
import { parseSpec } from '../../../src/resources/kinds.js';
import type { ProviderCallContext } from '../../../src/resources/types.js';
import { startKea, type KeaServer } from './kea-server.js';

/** Kea DHCPv4 (Debian's kea-dhcp4-server + kea-ctrl-agent) in a namespace; a real dhclient in another namespace gets the reserved address and options. */

let contractKea: KeaServer;
runProviderContract('kea (kea-dhcp4 via kea-ctrl-agent)', async () => {
  contractKea = await startKea('10.81.0.1/24');
  const provider = new KeaProvider({ url: contractKea.url, username: contractKea.username, password: contractKea.password });
  await provider.handler('dhcp/Subnet').create(parseSpec('dhcp/Subnet', { cidr: '10.81.0.0/24' }), { idempotencyKey: 'pre', project: 'contract', resourceId: 'res_pre', resourceName: 'pre' });
  return {
    provider,
    tick: () => new Promise((r) => setTimeout(r, 50)),
    maxReads: 100,
    samples: async () => [
      { kind: 'dhcp/Subnet', spec: { cidr: '10.82.0.0/24' }, update: { cidr: '10.82.0.0/24', gateway: '10.82.0.1', dnsServers: ['10.82.0.53'], leaseSeconds: 600 }, replace: { cidr: '10.82.1.0/24' }, invalid: { cidr: '10.82.0.0' } },
      { kind: 'dhcp/Reservation', spec: { mac: '52:54:00:aa:00:01', address: '10.81.0.10' }, update: { mac: '52:54:00:aa:00:01', address: '10.81.0.11', hostname: 'node1', nextServer: '10.81.0.1', bootFile: 'ipxe.efi' }, replace: { mac: '52:54:00:aa:00:02', address: '10.81.0.10' }, invalid: { mac: 'zz', address: '10.81.0.10' } },
    ],
    cleanup: async () => { await contractKea?.stop(); },
  };
}, { describe, it, beforeAll, afterAll }, { kinds: ['dhcp/Subnet', 'dhcp/Reservation'] });

describe('kea: a real DHCP client gets the reserved address and boot options', () => {
  let kea: KeaServer;
  let p: KeaProvider;
  let n = 0;
  const ctx = (project = 'cl1'): ProviderCallContext => ({ idempotencyKey: `k${n++}`, project, resourceId: `res_${n}`, resourceName: `r${n}` });

  beforeAll(async () => {
    kea = await startKea('10.90.0.1/24');
    p = new KeaProvider({ url: kea.url, username: kea.username, password: kea.password });
    await p.handler('dhcp/Subnet').create(parseSpec('dhcp/Subnet', { cidr: '10.90.0.0/24', pool: { start: '10.90.0.100', end: '10.90.0.150' }, gateway: '10.90.0.1', dnsServers: ['10.90.0.53'], domain: 'cluster.test', leaseSeconds: 900 }), ctx());
  }, 120_000);
  afterAll(async () => { await kea?.stop(); });

  it('PXE host: reserved address, hostname, next-server, boot file, router and DNS from the subnet', async () => {
    await p.handler('dhcp/Reservation').create(parseSpec('dhcp/Reservation', { mac: '52:54:00:12:34:56', address: '10.90.0.21', hostname: 'agent-1', nextServer: '10.90.0.5', bootFile: 'ipxe/boot.ipxe' }), ctx());
    const env = kea.dhclient('52:54:00:12:34:56');
    expect(env.new_ip_address).toBe('10.90.0.21');
    expect(env.new_host_name).toBe('agent-1');
    expect(env.new_next_server).toBe('10.90.0.5');
    expect(env.new_filename).toBe('ipxe/boot.ipxe');
    expect(env.new_routers).toBe('10.90.0.1');
    expect(env.new_domain_name_servers).toBe('10.90.0.53');
    expect(env.new_domain_name).toBe('cluster.test');
  }, 120_000);

  it('a MAC without a reservation gets a pool address; changing a reservation moves the host', async () => {
    const pool = kea.dhclient('52:54:00:00:99:01');
    const last = Number(pool.new_ip_address!.split('.')[3]);
    expect(pool.new_ip_address!.startsWith('10.90.0.')).toBe(true);
    expect(last).toBeGreaterThanOrEqual(100);
    expect(last).toBeLessThanOrEqual(150);
    const h = p.handler('dhcp/Reservation');
    const spec = parseSpec<Record<string, unknown>>('dhcp/Reservation', { mac: '52:54:00:00:77:01', address: '10.90.0.31', hostname: 'agent-2' });
    const { externalId } = await h.create(spec, ctx());
    expect(kea.dhclient('52:54:00:00:77:01').new_ip_address).toBe('10.90.0.31');
    const next = parseSpec<Record<string, unknown>>('dhcp/Reservation', { mac: '52:54:00:00:77:01', address: '10.90.0.32', hostname: 'agent-2' });
    await h.update!(externalId, next, spec, ctx());
    expect((await h.read(externalId, ctx())).observed).toMatchObject({ address: '10.90.0.32', hostname: 'agent-2' });
    expect(kea.dhclient('52:54:00:00:77:01').new_ip_address).toBe('10.90.0.32');
  }, 180_000);

  it('concurrent reservations all land (one config-set per batch); conflicts and missing subnets are typed errors', async () => {
    const h = p.handler('dhcp/Reservation');
    await Promise.all(Array.from({ length: 40 }, (_, i) => h.create(parseSpec('dhcp/Reservation', { mac: `52:54:00:01:00:${i.toString(16).padStart(2, '0')}`, address: `10.90.0.${200 + i}` }), ctx())));
    const cfg = await p.getConfig();
    expect(cfg.subnet4![0]!.reservations!.filter((r) => String(r['ip-address']).startsWith('10.90.0.2')).length).toBeGreaterThanOrEqual(40);
    const e1 = await h.create(parseSpec('dhcp/Reservation', { mac: '52:54:00:01:00:00', address: '10.90.0.99' }), ctx('other-project')).catch((e: unknown) => e);
    expect(isProviderError(e1) && e1.reason).toBe('Conflict');
    const e2 = await h.create(parseSpec('dhcp/Reservation', { mac: '52:54:00:02:00:00', address: '10.90.0.200' }), ctx()).catch((e: unknown) => e);
    expect(isProviderError(e2) && e2.reason).toBe('Conflict');
    const e3 = await h.create(parseSpec('dhcp/Reservation', { mac: '52:54:00:02:00:01', address: '172.16.0.5' }), ctx()).catch((e: unknown) => e);
    expect(isProviderError(e3) && e3.reason).toBe('NotFound');
    const e4 = await p.handler('dhcp/Subnet').delete('10.90.0.0/24', ctx()).catch((e: unknown) => e);
    expect(isProviderError(e4) && e4.reason === 'Conflict' && e4.retryable).toBe(true);
    const bad = new KeaProvider({ url: kea.url, username: 'infraflow', password: 'wrong' });
    const e5 = await bad.getConfig().catch((e: unknown) => e);
    expect(isProviderError(e5) && e5.reason === 'BackendUnavailable' && !e5.retryable).toBe(true);
  }, 120_000);
});
