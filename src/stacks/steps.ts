import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { InfraflowError, TimeoutError, TransientError, ValidationError, isInfraflowError } from '../core/errors.js';
import { redactText, redactUrl } from '../core/secrets.js';
import type { StepContext, WorkflowContext } from '../engine/types.js';
import { evalCondition, toCel, ExprError } from './expr.js';
import type { CompiledStep } from './model.js';

/**
 * Attached workflow steps (pre-deploy, per instance, post-deploy, on-failure):
 * http, shell, automation (the real `ansible-playbook`), waitUntil (CEL over
 * resource status), approval (a signal through the API) and notify (a
 * CloudEvents webhook). Each is one journaled engine operation, so a
 * workflow resumes after a crash at the step it was on.
 */

export interface StepRuntime {
  /** Root directory for shell/automation working directories. */
  workDir: string;
  /** Directory relative playbook paths resolve against. */
  automationDir?: string;
  /** Template context (CEL values) before step results are added. */
  context(): Promise<Record<string, unknown>> | Record<string, unknown>;
  /** Fresh context for waitUntil conditions (re-reads resource status). */
  liveContext(): Promise<Record<string, unknown>>;
  /** Publishes a progress event (at least once). */
  publish(type: string, data: Record<string, unknown>): Promise<void>;
  stackName: string;
  stackId: string;
}

const MAX_OUTPUT = 64 * 1024;

function keepTail(s: string): string {
  return s.length > MAX_OUTPUT ? `…(${s.length - MAX_OUTPUT} bytes cut)…\n${s.slice(-MAX_OUTPUT)}` : s;
}

/** The signal an approval step waits for. */
export function approvalSignal(scope: string, step: string): string {
  return `approval:${scope}:${step}`;
}

export interface ApprovalPayload {
  approved: boolean;
  by?: string;
  comment?: string;
}

