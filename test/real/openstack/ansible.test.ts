import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { os, requireBinary, run, startTarget, type Target } from './target.js';

/**
 * Ansible's openstack.cloud collection (shipped in Debian's `ansible`)
 * creates a network, a server with a floating IP, and deletes them, against
 * the façade (or, with OPENSTACK_TARGET=external, a real OpenStack).
 */
let t: Target;
beforeAll(async () => {
  await requireBinary('ansible-playbook', 'ansible');
  t = await startTarget();
}, 120_000);
afterAll(async () => {
  await t?.stop();
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
        env: { ...t.env, TEST_SUFFIX: sfx, TEST_IMAGE: t.image, TEST_FLAVOR: t.flavor, TEST_PUBLIC_NETWORK: t.publicNetwork, ANSIBLE_NOCOLOR: '1', ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3', ANSIBLE_LOCALHOST_WARNING: 'false' },
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
