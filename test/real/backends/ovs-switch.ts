import { join } from 'node:path';
import { OvsSwitchDriver } from '../../../src/providers/ovs/index.js';
import { netns, requireBinary, run, startDaemon, suffix, tempDir, type Daemon } from './support.js';

/**
 * An Open vSwitch of our own: ovsdb-server + ovs-vswitchd in a temp dir
 * (userspace datapath, so no kernel module is needed), one bridge, and
 * "hosts": network namespaces cabled to switch ports with veth pairs.
 */
export interface OvsSwitch {
  db: string;
  bridge: string;
  driver: OvsSwitchDriver;
  vsctl(...args: string[]): string;
  /** A namespace "host" on a new switch port; returns the port name and the namespace. */
  addHost(tag: string, address?: string, on?: { bridge: string; tag: number }): { port: string; ns: string };
  /** A second bridge (the hub's switch) joined to a new port of ours by a veth pair; answers both port names. */
  addHubBridge(hubVlans: number[]): { bridge: string; leafPort: string };
  stop(): Promise<void>;
}

export async function startOvs(): Promise<OvsSwitch> {
  const ovsdb = requireBinary('ovsdb-server', 'openvswitch-switch');
  const vswitchd = requireBinary('ovs-vswitchd', 'openvswitch-switch');
  requireBinary('ovs-vsctl', 'openvswitch-switch');
  requireBinary('ip', 'iproute2');
  requireBinary('ping', 'iputils-ping');
  const dir = tempDir('ovs');
  const env = { OVS_RUNDIR: dir.path, OVS_LOGDIR: dir.path, OVS_DBDIR: dir.path, OVS_SYSCONFDIR: dir.path };
  const schema = ['/usr/share/openvswitch/vswitch.ovsschema'].find((f) => { try { run('test', ['-f', f]); return true; } catch { return false; } });
  if (!schema) throw new Error('vswitch.ovsschema is missing: install the Debian package openvswitch-switch');
  run('ovsdb-tool', ['create', join(dir.path, 'conf.db'), schema]);
  const db = `unix:${join(dir.path, 'db.sock')}`;
  const daemons: Daemon[] = [];
  daemons.push(startDaemon(ovsdb, [join(dir.path, 'conf.db'), `--remote=p${db}`, `--pidfile=${join(dir.path, 'ovsdb.pid')}`, `--unixctl=${join(dir.path, 'ovsdb.ctl')}`, '-vconsole:off', `--log-file=${join(dir.path, 'ovsdb.log')}`], { env }));
  const vsctl = (...args: string[]) => run('ovs-vsctl', [`--db=${db}`, '--timeout=30', ...args], { env }).stdout.trim();
  for (let i = 0; ; i++) {
    try { vsctl('--no-wait', 'init'); break; } catch (e) { if (i > 100) throw e; await new Promise((r) => setTimeout(r, 100)); }
  }
  daemons.push(startDaemon(vswitchd, [db, `--pidfile=${join(dir.path, 'vswitchd.pid')}`, `--unixctl=${join(dir.path, 'vswitchd.ctl')}`, '-vconsole:off', `--log-file=${join(dir.path, 'vswitchd.log')}`], { env }));
  const bridge = `h19br${suffix(2)}`;
  vsctl('add-br', bridge, '--', 'set', 'Bridge', bridge, 'datapath_type=netdev');
  const cleanups: (() => void)[] = [];
  const bridges = [bridge];
  return {
    db, bridge, driver: new OvsSwitchDriver({ db }), vsctl,
    addHost(tag, address, on) {
      const ns = netns(tag);
      const port = `h19${tag}${suffix(2)}`.slice(0, 15);
      cleanups.push(() => { ns.remove(); run('ip', ['link', 'del', port], { allowFail: true }); });
      run('ip', ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
      run('ip', ['link', 'set', port, 'up']);
      run('ip', ['link', 'set', 'eth0', 'up'], { netns: ns.name });
      if (address) run('ip', ['addr', 'add', address, 'dev', 'eth0'], { netns: ns.name });
      // a new port starts on the quarantine VLAN, as the inventory's ports do
      vsctl('add-port', on?.bridge ?? bridge, port, '--', 'set', 'Port', port, `tag=${on?.tag ?? 999}`);
      return { port, ns: ns.name };
    },
    addHubBridge(hubVlans) {
      const hub = `h19hb${suffix(2)}`;
      vsctl('add-br', hub, '--', 'set', 'Bridge', hub, 'datapath_type=netdev');
      bridges.push(hub);
      const leafPort = `h19lu${suffix(2)}`;
      const hubPort = `h19hu${suffix(2)}`;
      cleanups.push(() => { run('ip', ['link', 'del', leafPort], { allowFail: true }); });
      run('ip', ['link', 'add', leafPort, 'type', 'veth', 'peer', 'name', hubPort]);
      run('ip', ['link', 'set', leafPort, 'up']);
      run('ip', ['link', 'set', hubPort, 'up']);
      vsctl('add-port', bridge, leafPort, '--', 'set', 'Port', leafPort, 'tag=999');
      vsctl('add-port', hub, hubPort, '--', 'set', 'Port', hubPort, 'vlan_mode=trunk', `trunks=${hubVlans.join(',')}`);
      return { bridge: hub, leafPort };
    },
    stop: async () => {
      for (const c of cleanups.reverse()) c();
      // the userspace datapath's bridge devices outlive ovs-vswitchd unless the bridges are deleted first
      for (const b of bridges) { try { vsctl('--if-exists', 'del-br', b); } catch { /* daemon gone */ } }
      for (const d of daemons.reverse()) await d.stop();
      for (const b of bridges) run('ip', ['link', 'del', b], { allowFail: true });
      dir.remove();
    },
  };
}

/** True when `from` gets an answer from `to` (ICMP), within a few tries. */
export function pings(ns: string, to: string, tries = 3): boolean {
  return run('ping', ['-c', String(tries), '-i', '0.2', '-W', '1', to], { netns: ns, allowFail: true }).status === 0;
}