/** Runs a list of steps in order; returns their results by name. Throws on the first failure. */
export async function runSteps(ctx: WorkflowContext, rt: StepRuntime, steps: readonly CompiledStep[], scope: string, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const results: Record<string, unknown> = {};
  if (steps.length === 0) return results;
  const base = { ...(await rt.context()), ...extra };
  for (const step of steps) {
    const def = step.def;
    const name = `${scope}:${def.name}`;
    const tctx = { ...base, steps: toCel(results) as Record<string, unknown> };
    ctx.progress({ stage: scope, waitingFor: `${def.type} step ${def.name}` });
    if (def.when !== undefined) {
      let run: boolean;
      try {
        run = evalCondition(def.when, tctx);
      } catch (e) {
        throw new ValidationError('stacks.step_failed', `step ${scope}/${def.name}: ${(e as Error).message}`);
      }
      if (!run) {
        results[def.name] = { skipped: true };
        continue;
      }
    }
    let fields: Record<string, unknown>;
    try {
      fields = step.fields.evaluate(tctx) as Record<string, unknown>;
    } catch (e) {
      if (e instanceof ExprError) throw new ValidationError('stacks.step_failed', `step ${scope}/${def.name}: ${e.message}`);
      throw e;
    }
    const timeoutMs = (def.timeoutSeconds ?? defaultTimeout(def.type)) * 1000;
    const retry = { maxAttempts: (def.retries ?? (def.type === 'http' || def.type === 'notify' ? 3 : 0)) + 1, initialIntervalMs: 500, maxIntervalMs: 10_000 };
    await rt.publish('stack.step.started', { scope, step: def.name, type: def.type });
    try {
      let out: unknown;
      switch (def.type) {
        case 'http':
          out = await ctx.step(name, (sc) => httpStep(fields, sc, timeoutMs), { retry, timeoutMs: timeoutMs + 1000 });
          break;
        case 'notify':
          out = await ctx.step(name, (sc) => notifyStep(fields, sc, rt, scope, def.name, timeoutMs), { retry, timeoutMs: timeoutMs + 1000 });
          break;
        case 'shell':
          out = await ctx.step(name, (sc) => shellStep(fields, sc, rt, scope, def.name, timeoutMs), { retry, timeoutMs: timeoutMs + 5000 });
          break;
        case 'automation':
          out = await ctx.step(name, (sc) => automationStep(fields, sc, rt, scope, def.name, timeoutMs), { retry, timeoutMs: timeoutMs + 5000 });
          break;
        case 'waitUntil': {
          const condition = def.condition;
          out = await ctx.poll(name, async () => {
            const live = { ...(await rt.liveContext()), ...extra, steps: toCel(results) };
            let ok: boolean;
            try {
              ok = evalCondition(condition, live);
            } catch (e) {
              throw new ValidationError('stacks.step_failed', `step ${scope}/${def.name}: ${(e as Error).message}`);
            }
            return ok ? { done: true, value: { satisfied: true } } : { done: false, status: `waiting until ${condition}` };
          }, { intervalMs: ((fields.intervalSeconds as number | undefined) ?? 5) * 1000, timeoutMs, retry: { maxAttempts: 1 } });
          break;
        }
        case 'approval': {
          const signal = approvalSignal(scope, def.name);
          const what = `${scope}/${def.name}`;
          const waiting = `approval of ${what}: ${String(fields.message)}`;
          await rt.publish('stack.approval.requested', { scope, step: def.name, signal, message: fields.message, timeoutSeconds: timeoutMs / 1000, onTimeout: def.onTimeout });
          ctx.progress({ stage: scope, waitingFor: waiting, message: `waiting for ${waiting} (${def.onTimeout === 'approve' ? 'goes on' : 'fails'} after ${duration(timeoutMs)} without an answer)` });
          let payload: ApprovalPayload | undefined;
          try {
            payload = await ctx.waitFor<ApprovalPayload>(signal, { timeoutMs, name });
          } catch (e) {
            if (!isInfraflowError(e) || e.code !== 'engine.wait_timeout') throw e;
            await rt.publish('stack.approval.timed_out', { scope, step: def.name, onTimeout: def.onTimeout });
            if (def.onTimeout !== 'approve') {
              throw new TimeoutError('stacks.approval_timeout', `step ${what} was not approved within ${duration(timeoutMs)} (timeoutSeconds ${timeoutMs / 1000}); nothing after it ran: apply again and approve in time, or raise timeoutSeconds (onTimeout: approve goes on instead)`, { retryable: false, details: { step: what, timeoutSeconds: timeoutMs / 1000 } });
            }
            out = { approved: true, by: null, comment: null, timedOut: true };
            break;
          }
          if (!payload || payload.approved !== true) {
            throw new InfraflowError('stacks.approval_rejected', `step ${what} was rejected${payload?.by ? ` by ${payload.by}` : ''}${payload?.comment ? `: ${payload.comment}` : ''}`, 409, { retryable: false });
          }
          out = { approved: true, by: payload.by ?? null, comment: payload.comment ?? null };
          break;
        }
      }
      results[def.name] = out;
      await rt.publish('stack.step.succeeded', { scope, step: def.name, type: def.type });
    } catch (e) {
      await rt.publish('stack.step.failed', { scope, step: def.name, type: def.type, error: e instanceof Error ? e.message : String(e) });
      throw e;
    }
  }
  return results;
}

