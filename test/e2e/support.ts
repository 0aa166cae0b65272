import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { createContext, type AppContext } from '../../src/app/context.js';
import { buildApi } from '../../src/api/app.js';
import { DEFAULT_CONSOLE_DIR } from '../../src/api/console.js';
import type { ApiDeps } from '../../src/api/route.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ADMIN_PASSWORD = 'console-admin-password';

/** The flags this machine needs (no GPU, no network besides loopback, a fresh profile each time). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function requireChromiumAndBuild(): void {
  if (!existsSync(CHROMIUM)) throw new Error(`browser tests need Debian's chromium at ${CHROMIUM}: apt-get install chromium (listed in .ci/apt/console.txt)`);
  if (!existsSync(join(DEFAULT_CONSOLE_DIR, 'index.html'))) throw new Error('the console is not built: run npm run build:web (npm ci runs it)');
}

export interface ConsoleServer { base: string; ctx: AppContext; deps: ApiDeps; dir: string; close(): Promise<void> }

/** An Infraflow process in this one (API, worker, simulator at high speed, the console) on a random loopback port. */
export async function startConsoleServer(o: { simSpeed?: number; auth?: Record<string, unknown>; beforeListen?: (ctx: AppContext) => Promise<void> } = {}): Promise<ConsoleServer> {
  const dir = mkdtempSync(join(tmpdir(), 'infraflow-e2e-'));
  const config = loadConfig({ env: {}, file: '/dev/null', overrides: { dataDir: dir, 'sim.speed': o.simSpeed ?? 200, 'http.port': 0, 'worker.pollMs': 50, ...(o.auth ? { auth: o.auth } : {}) } });
  const ctx = await createContext(config, silentLogger);
  const { inventory, ipam, allocations, resources, registry, sim, stacks } = ctx;
  const { app, deps } = await buildApi({ config, store: ctx.store, clock: ctx.clock, logger: silentLogger, engine: ctx.engine, areas: { inventory, ipam, allocations, resources, registry, sim, stacks }, env: { INFRAFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, INFRAFLOW_RATE_LIMIT: '0' }, print: () => undefined, server: { console: DEFAULT_CONSOLE_DIR } });
  await o.beforeListen?.(ctx);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    base, ctx, deps, dir,
    async close() {
      await app.close();
      await ctx.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Browser { context: BrowserContext; page: Page; close(): Promise<void> }

export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'infraflow-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, bypassCSP: true, viewport: { width: 1366, height: 860 } });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(60_000);
  return {
    context, page,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core over the page (WCAG 2.0/2.1/2.2 A and AA): the violations, one line each. */
export async function a11yViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => {
    const g = globalThis as unknown as { document: unknown; axe: { run(ctx: unknown, o: unknown): Promise<{ violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[] }> } };
    return g.axe.run(g.document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } });
  });
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
}

/** The final page of a test, kept as an artifact under .tmp/e2e/. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync('.tmp/e2e', { recursive: true });
  const path = join('.tmp/e2e', `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  return path;
}

export async function signInWithPassword(page: Page, base: string, name = 'admin', password = ADMIN_PASSWORD): Promise<void> {
  await page.goto(base + '/');
  await page.getByLabel('User name', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

/**
 * `count` resources in `project`: the first through the resource store, the
 * rest copies of its row in bulk (transactions of 10 000), so that 100 000
 * take seconds. SQLite only (the console tests' server runs on SQLite).
 */
export async function seedResources(ctx: AppContext, project: string, count: number): Promise<void> {
  const first = await ctx.resources.create({ kind: 'network/Network', name: 'bulk-000000', project, spec: {}, labels: { tier: 'db' } });
  const db = ctx.store.sqlite;
  if (!db) throw new Error('seedResources needs SQLite');
  const sample = db.prepare('select * from resources where id = ?').get(first.id) as Record<string, unknown>;
  const cols = Object.keys(sample);
  const insert = db.prepare(`insert into resources (${cols.join(', ')}) values (${cols.map((c) => '@' + c).join(', ')})`);
  const label = db.prepare('insert into resource_labels (resource_id, key, value) values (?, ?, ?)');
  const { newId } = await import('../../src/core/ids.js');
  for (let i = 1; i < count; i += 10_000) {
    db.transaction(() => {
      for (let j = i; j < Math.min(count, i + 10_000); j++) {
        const id = newId('res');
        const tier = j % 2 ? 'web' : 'db';
        insert.run({ ...sample, id, name: `bulk-${String(j).padStart(6, '0')}`, labels: JSON.stringify({ tier }) });
        label.run(id, 'tier', tier);
      }
    })();
  }
}
