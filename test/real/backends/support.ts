import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Helpers for the real-backend suites: find Debian binaries (a missing one is
 * a one-line failure naming the package), random free loopback ports, temp
 * dirs, daemons that are always killed, and uniquely named network
 * namespaces (`h19-<random>`) that are always deleted.
 */
const SBIN = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin', '/usr/lib/openvswitch-switch'];

export function requireBinary(name: string, pkg: string): string {
  for (const d of SBIN) { const p = join(d, name); if (existsSync(p)) return p; }
  throw new Error(`${name} is missing: install the Debian package ${pkg} (apt-get install --no-install-recommends ${pkg}; .ci/apt/backends.txt lists it)`);
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => { const a = s.address(); s.close(() => resolve(typeof a === 'object' && a ? a.port : 0)); });
  });
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `h19-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface Daemon { proc: ChildProcess; output(): string; stop(): Promise<void> }

export function startDaemon(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; netns?: string } = {}): Daemon {
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, cmd, ...args]] : [cmd, args];
  const proc = spawn(file, argv, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20_000); });
  proc.stderr?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-20_000); });
  return {
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const done = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(t);
    },
  };
}

/** Resolves when something accepts TCP connections on host:port (or the daemon exits: then throws with its output). */
export async function waitForPort(port: number, daemon?: Daemon, host = '127.0.0.1', timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (daemon && daemon.proc.exitCode !== null) throw new Error(`daemon exited with ${daemon.proc.exitCode}: ${daemon.output().slice(-2000)}`);
    const ok = await new Promise<boolean>((r) => { const s = connect(port, host); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms${daemon ? `: ${daemon.output().slice(-2000)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function run(cmd: string, args: string[], opts: { netns?: string; input?: string; env?: NodeJS.ProcessEnv; allowFail?: boolean; timeoutMs?: number } = {}): { status: number; stdout: string; stderr: string } {
  const [file, argv] = opts.netns ? ['ip', ['netns', 'exec', opts.netns, cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60_000 });
  const res = { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (!opts.allowFail && res.status !== 0) throw new Error(`${file} ${argv.join(' ')} exited ${res.status}: ${res.stderr || res.stdout}`);
  return res;
}

export function suffix(n = 4): string { return randomBytes(n).toString('hex'); }

/** A network namespace named h19-<tag><random>, deleted by `remove`. */
export function netns(tag: string): { name: string; remove(): void } {
  if (process.getuid?.() !== 0) throw new Error('network namespaces need root: run npm run test:backends as root (CI runs as root)');
  requireBinary('ip', 'iproute2');
  const name = `h19-${tag}${suffix(3)}`.slice(0, 15);
  run('ip', ['netns', 'add', name]);
  run('ip', ['link', 'set', 'lo', 'up'], { netns: name });
  return { name, remove: () => { run('ip', ['netns', 'del', name], { allowFail: true }); } };
}
