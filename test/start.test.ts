import { afterAll, describe, expect, it, vi } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The product as a user starts it: `npm start` runs the compiled server
 * (dist/, built on install or first start), and a SIGTERM sent to the
 * `npm start` process — what a process supervisor or `kill` does — reaches
 * the server, which shuts down gracefully and exits; `infraflow --version`
 * runs the compiled CLI.
 */
vi.setConfig({ testTimeout: 180_000 });

const ROOT = process.cwd();
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `npm` as the test runner was started with (npm_execpath), else the one on PATH. */
function npm(args: string[], opts: { env: NodeJS.ProcessEnv }): ChildProcess {
  const execPath = process.env.npm_execpath;
  return execPath && execPath.endsWith('.js')
    ? spawn(process.execPath, [execPath, ...args], { cwd: ROOT, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('npm', args, { cwd: ROOT, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start', () => {
  it('runs the compiled server, and SIGTERM to the npm process shuts the server down gracefully', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-start-'));
    dirs.push(dir);
    const proc = npm(['start'], {
      env: { ...process.env, INFRAFLOW_DATA_DIR: dir, INFRAFLOW_PORT: '0', INFRAFLOW_HOST: '127.0.0.1', INFRAFLOW_ADMIN_PASSWORD: 'start-test-password-1', DATABASE_URL: '', INFRAFLOW_DATABASE_URL: '', LOG_LEVEL: 'info' },
    });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const started = await vi.waitFor(() => {
        const m = /"pid":(\d+)[^\n]*"url":"(http:\/\/[^"]+)"[^\n]*infraflow started/.exec(out);
        if (!m) throw new Error(`not started yet: ${out.slice(-500)}`);
        return { pid: Number(m[1]), url: m[2]! };
      }, { timeout: 120_000, interval: 100 });
      // the server is a child of npm running compiled JavaScript, not a TypeScript loader
      expect(started.pid).not.toBe(proc.pid);
      const cmdline = readFileSync(`/proc/${started.pid}/cmdline`, 'utf8').split('\0');
      expect(cmdline.some((a) => a.endsWith('bin/infraflow-server.js'))).toBe(true);
      expect(cmdline.join(' ')).not.toContain('tsx');
      expect((await fetch(`${started.url}/healthz`)).status).toBe(200);

      proc.kill('SIGTERM'); // to npm, not to the server
      expect(await exited).toBe(0);
      expect(out).toMatch(/"signal":"SIGTERM"[^\n]*shutting down/);
      expect(alive(started.pid)).toBe(false);
      await expect(fetch(`${started.url}/healthz`)).rejects.toThrow();
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  });
});

describe('infraflow --version', () => {
  it('prints the package version from the compiled CLI', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/infraflow.js'), '--version'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });
});