/** `90 s`, `15 min`, `2 h`, `7 d`: the largest unit that divides evenly. */
function duration(ms: number): string {
  const s = ms / 1000;
  if (s >= 86_400 && s % 86_400 === 0) return `${s / 86_400} d`;
  if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
  if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

function defaultTimeout(type: string): number {
  switch (type) {
    case 'approval': return 7 * 24 * 3600;
    case 'waitUntil': return 1800;
    case 'automation': return 1800;
    case 'shell': return 600;
    default: return 30;
  }
}

function withTimeout(signal: AbortSignal, ms: number): AbortSignal {
  return AbortSignal.any([signal, AbortSignal.timeout(ms)]);
}

async function readBody(res: Response): Promise<unknown> {
  const text = keepTail(await res.text());
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

function statusOk(status: number, expect: number[] | undefined): boolean {
  return expect ? expect.includes(status) : status >= 200 && status < 300;
}

async function httpStep(f: Record<string, unknown>, sc: StepContext, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  const method = (f.method as string | undefined) ?? 'GET';
  const headers: Record<string, string> = { 'idempotency-key': sc.idempotencyKey, ...((f.headers as Record<string, string> | undefined) ?? {}) };
  let body: string | undefined;
  if (f.body !== undefined && method !== 'GET' && method !== 'HEAD') {
    if (typeof f.body === 'string') body = f.body;
    else {
      body = JSON.stringify(f.body);
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    }
  }
  let res: Response;
  try {
    res = await fetch(String(f.url), { method, headers, ...(body !== undefined ? { body } : {}), signal: withTimeout(sc.signal, timeoutMs) });
  } catch (e) {
    throw new TransientError('stacks.http_unreachable', `${method} ${redactUrl(String(f.url))} failed: ${redactText((e as Error).message)}`);
  }
  const out = { status: res.status, body: await readBody(res) };
  sc.log(`${method} ${redactUrl(String(f.url))} → ${res.status}`);
  if (!statusOk(res.status, f.expectStatus as number[] | undefined)) {
    const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new InfraflowError('stacks.http_status', `${method} ${redactUrl(String(f.url))} answered ${res.status}${typeof out.body === 'string' && out.body ? `: ${redactText(out.body.slice(0, 200))}` : ''}`, 502, { retryable, details: { status: res.status } });
  }
  return out;
}

async function notifyStep(f: Record<string, unknown>, sc: StepContext, rt: StepRuntime, scope: string, step: string, timeoutMs: number): Promise<{ status: number; id: string }> {
  // CloudEvents 1.0, structured content mode; the id is stable across retries so receivers can deduplicate
  const event = {
    specversion: '1.0',
    id: sc.idempotencyKey,
    source: (f.source as string | undefined) ?? `/stacks/${rt.stackName}`,
    type: (f.eventType as string | undefined) ?? 'dev.infraflow.stack.notification',
    subject: `${scope}/${step}`,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: f.data ?? null,
  };
  let res: Response;
  try {
    res = await fetch(String(f.url), {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json; charset=utf-8', ...((f.headers as Record<string, string> | undefined) ?? {}) },
      body: JSON.stringify(event),
      signal: withTimeout(sc.signal, timeoutMs),
    });
  } catch (e) {
    throw new TransientError('stacks.notify_unreachable', `notify ${redactUrl(String(f.url))} failed: ${redactText((e as Error).message)}`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status < 200 || res.status >= 300) {
    throw new InfraflowError('stacks.notify_status', `notify ${redactUrl(String(f.url))} answered ${res.status}`, 502, { retryable: res.status >= 500 || res.status === 429 });
  }
  sc.log(`notified ${redactUrl(String(f.url))} (${event.type})`);
  return { status: res.status, id: event.id };
}

function stepDir(rt: StepRuntime, sc: StepContext, scope: string, step: string): string {
  const safe = `${sc.runId}/${scope}-${step}`.replace(/[^A-Za-z0-9._/-]/g, '_');
  const dir = resolve(rt.workDir, safe);
  mkdirSync(dir, { recursive: true });
  return dir;
}

interface ProcResult { exitCode: number; stdout: string; stderr: string; workdir: string }

function runProcess(cmd: string, args: string[], opts: { cwd: string; env: Record<string, string>; signal: AbortSignal; timeoutMs: number; what: string }): Promise<ProcResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (stdout.length > 4 * MAX_OUTPUT) stdout = stdout.slice(-2 * MAX_OUTPUT);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.length > 4 * MAX_OUTPUT) stderr = stderr.slice(-2 * MAX_OUTPUT);
    });
    let killedFor: 'timeout' | 'abort' | undefined;
    const kill = (why: 'timeout' | 'abort') => {
      killedFor = why;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => kill('timeout'), opts.timeoutMs);
    const onAbort = () => kill('abort');
    opts.signal.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      reject(new InfraflowError('stacks.spawn_failed', `${opts.what}: cannot run ${cmd}: ${e.message}`, 500, { retryable: false }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      if (killedFor === 'timeout') return reject(new TimeoutError('stacks.step_timeout', `${opts.what} did not finish within ${Math.round(opts.timeoutMs / 1000)} s and was killed`, { retryable: false }));
      if (killedFor === 'abort') return reject(opts.signal.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
      resolvePromise({ exitCode: code ?? -1, stdout: keepTail(stdout), stderr: keepTail(stderr), workdir: opts.cwd });
    });
  });
}

function baseEnv(rt: StepRuntime, sc: StepContext, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    LANG: 'C.UTF-8',
    INFRAFLOW_STACK: rt.stackName,
    INFRAFLOW_STACK_ID: rt.stackId,
    INFRAFLOW_RUN_ID: sc.runId,
    INFRAFLOW_IDEMPOTENCY_KEY: sc.idempotencyKey,
    ...extra,
  };
}

