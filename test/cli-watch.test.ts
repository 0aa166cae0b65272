import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.js';
import { defineWorkflow } from '../src/engine/types.js';
import { makeFullHarness, type FullHarness } from './api-fixtures.js';
import { makeHarness, type Harness } from './api-harness.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { DIALECTS, openTestStore } from './support/dialects.js';

/**
 * `infraflow watch` on a terminal: the live listr2 step tree, drawn on the
 * CLI's own output stream (here a fake TTY, 100 columns) against a real
 * server. What is checked is the screen a user would see at the end — the
 * raw bytes replayed through a small terminal model (cursor moves and line
 * erases) — and, while the run waits, the live screen.
 */

/** A writable that says it is a terminal and keeps everything written to it. */
function fakeTty(columns = 100): Writable & { raw: string; isTTY: boolean; columns: number; rows: number } {
  const w = new Writable({
    write(chunk, _enc, cb) {
      w.raw += String(chunk);
      cb();
    },
  }) as Writable & { raw: string; isTTY: boolean; columns: number; rows: number };
  w.raw = '';
  w.isTTY = true;
  w.columns = columns;
  w.rows = 40;
  return w;
}

/** The lines on screen after replaying `raw` (CSI cursor up/down/column, erase line; colours and modes ignored). */
function screen(raw: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  const at = (r: number) => {
    while (lines.length <= r) lines.push('');
  };
  const ESC = String.fromCharCode(27);
  const tokens = new RegExp(`${ESC}\\[(\\?)?([0-9;]*)([A-Za-z])|${ESC}[^[]|\\r?\\n|\\r|[^${ESC}\\r\\n]+`, 'g');
  for (const m of raw.matchAll(tokens)) {
    const tok = m[0];
    if (tok === '\n' || tok === '\r\n') {
      row++;
      col = 0;
      at(row);
    } else if (tok === '\r') {
      col = 0;
    } else if (tok.startsWith(ESC)) {
      if (m[1] || !m[3]) continue;
      const n = m[2] ? Number(m[2]) : undefined;
      switch (m[3]) {
        case 'A': row = Math.max(0, row - (n ?? 1)); break;
        case 'B': row += n ?? 1; at(row); break;
        case 'G': col = (n ?? 1) - 1; break;
        case 'K': lines[row] = n === 2 ? '' : n === 1 ? ' '.repeat(col) + lines[row]!.slice(col) : lines[row]!.slice(0, col); break;
        default: break;
      }
    } else {
      const l = lines[row]!.padEnd(col);
      lines[row] = l.slice(0, col) + tok + l.slice(col + tok.length);
      col += tok.length;
    }
  }
  while (lines.length && lines.at(-1)!.trim() === '') lines.pop();
  return lines.map((l) => l.trimEnd());
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(DIALECTS)('infraflow watch on a terminal (%s)', (dialect) => {
  let h: FullHarness;
  let url: string;
  let dir: string;

  const watch = async (runId: string, tty = fakeTty()) => {
    let err = '';
    const code = await runCli(['watch', runId], {
      out: tty, err: new Writable({ write(c, _e, cb) { err += String(c); cb(); } }), isTty: true,
      env: { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: h.adminToken },
      stdin: async () => '',
    });
    return { code, err, raw: tty.raw, lines: screen(tty.raw) };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-watch-'));
    h = await makeFullHarness(dialect, { startWorker: true });
    let flaky = 0;
    h.engine.register(defineWorkflow({
      name: 'watch.demo', version: 1,
      async run(ctx, input: { fail?: boolean; gate?: boolean }) {
        await ctx.step('prepare', async () => 1);
        await ctx.step('flaky', async () => {
          if (flaky++ % 2 === 0) throw Object.assign(new Error('backend busy'), { retryable: true });
          return 2;
        }, { retry: { maxAttempts: 3, initialIntervalMs: 10, maxIntervalMs: 10 } });
        if (input.gate) {
          ctx.progress({ stage: 'preDeploy', message: 'waiting for approval of preDeploy/ask: ship it?' });
          await ctx.waitFor('go', { name: 'ask' });
        }
        await ctx.step('work', async () => {
          if (input.fail) throw Object.assign(new Error('work failed on purpose'), { retryable: false });
          return 3;
        }, { retry: { maxAttempts: 1 } });
        return { ok: true };
      },
    }));
    h.engine.register(defineWorkflow({
      name: 'watch.many', version: 1,
      async run(ctx) {
        let broken = 0;
        for (let i = 0; i < 40; i++) {
          const name = `item-${String(i).padStart(2, '0')}`;
          await ctx.step(name, async () => {
            if (i === 7) throw Object.assign(new Error('item 7 broke'), { retryable: false });
            return i;
          }, { retry: { maxAttempts: 1 } }).catch(() => broken++);
        }
        if (broken) throw Object.assign(new Error(`${broken} item failed`), { retryable: false });
      },
    }));
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await h?.cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a run that succeeds: every step done, the run succeeded, exit 0', async () => {
    const run = await h.engine.start('watch.demo', {}, { labels: { project: 'default' } });
    const w = await watch(run.id);
    expect(w.code, w.err).toBe(0);
    expect(w.lines).toEqual([
      `✔ run ${run.id} (watch.demo) — succeeded`,
      '  › ✔ prepare',
      '    ✔ flaky (attempt 2)',
      '    ✔ work',
      `run ${run.id} succeeded`,
    ]);
    // the live drawing went to the CLI's stream, hiding and showing the cursor around it
    expect(w.raw).toContain('\x1b[?25l');
    expect(w.raw.lastIndexOf('\x1b[?25h')).toBeGreaterThan(w.raw.lastIndexOf('\x1b[?25l'));
  });

  it('a run that fails: the failed step with its error, the run failed, exit 1', async () => {
    const run = await h.engine.start('watch.demo', { fail: true }, { labels: { project: 'default' } });
    const w = await watch(run.id);
    expect(w.code).toBe(1);
    expect(w.lines).toEqual([
      `✖ run ${run.id} (watch.demo) failed: work failed on purpose`,
      '  › ✔ prepare',
      '    ✔ flaky (attempt 2)',
      '    ✖ work — work failed on purpose',
      `run ${run.id} failed: work failed on purpose`,
    ]);
    expect(w.err.trim().split('\n')).toHaveLength(1);
  });

  it('a long run: failures always shown, only the latest 25 finished steps listed', async () => {
    const run = await h.engine.start('watch.many', {}, { labels: { project: 'default' } });
    const w = await watch(run.id);
    expect(w.code).toBe(1);
    expect(w.lines.slice(0, 4)).toEqual([
      `✖ run ${run.id} (watch.many) failed: 1 item failed`,
      '  › … 14 earlier steps done',
      '    ✖ item-07 — item 7 broke',
      '    ✔ item-15',
    ]);
    expect(w.lines.slice(-2)).toEqual(['    ✔ item-39', `run ${run.id} failed: 1 item failed`]);
    expect(w.lines).toHaveLength(29);
  });

  it('while the run waits, the screen says what for; it goes on when signalled', async () => {
    const run = await h.engine.start('watch.demo', { gate: true }, { labels: { project: 'default' } });
    const tty = fakeTty(160);
    const watching = watch(run.id, tty);
    await until(() => screen(tty.raw).some((l) => l.includes(`run ${run.id} (watch.demo) — waiting: waiting for approval of preDeploy/ask: ship it?`)), 'the waiting line');
    expect(screen(tty.raw).filter((l) => l.includes('✔'))).toEqual(['  › ✔ prepare', '    ✔ flaky (attempt 2)']);
    await h.engine.signal(run.id, 'go', { approved: true });
    const w = await watching;
    expect(w.code, w.err).toBe(0);
    expect(w.lines[0]).toBe(`✔ run ${run.id} (watch.demo) — succeeded`);
    expect(w.lines).toContain('    ✔ ask');
    expect(w.lines.at(-1)).toBe(`run ${run.id} succeeded`);
  });
});

