import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { OpenStackProvider } from '../../../src/providers/openstack/index.js';
import { runProviderContract, type KindSample } from '../../../src/resources/contract.js';
import type { KindHandler, ProviderCallContext } from '../../../src/resources/types.js';

/**
 * The provider contract against a real OpenStack: the one started by
 * test/openstack/devstack-lite.sh (`eval "$(npm run -s openstack:lite -- env)"`),
 * or any other named by the OS_* variables. Runs when OPENSTACK_TARGET=external.
 */
const external = process.env.OPENSTACK_TARGET === 'external';
const d = external ? describe : describe.skip;

async function ready(h: KindHandler, spec: Record<string, unknown>, key: string): Promise<string> {
  const c: ProviderCallContext = { idempotencyKey: `prep-${key}-${Date.now()}`, project: 'contract', resourceId: `res_prep_${key}`, resourceName: `contract-prep-${key}` };
  const { externalId } = await h.create(h.schema.parse(spec), c);
  for (let i = 0; i < 300; i++) {
    const r = await h.read(externalId, c);
    if (r.state === 'ready') return externalId;
    if (r.state === 'failed') throw new Error(`${h.kind} prerequisite failed: ${r.message}`);
    await new Promise((res) => setTimeout(res, 500));
  }
  throw new Error(`${h.kind} prerequisite never became ready`);
}

if (!external) {
  describe('openstack provider against a real OpenStack', () => {
    it.skip('needs OPENSTACK_TARGET=external and OS_* (test/openstack/devstack-lite.sh)', () => {});
  });
} else {
  const env = process.env;
  const provider = () => new OpenStackProvider({ credentials: { authUrl: env.OS_AUTH_URL!, username: env.OS_USERNAME!, password: env.OS_PASSWORD!, projectName: env.OS_PROJECT_NAME!, userDomain: env.OS_USER_DOMAIN_NAME ?? 'Default', projectDomain: env.OS_PROJECT_DOMAIN_NAME ?? 'Default' },
    // devstack-lite runs no Cinder
    kinds: ['network/Network', 'network/Subnet', 'network/Router', 'network/SecurityGroup', 'network/Port', 'network/FloatingIP', 'compute/Keypair', 'compute/Flavor', 'compute/Image', 'compute/Server'] });
  runProviderContract('openstack against a real OpenStack', async () => {
    const p = provider();
    const created: [KindHandler, string][] = [];
    return {
      provider: p,
      tick: () => new Promise((r) => setTimeout(r, 500)),
      maxReads: 400,
      samples: async (): Promise<KindSample[]> => {
        const net = await ready(p.handler('network/Network'), {}, 'net');
        const sub = await ready(p.handler('network/Subnet'), { network: net, cidr: '10.61.0.0/24' }, 'sub');
        const sg = await ready(p.handler('network/SecurityGroup'), { rules: [] }, 'sg');
        created.push([p.handler('network/SecurityGroup'), sg], [p.handler('network/Subnet'), sub], [p.handler('network/Network'), net]);
        // a real ed25519 public key (Nova checks the key data)
        const raw = Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x!, 'base64url');
        const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
        const key = `ssh-ed25519 ${Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]).toString('base64')} contract`;
        const flavor = env.OS_TEST_FLAVOR ?? 'm1.tiny';
        const image = env.OS_TEST_IMAGE ?? 'cirros';
        return [
          { kind: 'network/Network', spec: { mtu: 1400 }, update: { mtu: 1300 }, replace: { external: true }, invalid: { mtu: 10 } },
          { kind: 'network/Subnet', spec: { network: net, cidr: '10.62.0.0/24' }, update: { network: net, cidr: '10.62.0.0/24', dnsServers: ['9.9.9.9'] }, replace: { network: net, cidr: '10.63.0.0/24' }, invalid: { network: net } },
          { kind: 'network/Router', spec: { interfaces: [] }, update: { interfaces: [sub] }, invalid: { interfaces: 'x' } },
          { kind: 'network/SecurityGroup', spec: { rules: [{ protocol: 'tcp', portMin: 22, portMax: 22 }] }, update: { rules: [{ protocol: 'tcp', portMin: 22, portMax: 22 }, { protocol: 'tcp', portMin: 443, portMax: 443 }] }, invalid: { rules: [{ portMin: 10, portMax: 5 }] } },
          { kind: 'network/Port', spec: { network: net, subnet: sub }, update: { network: net, subnet: sub, securityGroups: [sg] }, replace: { network: net, subnet: sub, fixedIp: '10.61.0.50' }, invalid: { subnet: sub } },
          { kind: 'network/FloatingIP', spec: { pool: env.OS_PUBLIC_NETWORK ?? 'public' }, replace: { pool: 'other' }, invalid: { pool: 5 } },
          { kind: 'compute/Keypair', spec: { name: `contract-${Date.now()}`, publicKey: key }, replace: { name: 'other', publicKey: key }, invalid: { name: 'k', publicKey: 'not a key' } },
          { kind: 'compute/Flavor', spec: { name: `contract-${Date.now()}`, vcpus: 1, ramMb: 128, diskGb: 1 }, update: { name: `contract-${Date.now()}`, vcpus: 1, ramMb: 128, diskGb: 1, extraSpecs: { 'hw:cpu_policy': 'shared' } }, invalid: { name: 'f', vcpus: 0, ramMb: 1 } },
          { kind: 'compute/Image', spec: { name: 'contract-image', diskFormat: 'raw' }, update: { name: 'contract-image', diskFormat: 'raw', minRamMb: 64, properties: { os_distro: 'contract' } }, replace: { name: 'contract-image', diskFormat: 'qcow2' }, invalid: { name: '' } },
          { kind: 'compute/Server', spec: { flavor, image, networks: [{ subnet: sub }] }, update: { flavor, image, networks: [{ subnet: sub }], metadata: { role: 'web' }, power: 'off' }, replace: { flavor, image: 'other', networks: [{ subnet: sub }] }, invalid: { flavor, networks: [] } },
        ];
      },
      cleanup: async () => {
        const c = { idempotencyKey: `cleanup-${Date.now()}`, project: 'contract', resourceId: 'res_cleanup', resourceName: 'cleanup' };
        for (const [h, id] of created) await h.delete(id, c).catch(() => {});
      },
    };
  }, { describe: d, it, beforeAll, afterAll }, { kinds: ['network/Network', 'network/Subnet', 'network/Router', 'network/SecurityGroup', 'network/Port', 'network/FloatingIP', 'compute/Keypair', 'compute/Flavor', 'compute/Image', 'compute/Server'] });
}
