import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { os, osFails, run, startTarget, type Target } from './target.js';

/**
 * The real `openstack` client (Debian's python3-openstackclient) against the
 * façade: the commands users type, verbatim, and what they print. With
 * OPENSTACK_TARGET=external the same file runs against a real OpenStack.
 */
let t: Target;
let dir: string;
const sfx = randomBytes(3).toString('hex');
const n = (x: string) => `${x}-${sfx}`;

beforeAll(async () => {
  t = await startTarget();
  dir = await mkdtemp(join(tmpdir(), 'h17-osc-'));
}, 120_000);
afterAll(async () => {
  await t?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const waitFor = <T>(fn: () => Promise<T>) => vi.waitFor(fn, { timeout: 120_000, interval: 500 });

describe('openstack CLI against Infraflow', () => {
  it('issues a project-scoped token with a catalogue of every service', async () => {
    const tok = await os(t, 'token', 'issue', '-f', 'json');
    expect(tok.id).toMatch(/\S{20,}/);
    expect(tok.project_id).toBeTruthy();
    const cat = await os(t, 'catalog', 'list', '-f', 'json');
    const types = cat.map((c: { Type: string }) => c.Type);
    for (const ty of ['identity', 'compute', 'image', 'network']) expect(types).toContain(ty);
    // block storage: the façade serves it; devstack-lite runs no Cinder
    if (process.env.OPENSTACK_TARGET !== 'external') expect(types).toContain('volumev3');
    const projects = await os(t, 'project', 'list', '-f', 'json');
    expect(projects.map((p: { Name: string }) => p.Name)).toContain(t.env.OS_PROJECT_NAME);
  });

  it('refuses a wrong password with Keystone\'s 401', async () => {
    const msg = await osFails({ ...t, env: { ...t.env, OS_PASSWORD: 'wrong-password' } }, 'token', 'issue');
    expect(msg).toMatch(/401|authentication/i);
  });

  it('network, subnet, router, security group, keypair, server (the issue\'s command verbatim), floating IP, volume: create, list, act, delete', async () => {
    // the external network floating IPs come from
    const nets = await os(t, 'network', 'list', '--external', '-f', 'json');
    let pub = nets.find((x: { Name: string }) => x.Name === t.publicNetwork);
    if (!pub) {
      pub = await os(t, 'network', 'create', '--external', t.publicNetwork, '-f', 'json');
      await os(t, 'subnet', 'create', '--network', t.publicNetwork, '--subnet-range', '203.0.113.0/24', '--no-dhcp', `${t.publicNetwork}-subnet`, '-f', 'json');
    }
    const net = await os(t, 'network', 'create', n('net'), '-f', 'json');
    expect(net.status).toBe('ACTIVE');
    const sub = await os(t, 'subnet', 'create', '--network', n('net'), '--subnet-range', '10.42.0.0/24', n('sub'), '-f', 'json');
    expect(sub.cidr).toBe('10.42.0.0/24');
    expect(sub.gateway_ip).toBe('10.42.0.1');
    expect((await os(t, 'subnet', 'list', '--network', net.id, '-f', 'json')).map((s: { ID: string }) => s.ID)).toEqual([sub.id]);

    const router = await os(t, 'router', 'create', n('router'), '-f', 'json');
    await os(t, 'router', 'set', '--external-gateway', t.publicNetwork, n('router'));
    await os(t, 'router', 'add', 'subnet', n('router'), n('sub'));
    const shown = await os(t, 'router', 'show', n('router'), '-f', 'json');
    expect(JSON.stringify(shown.external_gateway_info)).toContain(pub.ID ?? pub.id);
    // the router's ports: its interface on the subnet, and (as Neutron shows it) its gateway port
    const ifaces = await os(t, 'port', 'list', '--router', router.id, '--device-owner', 'network:router_interface', '-f', 'json');
    expect(ifaces.length).toBe(1);
    expect(JSON.stringify(ifaces[0]['Fixed IP Addresses'])).toContain(sub.id);
    expect((await os(t, 'port', 'list', '--router', router.id, '--device-owner', 'network:router_gateway', '-f', 'json')).length).toBe(1);

    const sg = await os(t, 'security', 'group', 'create', n('web'), '-f', 'json');
    const rule = await os(t, 'security', 'group', 'rule', 'create', '--protocol', 'tcp', '--dst-port', '22', '--remote-ip', '0.0.0.0/0', n('web'), '-f', 'json');
    expect(rule.port_range_min).toBe(22);
    const fromGroup = await os(t, 'security', 'group', 'rule', 'create', '--protocol', 'tcp', '--dst-port', '80', '--remote-group', n('web'), n('web'), '-f', 'json');
    expect(fromGroup.remote_group_id).toBe(sg.id);
    const rules = await os(t, 'security', 'group', 'rule', 'list', n('web'), '-f', 'json');
    expect(rules.map((r: { ID: string }) => r.ID)).toEqual(expect.arrayContaining([rule.id, fromGroup.id]));
    const dup = await osFails(t, 'security', 'group', 'rule', 'create', '--protocol', 'tcp', '--dst-port', '22', '--remote-ip', '0.0.0.0/0', n('web'));
    expect(dup).toMatch(/already exists/);

    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'h17', '-f', join(dir, 'key')]);
    const kp = await os(t, 'keypair', 'create', '--public-key', join(dir, 'key.pub'), n('key'), '-f', 'json');
    expect(kp.fingerprint).toMatch(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
    const generated = await os(t, 'keypair', 'create', n('gen'));
    expect(generated).toContain('PRIVATE KEY');

    // `openstack server create --flavor … --image … --key-name … --security-group … NAME`, verbatim: the one private network is picked
    const privateNets = (await os(t, 'network', 'list', '--internal', '-f', 'json')) as unknown[];
    const args = ['server', 'create', '--flavor', t.flavor, '--image', t.image, '--key-name', n('key'), '--security-group', n('web')];
    if (privateNets.length > 1) args.push('--network', n('net'));
    const created = await os(t, ...args, n('vm'), '-f', 'json');
    expect(['BUILD', 'ACTIVE']).toContain(created.status);
    await waitFor(async () => {
      const list = await os(t, 'server', 'list', '--name', n('vm'), '-f', 'json');
      expect(list).toHaveLength(1);
      expect(list[0].Status).toBe('ACTIVE');
      expect(JSON.stringify(list[0].Networks)).toMatch(/10\.42\.0\.\d+/);
    });
    const vm = await os(t, 'server', 'show', n('vm'), '-f', 'json');
    expect(vm.key_name).toBe(n('key'));
    expect(JSON.stringify(vm.security_groups)).toContain(n('web'));

    await os(t, 'server', 'stop', n('vm'));
    await waitFor(async () => expect((await os(t, 'server', 'show', n('vm'), '-f', 'json')).status).toBe('SHUTOFF'));
    await os(t, 'server', 'start', n('vm'));
    await waitFor(async () => expect((await os(t, 'server', 'show', n('vm'), '-f', 'json')).status).toBe('ACTIVE'));

    const fip = await os(t, 'floating', 'ip', 'create', t.publicNetwork, '-f', 'json');
    expect(fip.floating_ip_address).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    await os(t, 'server', 'add', 'floating', 'ip', n('vm'), fip.floating_ip_address);
    await waitFor(async () => expect(JSON.stringify((await os(t, 'server', 'show', n('vm'), '-f', 'json')).addresses)).toContain(fip.floating_ip_address));
    expect((await os(t, 'floating', 'ip', 'show', fip.id, '-f', 'json')).port_id).toBeTruthy();

    const vol = await os(t, 'volume', 'create', '--size', '2', n('vol'), '-f', 'json');
    await waitFor(async () => expect((await os(t, 'volume', 'show', vol.id, '-f', 'json')).status).toBe('available'));
    await os(t, 'volume', 'set', '--size', '3', vol.id);
    await waitFor(async () => {
      const v = await os(t, 'volume', 'show', vol.id, '-f', 'json');
      expect([v.status, v.size]).toEqual(['available', 3]);
    });
    await os(t, 'server', 'add', 'volume', n('vm'), vol.id);
    await waitFor(async () => expect((await os(t, 'volume', 'show', vol.id, '-f', 'json')).status).toBe('in-use'));
    expect(await osFails(t, 'volume', 'delete', vol.id)).toMatch(/must be available/);
    await os(t, 'server', 'remove', 'volume', n('vm'), vol.id);
    await waitFor(async () => expect((await os(t, 'volume', 'show', vol.id, '-f', 'json')).status).toBe('available'));
    await os(t, 'volume', 'delete', vol.id);
    await waitFor(async () => expect((await os(t, 'volume', 'list', '-f', 'json')).map((v: { ID: string }) => v.ID)).not.toContain(vol.id));

    // teardown through the same client
    await os(t, 'server', 'remove', 'floating', 'ip', n('vm'), fip.floating_ip_address);
    await os(t, 'floating', 'ip', 'delete', fip.id);
    await os(t, 'server', 'delete', '--wait', n('vm'));
    expect(await os(t, 'server', 'list', '--name', n('vm'), '-f', 'json')).toEqual([]);
    await os(t, 'router', 'remove', 'subnet', n('router'), n('sub'));
    await os(t, 'router', 'delete', n('router'));
    await os(t, 'security', 'group', 'rule', 'delete', fromGroup.id);
    await os(t, 'security', 'group', 'delete', n('web'));
    await os(t, 'keypair', 'delete', n('key'));
    await os(t, 'keypair', 'delete', n('gen'));
    await os(t, 'subnet', 'delete', n('sub'));
    await os(t, 'network', 'delete', n('net'));
    const left = JSON.stringify([await os(t, 'network', 'list', '-f', 'json'), await os(t, 'router', 'list', '-f', 'json'), await os(t, 'security', 'group', 'list', '-f', 'json'), await os(t, 'keypair', 'list', '-f', 'json')]);
    expect(left).not.toContain(sfx);
  }, 900_000);

  it('image: create with data, list, download the same bytes, delete', async () => {
    const data = randomBytes(300_000);
    await writeFile(join(dir, 'disk.img'), data);
    const img = await os(t, 'image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--file', join(dir, 'disk.img'), '--property', 'os_distro=h17', n('img'), '-f', 'json');
    await waitFor(async () => expect((await os(t, 'image', 'show', img.id, '-f', 'json')).status).toBe('active'));
    const shown = await os(t, 'image', 'show', img.id, '-f', 'json');
    expect(shown.checksum).toBe(createHash('md5').update(data).digest('hex'));
    expect(shown.size).toBe(data.length);
    expect((await os(t, 'image', 'list', '-f', 'json')).map((i: { Name: string }) => i.Name)).toContain(n('img'));
    await os(t, 'image', 'save', '--file', join(dir, 'back.img'), img.id);
    expect((await readFile(join(dir, 'back.img'))).equals(data)).toBe(true);
    await os(t, 'image', 'delete', img.id);
    await waitFor(async () => expect((await os(t, 'image', 'list', '-f', 'json')).map((i: { ID: string }) => i.ID)).not.toContain(img.id));
  }, 600_000);

  it('answers errors in OpenStack\'s shapes, which the client prints', async () => {
    expect(await osFails(t, 'server', 'show', `missing-${sfx}`)).toMatch(/No server with a name or ID of/);
    expect(await osFails(t, 'network', 'show', `missing-${sfx}`)).toMatch(/No Network found for|could not be found/i);
    expect(await osFails(t, 'volume', 'create', '--size', '1', '--image', `missing-${sfx}`, n('bad'))).toMatch(/No Image found for|No image with a name or ID|could not be found/i);
  });
});
