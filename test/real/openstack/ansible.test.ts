import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { os, requireBinary, run, startTarget, type Target } from './target.js';

/**
 * Ansible's openstack.cloud collection (shipped in Debian's `ansible`)
 * creates a network, a server with a floating IP, and deletes them, against
 * the façade (or, with OPENSTACK_TARGET=external, a real OpenStack).
 */
let t: Target;
let collections: string;
const DEBIAN_COLLECTION = '/usr/lib/python3/dist-packages/ansible_collections/openstack/cloud';

beforeAll(async () => {
  await requireBinary('ansible-playbook', 'ansible');
  // Debian 12 ships openstack.cloud 1.10 (in `ansible`), which refuses Debian 12's own openstacksdk 0.101
  // ("Version MUST be >=0.36 and <=0.98.999"). The test uses a copy of Debian's collection with only that
  // upper bound lifted (ANSIBLE_COLLECTIONS_PATH, nothing installed or changed on the system).
  collections = await mkdtemp(join(tmpdir(), 'h17-ansible-'));
  const dest = join(collections, 'ansible_collections/openstack/cloud');
  await cp(DEBIAN_COLLECTION, dest, { recursive: true });
  const mu = join(dest, 'plugins/module_utils/openstack.py');
  const src = await readFile(mu, 'utf8');
  if (!src.includes("MAXIMUM_SDK_VERSION = '0.98.999'")) throw new Error(`${mu}: the collection changed; check whether the openstacksdk bound still needs lifting`);
  // and openstacksdk 0.99+ resources no longer accept the dict writes Ansible's result sanitizer makes:
  // hand exit_json plain dicts (Resource.to_dict), as the collection's 2.x line does
  const shim = [
    '',
    'def _plain(v):',
    '    if hasattr(v, "to_dict"):',
    '        return _plain(v.to_dict())',
    '    if isinstance(v, dict):',
    '        return {k: _plain(x) for k, x in v.items()}',
    '    if isinstance(v, (list, tuple)):',
    '        return [_plain(x) for x in v]',
    '    return v',
    '',
  ].join('\n');
  const patched = src.replace("MAXIMUM_SDK_VERSION = '0.98.999'", `MAXIMUM_SDK_VERSION = None\n${shim}`)
    .replace('        self.exit = self.exit_json = self.ansible.exit_json', '        self.exit = self.exit_json = lambda **kw: self.ansible.exit_json(**_plain(kw))')
    .replace('                self.ansible.exit_json(**results)', '                self.ansible.exit_json(**_plain(results))')
    .replace('        self.ansible.exit_json(**self.results)', '        self.ansible.exit_json(**_plain(self.results))');
  if (patched.split('_plain(').length < 5) throw new Error(`${mu}: could not apply the openstacksdk 0.101 shim; the collection changed`);
  await writeFile(mu, patched);
  t = await startTarget();
}, 120_000);
afterAll(async () => {
  await t?.stop();
  if (collections) await rm(collections, { recursive: true, force: true });
});

describe('ansible openstack.cloud against Infraflow', () => {
  it('runs the playbook: network, subnet, server with a floating IP, then deletes them', async () => {
    const nets = await os(t, 'network', 'list', '--external', '-f', 'json');
    if (!nets.some((x: { Name: string }) => x.Name === t.publicNetwork)) {
      await os(t, 'network', 'create', '--external', t.publicNetwork, '-f', 'json');
      await os(t, 'subnet', 'create', '--network', t.publicNetwork, '--subnet-range', '203.0.113.0/24', '--no-dhcp', `${t.publicNetwork}-subnet`, '-f', 'json');
    }
    const sfx = randomBytes(3).toString('hex');
    let out: { stdout: string; stderr: string };
    try {
      out = await run('ansible-playbook', ['-i', 'localhost,', join(import.meta.dirname, 'playbook.yml')], {
        env: { ...t.env, ANSIBLE_COLLECTIONS_PATH: collections, TEST_SUFFIX: sfx, TEST_IMAGE: t.image, TEST_FLAVOR: t.flavor, TEST_PUBLIC_NETWORK: t.publicNetwork, ANSIBLE_NOCOLOR: '1', ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3', ANSIBLE_LOCALHOST_WARNING: 'false' },
        timeout: 600_000, maxBuffer: 16 << 20,
      });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      throw new Error(`ansible-playbook failed:\n${(err.stdout ?? '').slice(-4000)}\n${(err.stderr ?? '').slice(-2000)}`, { cause: e });
    }
    expect(out.stdout).toMatch(/failed=0/);
    expect(out.stdout).toMatch(/ok=\d+\s+changed=[1-9]/);
    // nothing the playbook made is left
    const left = JSON.stringify([await os(t, 'server', 'list', '-f', 'json'), await os(t, 'network', 'list', '-f', 'json'), await os(t, 'floating', 'ip', 'list', '-f', 'json')]);
    expect(left).not.toContain(sfx);
    expect((await os(t, 'floating', 'ip', 'list', '-f', 'json')).filter((f: { Port: string | null }) => f.Port)).toEqual([]);
  }, 900_000);
});
