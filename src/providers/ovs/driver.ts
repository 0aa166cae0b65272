import { execFile } from 'node:child_process';
import { ProviderError } from '../../resources/errors.js';
import type { PortChange, PortState, SwitchDriver } from '../switches/driver.js';

/**
 * Open vSwitch as a switch driver, through `ovs-vsctl` against the switch's
 * OVSDB (`unix:/run/openvswitch/db.sock`, or `tcp:host:6640` for a remote
 * switch). A port change is one `set Port` command (vlan_mode, tag, trunks
 * and external_ids together), and every ovs-vsctl invocation is one OVSDB
 * transaction: a port is never on two VLANs. Calls that arrive while an
 * invocation is running are coalesced into the next one (up to 500
 * commands); if OVSDB refuses a batch, each change is retried alone so a bad
 * port fails only its own call.
 */
export interface OvsDriverOptions {
  /** OVSDB remote, e.g. `unix:/run/openvswitch/db.sock`. */
  db: string;
  /** ovs-vsctl binary. Default `ovs-vsctl`. */
  vsctl?: string;
  /** Seconds ovs-vsctl waits for OVSDB. Default 15. */
  timeoutSeconds?: number;
}

interface Job { args: string[][]; resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal | undefined }

type OvsValue = number | string | ['set', unknown[]] | ['map', [string, string][]] | ['uuid', string];

const setOf = (v: OvsValue): unknown[] => (Array.isArray(v) && v[0] === 'set' ? (v[1] as unknown[]) : [v]);

export class OvsSwitchDriver implements SwitchDriver {
  readonly driver = 'ovs';
  private readonly opts: OvsDriverOptions;
  private pending: Job[] = [];
  private busy = false;

  constructor(opts: OvsDriverOptions) {
    this.opts = opts;
  }

  /** Runs ovs-vsctl with `--db` and a timeout; args are commands joined with `--`. */
  vsctl(commands: string[][], signal?: AbortSignal, globals: string[] = []): Promise<string> {
    const argv = [`--db=${this.opts.db}`, `--timeout=${this.opts.timeoutSeconds ?? 15}`, ...globals];
    for (const c of commands) argv.push('--', ...c);
    return new Promise((resolve, reject) => {
      execFile(this.opts.vsctl ?? 'ovs-vsctl', argv, { signal, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const msg = (stderr || err.message).trim().split('\n').slice(-3).join(' ');
        if (signal?.aborted) return reject(new ProviderError('Timeout', `ovs-vsctl (${this.opts.db}) cancelled by the caller`, { retryable: false, cause: err }));
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new ProviderError('BackendUnavailable', `ovs-vsctl is not installed here: install openvswitch-switch (or openvswitch-common)`, { retryable: false }));
        if (/no row|no port named|no bridge named/i.test(msg)) return reject(new ProviderError('NotFound', `Open vSwitch ${this.opts.db}: ${msg}`));
        if (/timeout|database connection failed|connection refused|no such file/i.test(msg)) return reject(new ProviderError('BackendUnavailable', `Open vSwitch ${this.opts.db} is not answering: ${msg}`));
        if (/constraint violation|not a valid|invalid/i.test(msg)) return reject(new ProviderError('InvalidSpec', `Open vSwitch ${this.opts.db} refused the change: ${msg}`));
        reject(new ProviderError('Internal', `ovs-vsctl failed: ${msg}`));
      });
    });
  }

  async describe(ports: string[], signal?: AbortSignal): Promise<Map<string, PortState | undefined>> {
    const out = await this.vsctl([['--columns=name,tag,trunks,vlan_mode,external_ids', 'list', 'Port']], signal, ['--format=json']);
    const table = JSON.parse(out) as { data: OvsValue[][] };
    const all = new Map<string, PortState>();
    for (const [name, tag, trunks, vlanMode, ext] of table.data) {
      const tagv = setOf(tag!)[0];
      const trunkList = setOf(trunks!).map(Number).sort((a, b) => a - b);
      const mode = setOf(vlanMode!)[0] as string | undefined;
      const tags = Object.fromEntries((Array.isArray(ext) && ext[0] === 'map' ? (ext[1] as [string, string][]) : []).filter(([k]) => k.startsWith('infraflow-')).map(([k, v]) => [k.slice('infraflow-'.length), v]));
      const isTrunk = mode === 'trunk' || mode === 'native-untagged' || mode === 'native-tagged' || (mode === undefined && tagv === undefined && trunkList.length > 0);
      all.set(String(name), { port: String(name), mode: isTrunk ? 'trunk' : 'access', vlan: tagv === undefined ? null : Number(tagv), vlans: isTrunk ? trunkList : [], tags });
    }
    return ports.length === 0 ? all : new Map(ports.map((p) => [p, all.get(p)]));
  }

  /** The `set Port` (and external_ids removal) commands for one change: one transaction. */
  static commands(c: PortChange): string[][] {
    const cols = c.mode === 'access'
      ? ['vlan_mode=access', `tag=${c.vlan ?? '[]'}`, 'trunks=[]']
      : [c.vlan === null ? 'vlan_mode=trunk' : 'vlan_mode=native-untagged', `tag=${c.vlan ?? '[]'}`, `trunks=[${c.vlans.join(',')}]`];
    const tags = Object.entries(c.tags ?? {});
    for (const [k, v] of tags) if (v !== null) cols.push(`external_ids:infraflow-${k}="${v.replace(/"/g, '')}"`);
    const cmds = [['set', 'Port', c.port, ...cols]];
    for (const [k, v] of tags) if (v === null) cmds.push(['remove', 'Port', c.port, 'external_ids', `infraflow-${k}`]);
    return cmds;
  }

  configure(changes: PortChange[], signal?: AbortSignal): Promise<void> {
    if (changes.length === 0) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.pending.push({ args: changes.flatMap((c) => OvsSwitchDriver.commands(c)), resolve, reject, signal }));
    if (!this.busy) void this.drain();
    return p;
  }

  private async drain(): Promise<void> {
    this.busy = true;
    try {
      while (this.pending.length) {
        const batch: Job[] = [];
        let n = 0;
        while (this.pending.length && (n === 0 || n + this.pending[0]!.args.length <= 500)) { const j = this.pending.shift()!; n += j.args.length; batch.push(j); }
        const live = batch.filter((j) => { if (j.signal?.aborted) { j.reject(new ProviderError('Timeout', 'cancelled by the caller', { retryable: false })); return false; } return true; });
        if (!live.length) continue;
        // A lone call keeps its own signal (it can be cut mid-transaction: OVSDB commits all of it or none).
        const signal = live.length === 1 ? live[0]!.signal : undefined;
        try {
          await this.vsctl(live.flatMap((j) => j.args), signal);
          for (const j of live) j.resolve();
        } catch (e) {
          if (live.length === 1) { live[0]!.reject(e); continue; }
          for (const j of live) {
            try { await this.vsctl(j.args, j.signal); j.resolve(); } catch (e2) { j.reject(e2); }
          }
        }
      }
    } finally {
      this.busy = false;
      if (this.pending.length) void this.drain();
    }
  }
}
