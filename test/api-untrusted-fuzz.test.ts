import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { resourceWorkflows } from '../src/resources/lifecycle.js';
import { Inventory } from '../src/inventory/inventory.js';
import { Ipam } from '../src/ipam/ipam.js';
import { SecretBox } from '../src/core/secrets.js';

/**
 * Untrusted input, generated (seeded fast-check): stack documents with alias
 * bombs, deep nesting, duplicate and huge keys, costly CEL (nested
 * comprehensions over long lists, backtracking regular expressions), names
 * and label keys with control, bidi and zero-width characters, JSON bodies
 * nested thousands deep and large ones, sent over real HTTP to the routes
 * that parse documents and names. Properties: no answer is a 5xx, and the
 * server keeps answering — a separate process probes /healthz every 50 ms
 * through the whole run and every probe is answered (a generous 20 s per
 * probe, so a slow machine cannot fail it; a blocked server for minutes would).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261207);
const RUNS = Number(process.env.FUZZ_RUNS ?? 40);

const head = 'apiVersion: infraflow.dev/v1\nkind: Stack\nmetadata:\n  name: fuzz\nspec:\n';
const list = (n: number) => `[${Array.from({ length: n }, (_, i) => i).join(', ')}]`;

const nasty = fc.constantFrom('\u0000', '\r\n', '\u202E', '\u200B', '\uFEFF', ' ', '../', '${', '}', '*', '&', '"', "'", 'é', '\u2028', '%00', 'Admin');
const nastyString = fc.array(fc.oneof(nasty, fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 6 }).map((a) => a.join(''));

const costlyExpr = fc.constantFrom(
  'params.xs.map(a, params.xs.map(b, params.xs.map(c, a + b + c))).size()',
  'params.xs.all(a, params.xs.all(b, params.xs.all(c, a + b + c >= 0))) ? 1 : 0',
  'params.xs.filter(a, params.xs.exists(b, params.xs.exists(c, a == b + c))).size()',
  '"' + 'a'.repeat(40) + '!".matches("^(a+)+$") ? 1 : 0',
  'params.xs.map(a, params.xs + params.xs).size()',
  'params.s.matches("^(a|aa)+$") ? 1 : 0',
  'size(params.s + params.s + params.s)',
);

const bombDoc = fc.integer({ min: 5, max: 12 }).map((fan) => {
  let text = `${head}  outputs:\n    a0: &a0 [${Array.from({ length: fan }, () => 'lol').join(', ')}]\n`;
  for (let i = 1; i <= 9; i++) text += `    a${i}: &a${i} [${Array.from({ length: fan }, () => `*a${i - 1}`).join(', ')}]\n`;
  return text;
});
const deepDoc = fc.integer({ min: 100, max: 20_000 }).map((n) => `${head}  outputs:\n    x: ${'['.repeat(n)}${']'.repeat(n)}\n`);
const deepBlockDoc = fc.integer({ min: 100, max: 5_000 }).map((n) => `${head}  outputs:\n    x: ${'- '.repeat(n)}1\n`);
const costlyDoc = costlyExpr.map((e) => `${head}  parameters:\n    xs: { type: list, default: ${list(1000)} }\n    s: { type: string, default: "${'a'.repeat(3000)}!" }\n  resources:\n    net:\n      kind: network/Network\n      count: "\${ ${e} }"\n`);
const namesDoc = fc.tuple(nastyString, nastyString).map(([k, v]) => `${head}  resources:\n    ${JSON.stringify(k)}:\n      kind: network/Network\n      labels: { ${JSON.stringify(k)}: ${JSON.stringify(v)} }\n`);
const manyKeysDoc = fc.integer({ min: 1000, max: 20_000 }).map((n) => `${head}  outputs:\n    labels:\n${Array.from({ length: n }, (_, i) => `      k${i}: v`).join('\n')}\n      k0: dup\n`);
const document = fc.oneof(bombDoc, deepDoc, deepBlockDoc, costlyDoc, namesDoc, manyKeysDoc, fc.string({ maxLength: 200 }));

function deepJson(n: number): string {
  let s = '1';
  for (let i = 0; i < n; i++) s = i % 2 ? `[${s}]` : `{"a":${s}}`;
  return s;
}

type Req = { method: string; url: string; body?: unknown; raw?: string };

describe.each(DIALECTS)('untrusted input fuzzing on %s', (dialect) => {
  let t: TestDb;
  let s: StackHarness;
  let h: Harness;
  let base = '';
  let probe: ChildProcess | undefined;
  const probes: { ok: boolean; ms: number; error?: string }[] = [];
  let resourceId = '';

  beforeAll(async () => {
    t = await openTestStore(dialect);
    s = await stackHarness(t.store);
    for (const w of resourceWorkflows({ resources: s.resources, registry: s.registry })) s.engine.register(w);
    const inventory = new Inventory({ store: t.store, secrets: SecretBox.random() });
    const ipam = new Ipam({ store: t.store });
    h = await makeHarness(dialect, { engine: s.engine, t, areas: { resources: s.resources, stacks: s.stacks, inventory, ipam } });
    base = await h.app.listen({ host: '127.0.0.1', port: 0 });
    const created = await fetch(`${base}/api/v1/resources`, { method: 'POST', headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ project: 'default', kind: 'network/Network', name: 'fuzz-target' }) });
    resourceId = ((await created.json()) as { resource: { id: string } }).resource.id;
    // the prober: another process, so a blocked event loop here cannot hide from it
    const script = `
      const url = process.argv[1];
      let stop = false;
      process.stdin.on('data', () => { stop = true; });
      (async () => {
        while (!stop) {
          const t0 = Date.now();
          try {
            const r = await fetch(url, { signal: AbortSignal.timeout(20000) });
            console.log(JSON.stringify({ ok: r.status === 200, ms: Date.now() - t0 }));
          } catch (e) {
            console.log(JSON.stringify({ ok: false, ms: Date.now() - t0, error: String(e) }));
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        process.exit(0);
      })();`;
    probe = spawn(process.execPath, ['-e', script, `${base}/healthz`], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: probe.stdout! }).on('line', (l) => probes.push(JSON.parse(l) as { ok: boolean; ms: number }));
  });

  afterAll(async () => {
    if (probe && probe.exitCode === null) {
      probe.stdin?.write('stop\n');
      await new Promise((r) => probe!.once('exit', r));
    }
    await h?.close();
    await s?.close();
    await t?.cleanup();
  });

  it('answers every generated input with a 4xx or success, never a 5xx, and keeps answering /healthz', async () => {
    // every kind of input is sampled (each generator on its own), so each is exercised whatever the seed
    const kinds: fc.Arbitrary<Req>[] = [
      document.map((d): Req => ({ method: 'POST', url: '/api/v1/stacks/plan', body: { document: d, file: 'fuzz.yaml' } })),
      document.map((d): Req => ({ method: 'POST', url: '/api/v1/stacks', body: { document: d } })),
      document.map((d): Req => ({ method: 'POST', url: '/api/v1/inventory/import', body: { document: d } })),
      document.map((d): Req => ({ method: 'POST', url: '/api/v1/ipam/import', body: { document: d } })),
      fc.tuple(nastyString, nastyString).map(([name, key]): Req => ({ method: 'POST', url: '/api/v1/resources', body: { project: 'default', kind: 'network/Network', name, labels: { [key]: name } } })),
      fc.constantFrom('300.1.1.1/24', '', '10.0.0.0/24 OR 1=1', '010.000.000.000/24', '::ffff:10.0.0.1/120').map((cidr): Req => ({ method: 'POST', url: '/api/v1/resources', body: { project: 'default', kind: 'network/SecurityGroup', name: 'fuzz-sg', spec: { rules: [{ remoteCidr: cidr }] } } })),
      nastyString.map((name): Req => ({ method: 'POST', url: '/api/v1/tokens', body: { name } })),
      fc.integer({ min: 65, max: 20_000 }).map((n): Req => ({ method: 'PATCH', url: `/api/v1/resources/${resourceId}`, raw: `{"spec":${deepJson(n)}}` })),
      fc.integer({ min: 10_000, max: 150_000 }).map((n): Req => ({ method: 'PATCH', url: `/api/v1/resources/${resourceId}`, raw: JSON.stringify({ spec: { x: Array.from({ length: n }, (_, i) => i) } }) })),
    ];
    const per = Math.max(3, Math.ceil(RUNS / kinds.length));
    const docKinds = [bombDoc, deepDoc, deepBlockDoc, costlyDoc, namesDoc, manyKeysDoc];
    const requests: Req[] = [
      ...kinds.flatMap((k, i) => fc.sample(k, { seed: SEED + i, numRuns: per })),
      // and every kind of document through plan, whatever the draws above
      ...docKinds.map((d, i): Req => ({ method: 'POST', url: '/api/v1/stacks/plan', body: { document: fc.sample(d, { seed: SEED + 100 + i, numRuns: 1 })[0], file: 'fuzz.yaml' } })),
    ];
    const bad: string[] = [];
    for (const r of requests) {
      const res = await fetch(`${base}${r.url}`, {
        method: r.method,
        headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' },
        body: r.raw ?? JSON.stringify(r.body),
      });
      const text = await res.text();
      if (res.status >= 500) bad.push(`${r.method} ${r.url} → ${res.status}: ${text.slice(0, 300)}`);
      else if (res.status >= 400) expect(res.headers.get('content-type') ?? '', text).toContain('application/problem+json');
    }
    expect(bad).toEqual([]);
    // the prober saw the server answer while this ran, and never gave up on it
    await new Promise<void>((resolve) => {
      const check = () => (probes.length >= 3 ? resolve() : setTimeout(check, 50));
      check();
    });
    expect(probes.filter((p) => !p.ok)).toEqual([]);
  });
});
