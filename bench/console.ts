/**
 * The console's speed in headless Chromium (Debian's, through playwright-core),
 * against a whole Infraflow process on loopback holding 100,000 resources.
 *
 *   npm run bench:console [-- --json] [-- --runs 5]
 *
 * initial_js_gzip_kb: the JavaScript index.html loads before any route (entry
 *   chunk and its preloads), gzip -9; every page's own code is split out.
 * overview_ready_ms: navigation to / until the overview shows its charts and
 *   recent runs (median of N, signed in, warm browser cache).
 * resources_100k_ready_ms: navigation to /resources in a project of 100,000
 *   resources until the first page of rows is on screen (median of N).
 * requests_per_resources_page: requests to GET /api/v1/resources during that
 *   load (one per page of 500; the list never asks per row).
 * Baselines from the same run: blank_navigation_ms (a navigation to /healthz,
 *   the browser's own floor) and api_first_page_ms (the first page of 500
 *   fetched directly); the ratios divide the console's figures by them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DEFAULT_CONSOLE_DIR } from '../src/api/console.js';
import { ADMIN_PASSWORD, launchBrowser, requireChromiumAndBuild, seedResources, signInWithPassword, startConsoleServer } from '../test/e2e/support.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const runs = Number(args[args.indexOf('--runs') + 1]) || 5;
const log = (s: string) => {
  if (!json) process.stdout.write(s + '\n');
  else process.stderr.write(s + '\n');
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function initialJsGzipKb(): number {
  const html = readFileSync(join(DEFAULT_CONSOLE_DIR, 'index.html'), 'utf8');
  const files = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]!);
  const bytes = files.reduce((n, f) => n + gzipSync(readFileSync(join(DEFAULT_CONSOLE_DIR, f)), { level: 9 }).length, 0);
  return Math.round((bytes / 1024) * 10) / 10;
}

requireChromiumAndBuild();
const jsKb = initialJsGzipKb();
log(`initial JS (gzip): ${jsKb} KB`);
log('seeding 100,000 resources and starting Infraflow…');
const srv = await startConsoleServer({ simSpeed: 1000, beforeListen: (ctx) => seedResources(ctx, 'bulk', 100_000) });
await srv.deps.iam.createProject({ name: 'bulk' });
const b = await launchBrowser();
try {
  const page = b.page;
  await signInWithPassword(page, srv.base, 'admin', ADMIN_PASSWORD);
  const token = (await (await fetch(srv.base + '/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'admin', password: ADMIN_PASSWORD }) })).json() as { token: string }).token;
  // a few runs for the overview to show
  for (let i = 0; i < 3; i++) await fetch(srv.base + '/api/v1/resources', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ project: 'default', kind: 'network/Network', name: `bench-net-${i}`, spec: {} }) });

  const blank: number[] = [];
  const api: number[] = [];
  const overview: number[] = [];
  const resources: number[] = [];
  const requests: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    let t = performance.now();
    await page.goto(srv.base + '/healthz');
    const blankMs = performance.now() - t;
    t = performance.now();
    const r = await fetch(srv.base + '/api/v1/resources?project=bulk&limit=500', { headers: { authorization: `Bearer ${token}` } });
    await r.json();
    const apiMs = performance.now() - t;

    await page.evaluate(() => localStorage.setItem('infraflow.project', 'default'));
    t = performance.now();
    await page.goto(srv.base + '/');
    await page.getByRole('heading', { name: 'Hypervisors' }).waitFor();
    await page.locator('.bar').first().waitFor();
    await page.locator('section[aria-labelledby="recent-h"] tbody tr').first().waitFor();
    const overviewMs = performance.now() - t;

    await page.evaluate(() => localStorage.setItem('infraflow.project', 'bulk'));
    let n = 0;
    const count = (req: { url(): string }) => {
      if (new URL(req.url()).pathname === '/api/v1/resources') n++;
    };
    page.on('request', count);
    t = performance.now();
    await page.goto(srv.base + '/resources');
    await page.getByRole('link', { name: 'bulk-000000' }).waitFor();
    const resourcesMs = performance.now() - t;
    page.off('request', count);
    if (i === 0) continue; // the first round warms the browser cache and the server
    blank.push(blankMs);
    api.push(apiMs);
    overview.push(overviewMs);
    resources.push(resourcesMs);
    requests.push(n);
    log(`round ${i}: overview ${overviewMs.toFixed(0)} ms, resources ${resourcesMs.toFixed(0)} ms (${n} request), blank ${blankMs.toFixed(0)} ms, API page ${apiMs.toFixed(0)} ms`);
  }
  const out = {
    initial_js_gzip_kb: jsKb,
    overview_ready_ms: Math.round(median(overview)),
    resources_100k_ready_ms: Math.round(median(resources)),
    requests_per_resources_page: Math.max(...requests),
    blank_navigation_ms: Math.round(median(blank)),
    api_first_page_ms: Math.round(median(api)),
    overview_vs_blank: Number((median(overview) / median(blank)).toFixed(2)),
    resources_vs_api_page: Number((median(resources) / median(api)).toFixed(2)),
    runs,
    targets: { initial_js_gzip_kb: 300, overview_ready_ms: 1000, resources_100k_ready_ms: 1500, requests_per_resources_page: 1 },
  };
  log(`overview ${out.overview_ready_ms} ms (×${out.overview_vs_blank} a blank navigation), 100k resources ${out.resources_100k_ready_ms} ms (×${out.resources_vs_api_page} the API page alone), ${out.requests_per_resources_page} request per page`);
  if (json) process.stdout.write(JSON.stringify(out) + '\n');
} finally {
  await b.close();
  await srv.close();
}
