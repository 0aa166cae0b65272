import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PhaseRequest } from './phase.js';
import type { WorkloadResult } from './workload.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Runs one phase in a child process (see phase.ts) and returns its result. */
export function runPhase(req: PhaseRequest, opts: { timeoutMs?: number } = {}): Promise<WorkloadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'phase.ts'), JSON.stringify(req)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'silent' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line) return resolve(JSON.parse(line.slice('RESULT '.length)) as WorkloadResult);
      reject(new Error(`bench phase ${req.kind}${'dialect' in req ? `/${req.dialect}` : ''} failed (exit ${code ?? signal}):\n${err.slice(-4000)}${out.slice(-2000)}`));
    });
  });
}
