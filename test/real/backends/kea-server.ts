import { chmodSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, netns, requireBinary, run, startDaemon, suffix, tempDir, waitForPort, type Daemon } from './support.js';

/**
 * Kea DHCPv4 inside a network namespace on one end of a veth pair, its
 * control agent (basic auth) on a random loopback port, and a client
 * namespace on the other end where `dhclient` asks for an address.
 */
export interface KeaServer {
  url: string; username: string; password: string;
  serverNs: string; clientNs: string;
  /** Sets the client's MAC and runs dhclient once; answers the variables dhclient-script saw on BOUND. */
  dhclient(mac: string): Record<string, string>;
  stop(): Promise<void>;
}

export async function startKea(serverCidr: string): Promise<KeaServer> {
  const kea = requireBinary('kea-dhcp4', 'kea-dhcp4-server');
  const agent = requireBinary('kea-ctrl-agent', 'kea-ctrl-agent');
  requireBinary('dhclient', 'isc-dhcp-client');
  const dir = tempDir('kea');
  const srv = netns('ks');
  const cli = netns('kc');
  const a = `h19ka${suffix(2)}`;
  const b = `h19kb${suffix(2)}`;
  run('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  run('ip', ['link', 'set', a, 'netns', srv.name]);
  run('ip', ['link', 'set', b, 'netns', cli.name]);
  run('ip', ['link', 'set', a, 'name', 'eth0'], { netns: srv.name });
  run('ip', ['link', 'set', b, 'name', 'eth0'], { netns: cli.name });
  run('ip', ['addr', 'add', serverCidr, 'dev', 'eth0'], { netns: srv.name });
  run('ip', ['link', 'set', 'eth0', 'up'], { netns: srv.name });
  // both ends up before Kea starts: it opens its sockets only on interfaces that are up
  run('ip', ['link', 'set', 'eth0', 'up'], { netns: cli.name });
  const sock = join(dir.path, 'kea4.sock');
  const conf = join(dir.path, 'kea-dhcp4.json');
  writeFileSync(conf, JSON.stringify({
    Dhcp4: {
      'interfaces-config': { interfaces: ['eth0'], 'dhcp-socket-type': 'raw' },
      'control-socket': { 'socket-type': 'unix', 'socket-name': sock },
      'lease-database': { type: 'memfile', persist: true, name: join(dir.path, 'leases4.csv'), 'lfc-interval': 0 },
      'valid-lifetime': 3600,
      subnet4: [],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'WARN' }],
    },
  }, null, 2));
  const env = { KEA_LOCKFILE_DIR: dir.path, KEA_PIDFILE_DIR: dir.path };
  const daemons: Daemon[] = [startDaemon(kea, ['-c', conf], { env, netns: srv.name })];
  for (let i = 0; !existsSync(sock); i++) {
    if (daemons[0]!.proc.exitCode !== null || i > 300) throw new Error(`kea-dhcp4 did not start: ${daemons[0]!.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const port = await freePort();
  const password = `p${suffix(8)}`;
  const agentConf = join(dir.path, 'kea-ctrl-agent.json');
  writeFileSync(agentConf, JSON.stringify({
    'Control-agent': {
      'http-host': '127.0.0.1', 'http-port': port,
      authentication: { type: 'basic', realm: 'kea', clients: [{ user: 'infraflow', password }] },
      'control-sockets': { dhcp4: { 'socket-type': 'unix', 'socket-name': sock } },
      loggers: [{ name: 'kea-ctrl-agent', output_options: [{ output: 'stdout' }], severity: 'WARN' }],
    },
  }));
  daemons.push(startDaemon(agent, ['-c', agentConf], { env }));
  await waitForPort(port, daemons[1]);
  const script = join(dir.path, 'dhclient-script');
  writeFileSync(script, `#!/bin/sh\nenv > "${dir.path}/env.$reason"\n`);
  chmodSync(script, 0o755);
  writeFileSync(join(dir.path, 'dhclient.conf'), 'timeout 40;\nretry 1;\nrequest subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n');
  const clients: string[] = [];
  return {
    url: `http://127.0.0.1:${port}`, username: 'infraflow', password, serverNs: srv.name, clientNs: cli.name,
    dhclient(mac) {
      const tag = suffix(3);
      run('ip', ['addr', 'flush', 'dev', 'eth0'], { netns: cli.name });
      run('ip', ['link', 'set', 'eth0', 'address', mac], { netns: cli.name });
      const pid = join(dir.path, `dhclient-${tag}.pid`);
      clients.push(pid);
      const r = run('dhclient', ['-1', '-v', '-cf', join(dir.path, 'dhclient.conf'), '-lf', join(dir.path, `leases-${tag}`), '-pf', pid, '-sf', script, 'eth0'], { netns: cli.name, allowFail: true, timeoutMs: 90_000 });
      stopClient(pid);
      const envFile = join(dir.path, 'env.BOUND');
      if (r.status !== 0 || !existsSync(envFile)) throw new Error(`dhclient got no lease (exit ${r.status}): ${r.stderr.slice(-1500)}`);
      const vars = Object.fromEntries(readFileSync(envFile, 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => { const i = l.indexOf('='); return [l.slice(0, i), l.slice(i + 1).replace(/^'|'$/g, '')]; }));
      run('rm', ['-f', envFile]);
      return vars;
    },
    stop: async () => {
      for (const p of clients) stopClient(p);
      for (const d of daemons.reverse()) await d.stop();
      srv.remove();
      cli.remove();
      dir.remove();
    },
  };
}

function stopClient(pidFile: string): void {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (pid > 0) process.kill(pid, 'SIGTERM');
  } catch { /* not running */ }
}