async function shellStep(f: Record<string, unknown>, sc: StepContext, rt: StepRuntime, scope: string, step: string, timeoutMs: number): Promise<ProcResult> {
  const cwd = stepDir(rt, sc, scope, step);
  const env = baseEnv(rt, sc, (f.env as Record<string, string> | undefined) ?? {});
  const r = await runProcess((f.shell as string | undefined) ?? '/bin/sh', ['-c', String(f.script)], { cwd, env, signal: sc.signal, timeoutMs, what: `shell step ${step}` });
  sc.log(`shell step ${step} exited ${r.exitCode}`);
  if (r.exitCode !== 0) {
    throw new InfraflowError('stacks.shell_failed', `shell step ${step} exited with ${r.exitCode}: ${r.stderr.trim().split('\n').slice(-3).join(' | ') || r.stdout.trim().split('\n').slice(-3).join(' | ')}`, 500, { retryable: true, details: { exitCode: r.exitCode, workdir: cwd } });
  }
  return r;
}

function parseRecap(out: string): Record<string, Record<string, number>> {
  const recap: Record<string, Record<string, number>> = {};
  const at = out.lastIndexOf('PLAY RECAP');
  if (at < 0) return recap;
  for (const line of out.slice(at).split('\n').slice(1)) {
    const m = /^(\S+)\s+:\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const counts: Record<string, number> = {};
    for (const kv of m[2]!.trim().split(/\s+/)) {
      const [k, v] = kv.split('=');
      if (k && v !== undefined) counts[k] = Number(v);
    }
    recap[m[1]!] = counts;
  }
  return recap;
}

async function automationStep(f: Record<string, unknown>, sc: StepContext, rt: StepRuntime, scope: string, step: string, timeoutMs: number): Promise<ProcResult & { recap: Record<string, Record<string, number>> }> {
  const cwd = stepDir(rt, sc, scope, step);
  let playbook: string;
  if (typeof f.playbook === 'string') {
    playbook = isAbsolute(f.playbook) ? f.playbook : resolve(rt.automationDir ?? process.cwd(), f.playbook);
  } else {
    playbook = join(cwd, 'playbook.yml');
    writeFileSync(playbook, toYaml(f.playbook));
  }
  const hostsRaw = f.hosts === undefined ? [] : Array.isArray(f.hosts) ? f.hosts : [f.hosts];
  const hosts: Record<string, Record<string, unknown>> = {};
  if (hostsRaw.length === 0) hosts.localhost = { ansible_connection: 'local', ansible_python_interpreter: 'auto_silent' };
  for (const h of hostsRaw) hosts[String(h)] = { ansible_connection: 'local', ansible_python_interpreter: 'auto_silent' };
  const inventory = join(cwd, 'inventory.yml');
  writeFileSync(inventory, toYaml({ all: { hosts } }));
  const varsFile = join(cwd, 'vars.json');
  writeFileSync(varsFile, JSON.stringify({ infraflow_stack: rt.stackName, infraflow_run_id: sc.runId, ...((f.extraVars as Record<string, unknown> | undefined) ?? {}) }));
  const env = baseEnv(rt, sc, {
    ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', ANSIBLE_HOST_KEY_CHECKING: 'False', ANSIBLE_RETRY_FILES_ENABLED: 'False',
    ANSIBLE_LOCAL_TEMP: join(cwd, '.ansible-tmp'), ANSIBLE_REMOTE_TEMP: join(cwd, '.ansible-remote'), ANSIBLE_HOME: join(cwd, '.ansible'),
    ANSIBLE_LOCALHOST_WARNING: 'False', ANSIBLE_INVENTORY_UNPARSED_WARNING: 'False',
  });
  const r = await runProcess('ansible-playbook', ['-i', inventory, playbook, '-e', `@${varsFile}`], { cwd, env, signal: sc.signal, timeoutMs, what: `automation step ${step}` });
  const recap = parseRecap(r.stdout);
  sc.log(`ansible-playbook exited ${r.exitCode}`, { recap });
  if (r.exitCode !== 0) {
    const tail = r.stdout.trim().split('\n').filter((l) => /fatal|FAILED|ERROR/i.test(l)).slice(-3).join(' | ') || r.stderr.trim().split('\n').slice(-3).join(' | ');
    throw new InfraflowError('stacks.automation_failed', `automation step ${step}: ansible-playbook exited with ${r.exitCode}: ${tail}`, 500, { retryable: true, details: { exitCode: r.exitCode, recap, workdir: cwd } });
  }
  return { ...r, recap };
}