describe.each(DIALECTS)('infraflow watch of a stack apply on a terminal (%s)', (dialect) => {
  let sh: StackHarness;
  let h: Harness;
  let url: string;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'infraflow-cli-watch-stack-'));
    const t = await openTestStore(dialect);
    sh = await stackHarness(t.store, { worker: false });
    h = await makeHarness(dialect, { engine: sh.engine, t, areas: { resources: sh.resources, sim: sh.sim, stacks: sh.stacks } });
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await h?.app.close();
    await sh?.close();
    await h?.t.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('watch right after apply; instances waiting for approval show on the apply\'s line; the final tree has every instance', async () => {
    const document = `apiVersion: infraflow.dev/v1
kind: Stack
metadata: { name: gates }
spec:
  resources:
    gate: { kind: network/SecurityGroup, count: 2, spec: { description: "gate \${ count.index }" } }
  workflows:
    perInstance:
      - resource: gate
        stage: before
        steps:
          - { name: ok, type: approval, message: "create \${ instance.address }?" }
`;
    const { run } = await sh.stacks.apply({ document });
    const tty = fakeTty(400);
    let err = '';
    const watching = runCli(['watch', 'gates'], {
      out: tty, err: new Writable({ write(c, _e, cb) { err += String(c); cb(); } }), isTty: true,
      env: { INFRAFLOW_CLI_CONFIG: join(dir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: h.adminToken },
      stdin: async () => '',
    });
    // watched before any worker has touched the run: the stack names it already
    await until(() => screen(tty.raw).some((l) => l.includes(`run ${run.id} (stacks.apply) — pending`)), 'the pending run');
    sh.engine.startWorker();
    const waitingLine = `run ${run.id} (stacks.apply) — waiting: 2 instances waiting: waiting for approval of before:gate[0]/ok: create gate[0]? (fails after 7 d without an answer); waiting for approval of before:gate[1]/ok: create gate[1]? (fails after 7 d without an answer)`;
    await until(() => screen(tty.raw).some((l) => l.endsWith(waitingLine)), 'the waiting instances');
    await sh.stacks.approve('gates', { name: 'ok' }, { approved: true, by: 'alice' });
    const code = await watching;
    expect(code, err).toBe(0);
    const lines = screen(tty.raw);
    expect(lines[0]).toBe(`✔ run ${run.id} (stacks.apply) — succeeded`);
    expect(lines.slice(1, -1).map((l) => l.replace(/^\s*(› )?/, ''))).toEqual(['✔ plan', '✔ instance:gate[0]', '✔ instance:gate[1]', '✔ finish']);
    expect(lines.at(-1)).toBe(`run ${run.id} succeeded`);
  });
});
