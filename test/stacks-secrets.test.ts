import { Writable } from 'node:stream';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { renderPlan } from '../src/stacks/index.js';
import { InfraflowError } from '../src/core/errors.js';
import { createLogger } from '../src/core/log.js';
import { redact, redactText, redactUrl } from '../src/core/secrets.js';

/**
 * `sensitive` stack parameters: sealed at rest with the secret box, shown as
 * `(sensitive)` in plans (JSON and text), revisions, outputs and errors.
 * Before, they were stored and served in plain text and echoed in errors.
 */
const SECRET = 'hunter2-Zq9vXw';
const DOC = `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: vault
spec:
  parameters:
    dbPassword: { type: string, sensitive: true }
    size: { type: integer, default: 1, sensitive: false }
  resources:
    db-sg:
      kind: network/SecurityGroup
      spec:
        description: "db access (\${ params.dbPassword })"
        rules: [{ protocol: tcp, portMin: 5432, portMax: 5432, remoteCidr: 10.0.0.0/8 }]
  outputs:
    dsn: "postgres://app:\${ params.dbPassword }@db/app"
`;

describe.each(DIALECTS)('sensitive stack parameters on %s', (dialect) => {
  let t: TestDb;
  let s: StackHarness;

  beforeAll(async () => {
    t = await openTestStore(dialect);
    s = await stackHarness(t.store);
  });
  afterAll(async () => {
    await s?.close();
    await t?.cleanup();
  });

  it('plans mask them in JSON and text', async () => {
    const plan = await s.stacks.plan({ document: DOC, params: { dbPassword: SECRET } });
    expect(plan.params).toEqual({ dbPassword: '(sensitive)', size: 1 });
    expect(JSON.stringify(plan)).not.toContain(SECRET);
    const text = renderPlan(plan);
    expect(text).not.toContain(SECRET);
    expect(text).toContain('db access ((sensitive))');
  });

  it('are sealed at rest, masked in revisions and outputs, and still applied with their value', async () => {
    const { stack, run, plan } = await s.stacks.apply({ document: DOC, params: { dbPassword: SECRET } });
    expect(JSON.stringify(plan)).not.toContain(SECRET);
    const done = await s.stacks.wait(run.id, { timeoutMs: 60_000 });
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    // at rest: the revision row holds a sealed value, never the plain text
    const rows = (await sql<{ params: string }>`select params from stack_revisions where stack_id = ${stack.id}`.execute(t.store.db)).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.params).not.toContain(SECRET);
    expect(rows[0]!.params).toContain('v1.');
    // served: (sensitive)
    const revs = await s.stacks.revisions(stack.id);
    expect(revs[0]!.params).toEqual({ dbPassword: '(sensitive)' });
    const served = await s.stacks.document(stack.id);
    expect(served.params).toEqual({ dbPassword: '(sensitive)' });
    const info = await s.stacks.get(stack.id);
    expect(JSON.stringify(info.outputs)).not.toContain(SECRET);
    expect(info.outputs.dsn).toBe('postgres://app:(sensitive)@db/app');
    // used: the resource got the real value (the provider needs it)
    const sg = (await s.resources.list({ project: 'default', kind: 'network/SecurityGroup' })).items[0]!;
    expect(sg.spec.description).toBe(`db access (${SECRET})`);
    // a later plan of the stored revision (destroy) still opens it
    const destroyPlan = await s.stacks.planDestroy(stack.id);
    expect(destroyPlan.summary.delete).toBe(1);
  });

  it('errors about a sensitive parameter never echo its value', async () => {
    const e = await s.stacks.plan({ document: DOC, params: { dbPassword: 12345678 } }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InfraflowError);
    expect((e as Error).message).toBe('parameter dbPassword: must be of type string');
  });
});

describe('one list of secret keys, at every depth, for logs too', () => {
  it('logs redact secret keys however deep', () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb(); } });
    const pinoLog = createLogger({ level: 'info' }, sink);
    pinoLog.info({ step: { http: { headers: { Authorization: 'Bearer abc.def.ghi' } }, deep: { a: { b: { password: 'p4ss', token: 't0k' } } } } }, 'did it');
    expect(lines.join('')).not.toMatch(/abc\.def\.ghi|p4ss|t0k/);
    expect(lines.join('')).toContain('[redacted]');
    expect(redact({ a: [{ b: { client_secret: 'x', cookie: 'y' } }] })).toEqual({ a: [{ b: { client_secret: '[redacted]', cookie: '[redacted]' } }] });
  });

  it('URLs and error bodies of HTTP steps are redacted', () => {
    expect(redactUrl('https://user:pw@hooks.example.com/x?token=abc&page=2')).toBe('https://%5Bredacted%5D@hooks.example.com/x?token=%5Bredacted%5D&page=2');
    expect(redactText('401: {"error":"bad token","access_token":"eyJabc.def"} Authorization: Bearer sk-live-123456789')).not.toMatch(/eyJabc|sk-live-123456789/);
    expect(redactText('fetch https://admin:s3cret@10.0.0.1/api failed')).toBe('fetch https://[redacted]@10.0.0.1/api failed');
  });
});
