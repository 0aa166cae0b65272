import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/core/config.js';
import { silentLogger } from '../src/core/log.js';
import { createContext, type AppContext } from '../src/app/context.js';
import { buildApi } from '../src/api/app.js';
import { OpenStackProvider } from '../src/providers/openstack/index.js';
import { runProviderContract, type KindSample } from '../src/resources/contract.js';
import type { KindHandler, ProviderCallContext } from '../src/resources/types.js';

/**
 * The OpenStack provider against Infraflow's own OpenStack façade (a real
 * Infraflow process's HTTP API, the simulator behind it): the provider
 * contract over Keystone, Nova, Neutron, Glance and Cinder REST calls. This
 * proves the façade's REST shapes and the provider's use of them; the same
 * suite runs against a real OpenStack in test/real/openstack.
 */
const PASSWORD = 'contract-admin-password';
let dir: string;
let ctx: AppContext;
let close: (() => Promise<void>) | undefined;
let authUrl = '';

async function start(): Promise<void> {
  dir = await mkdtemp(join(tmpdir(), 'os-contract-'));
  const config = loadConfig({ env: { INFRAFLOW_DATA_DIR: dir, INFRAFLOW_SIM_SPEED: '2000' } });
  ctx = await createContext(config, silentLogger, { startWorker: true });
  const { inventory, ipam, allocations, resources, registry, sim, stacks } = ctx;
  const { app } = await buildApi({
    config, store: ctx.store, clock: ctx.clock, logger: silentLogger, engine: ctx.engine,
    areas: { inventory, ipam, allocations, resources, registry, sim, stacks, openstack: { imageDir: join(dir, 'images') } },
    env: { INFRAFLOW_ADMIN_PASSWORD: PASSWORD, INFRAFLOW_RATE_LIMIT: '0' }, print: () => {}, server: { docs: false },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address() as { port: number };
  authUrl = `http://127.0.0.1:${addr.port}/openstack/identity/v3`;
  close = async () => {
    close = undefined;
    await app.close();
    await ctx.close();
    await rm(dir, { recursive: true, force: true });
  };
}

const provider = () => new OpenStackProvider({ credentials: { authUrl, username: 'admin', password: PASSWORD, projectName: 'default' }, baseDelayMs: 20 });

async function ready(h: KindHandler, spec: Record<string, unknown>, key: string, name = `prep-${key}`): Promise<string> {
  const c: ProviderCallContext = { idempotencyKey: `prep-${key}-${Date.now()}`, project: 'default', resourceId: `res_prep_${key}`, resourceName: name };
  const { externalId } = await h.create(h.schema.parse(spec), c);
  for (let i = 0; i < 400; i++) {
    const r = await h.read(externalId, c);
    if (r.state === 'ready') return externalId;
    if (r.state === 'failed') throw new Error(`${h.kind} prerequisite failed: ${r.message}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`${h.kind} prerequisite never became ready`);
}

runProviderContract('openstack against the Infraflow façade', async () => {
  await start();
  const p = provider();
  return {
    provider: p,
    tick: () => new Promise((r) => setTimeout(r, 50)),
    maxReads: 600,
    project: 'default',
    samples: async (): Promise<KindSample[]> => {
      // the external network floating IPs come from: named like the simulator's floating pool
      await ready(p.handler('network/Network'), { external: true }, 'public-net', 'public');
      const net = await ready(p.handler('network/Network'), {}, 'net');
      const sub = await ready(p.handler('network/Subnet'), { network: net, cidr: '10.61.0.0/24' }, 'sub');
      const sg = await ready(p.handler('network/SecurityGroup'), { rules: [] }, 'sg');
      const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx2Y2xxZXh3c3h5eHh5eHh5eHh5eHh5eHh5eHh5eHh5eHh5 contract';
      return [
        { kind: 'network/Network', spec: { mtu: 1500 }, update: { mtu: 1450 }, replace: { external: true }, invalid: { mtu: 10 } },
        { kind: 'network/Subnet', spec: { network: net, cidr: '10.62.0.0/24' }, update: { network: net, cidr: '10.62.0.0/24', dnsServers: ['9.9.9.9'] }, replace: { network: net, cidr: '10.63.0.0/24' }, invalid: { network: net } },
        { kind: 'network/Router', spec: { interfaces: [] }, update: { interfaces: [sub] }, invalid: { interfaces: 'x' } },
        { kind: 'network/SecurityGroup', spec: { rules: [{ protocol: 'tcp', portMin: 22, portMax: 22 }] }, update: { rules: [{ protocol: 'tcp', portMin: 22, portMax: 22 }, { protocol: 'tcp', portMin: 443, portMax: 443 }] }, invalid: { rules: [{ portMin: 10, portMax: 5 }] } },
        { kind: 'network/Port', spec: { network: net, subnet: sub }, update: { network: net, subnet: sub, securityGroups: [sg] }, replace: { network: net, subnet: sub, fixedIp: '10.61.0.50' }, invalid: { subnet: sub } },
        { kind: 'network/FloatingIP', spec: { pool: 'public' }, replace: { pool: 'other' }, invalid: { pool: 5 } },
        { kind: 'compute/Keypair', spec: { name: `contract-${Date.now()}`, publicKey: key }, replace: { name: 'other', publicKey: key }, invalid: { name: 'k', publicKey: 'not a key' } },
        { kind: 'compute/Flavor', spec: { name: `contract-${Date.now()}`, vcpus: 1, ramMb: 512, diskGb: 1 }, update: { name: `contract-${Date.now()}`, vcpus: 1, ramMb: 512, diskGb: 1, extraSpecs: { 'hw:cpu_policy': 'shared' } }, invalid: { name: 'f', vcpus: 0, ramMb: 1 } },
        { kind: 'compute/Image', spec: { name: 'contract-image', diskFormat: 'raw' }, update: { name: 'contract-image', diskFormat: 'raw', minRamMb: 256, properties: { os_distro: 'contract' } }, replace: { name: 'contract-image', diskFormat: 'qcow2' }, invalid: { name: '' } },
        { kind: 'storage/Volume', spec: { sizeGb: 1 }, update: { sizeGb: 2 }, replace: { sizeGb: 2, type: 'fast' }, invalid: { sizeGb: 0 } },
        { kind: 'compute/Server', spec: { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet: sub }] }, update: { flavor: 'SCS-1V-2-10', image: 'debian-12', networks: [{ subnet: sub }], metadata: { role: 'web' }, power: 'off' }, replace: { flavor: 'SCS-1V-2-10', image: 'ubuntu-24.04', networks: [{ subnet: sub }] }, invalid: { flavor: 'SCS-1V-2-10', networks: [] } },
      ];
    },
    cleanup: async () => {
      await close?.();
    },
  };
}, { describe, it, beforeAll, afterAll }, { kinds: ['network/Network', 'network/Subnet', 'network/Router', 'network/SecurityGroup', 'network/Port', 'network/FloatingIP', 'compute/Keypair', 'compute/Flavor', 'compute/Image', 'storage/Volume', 'compute/Server'] });

describe('openstack provider: errors and idempotency through the façade', () => {
  let p: OpenStackProvider;
  beforeAll(async () => {
    if (!close) await start();
    p = provider();
  }, 120_000);
  afterAll(async () => {
    await close?.();
    close = undefined;
  });

  it('a create whose answer was lost is adopted by the retry with the same key (lookup by the key stored on the object)', async () => {
    const h = p.handler('network/Network');
    const c = { idempotencyKey: `lost-${Date.now()}`, project: 'default', resourceId: 'res_lost', resourceName: 'lost-answer' };
    const first = await h.create(h.schema.parse({}), c);
    // a second provider instance (a restarted Infraflow) with the same key finds the same network
    const again = await provider().handler('network/Network').create(h.schema.parse({}), c);
    expect(again.externalId).toBe(first.externalId);
    await h.delete(first.externalId, c);
  });

  it('reports a backend refusal with the backend\'s message and a reason', async () => {
    const h = p.handler('compute/Server');
    const c = { idempotencyKey: `bad-${Date.now()}`, project: 'default', resourceId: 'res_bad', resourceName: 'bad-flavor' };
    await expect(h.create(h.schema.parse({ flavor: 'no-such-flavor', image: 'debian-12', networks: [{ subnet: 'no-such-subnet' }] }), c)).rejects.toMatchObject({ reason: 'InvalidSpec' });
  });
});
