import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SecretBox } from '../src/core/secrets.js';
import { Gitops, LABEL_HOOK, LABEL_WAVE } from '../src/gitops/index.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { stackHarness, type StackHarness } from './fixtures/stacks-harness.js';
import { makeHarness, type Harness } from './api-harness.js';
import { runCliCaptured } from './fixtures/cli-run.js';

/** A Git work tree on disk, served to Infraflow as file://<dir>. */
class Repo {
  readonly dir = mkdtempSync(join(tmpdir(), 'infraflow-gitops-repo-'));
  constructor() {
    this.git('init', '--quiet', '--initial-branch=main');
    this.git('config', 'user.email', 'dev@example.com');
    this.git('config', 'user.name', 'dev');
  }
  get url(): string {
    return `file://${this.dir}`;
  }
  git(...args: string[]): string {
    return execFileSync('git', args, { cwd: this.dir, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } }).trim();
  }
  /** Writes (or with null removes) files and commits; returns the commit. */
  commit(files: Record<string, string | null>, message = 'change'): string {
    for (const [f, text] of Object.entries(files)) {
      const p = join(this.dir, f);
      if (text === null) unlinkSync(p);
      else {
        mkdirSync(dirname(p), { recursive: true });
        writeFileSync(p, text);
      }
    }
    this.git('add', '-A');
    this.git('commit', '--quiet', '--allow-empty', '-m', message);
    return this.git('rev-parse', 'HEAD');
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A stack document of one network (and optionally labels and workflows). */
function netStack(name: string, opts: { mtu?: number; labels?: Record<string, string>; extra?: string } = {}): string {
  const labels = Object.entries(opts.labels ?? {}).map(([k, v]) => `    ${k}: "${v}"\n`).join('');
  return `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: ${name}
${labels ? `  labels:\n${labels}` : ''}spec:
  resources:
    net:
      kind: network/Network
      spec: { mtu: ${opts.mtu ?? 1500} }
${opts.extra ?? ''}`;
}

/** A hook: a stack of one shell step (exit code `code`). */
function hookStack(name: string, phase: string, code = 0): string {
  return `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: ${name}
  labels:
    ${LABEL_HOOK}: ${phase}
spec:
  workflows:
    postDeploy:
      - name: run
        type: shell
        script: "echo ${name}; exit ${code}"
`;
}

describe.each(DIALECTS)('gitops on %s', (dialect) => {
  let t: TestDb | undefined;
  let h: StackHarness | undefined;
  let g: Gitops | undefined;
  let repo: Repo | undefined;
  let work: string | undefined;
  let api: Harness | undefined;

  afterEach(async () => {
    g?.stop();
    await api?.close();
    await h?.close();
    await t?.cleanup();
    repo?.remove();
    if (work) rmSync(work, { recursive: true, force: true });
    t = h = g = repo = work = api = undefined;
  });

  async function setup(opts: { clock?: { now(): number; sleep(ms: number): Promise<void> } } = {}): Promise<{ h: StackHarness; g: Gitops; repo: Repo }> {
    t = await openTestStore(dialect);
    h = await stackHarness(t.store);
    work = mkdtempSync(join(tmpdir(), 'infraflow-gitops-work-'));
    g = new Gitops({ store: t.store, engine: h.engine, stacks: h.stacks, box: SecretBox.random(), workDir: work, waitIntervalMs: 30, tickMs: 50, ...(opts.clock ? { clock: opts.clock } : {}) });
    repo = new Repo();
    return { h, g, repo };
  }

  const finished = async (runId: string) => {
    const r = await h!.engine.result(runId, { timeoutMs: 90_000 });
    return r;
  };

  it('commit → OutOfSync → sync → Synced and Healthy; an edit shows its diff and syncs; prune removes what left Git', async () => {
    const { g, repo, h } = await setup();
    const c1 = repo.commit({ 'envs/prod/net.yaml': netStack('prod-net'), 'envs/prod/dns.yaml': netStack('prod-dns'), 'README.md': '# not a document' }, 'first');
    await g.createSource({ project: 'default', name: 'infra', url: repo.url, ref: 'main' });
    const app = await g.createApp({ project: 'default', name: 'prod', source: 'infra', path: 'envs/prod' });

    let st = (await g.refresh(app.id)).status;
    expect(st.targetSha).toBe(c1);
    expect(st.sync).toBe('OutOfSync');
    expect(st.health).toBe('Missing');
    expect(st.resources.map((r) => [r.file, r.sync, r.reason])).toEqual([
      ['envs/prod/dns.yaml', 'OutOfSync', 'not created yet'],
      ['envs/prod/net.yaml', 'OutOfSync', 'not created yet'],
    ]);

    const s1 = await g.sync(app.id);
    expect((await finished(s1.run.id)).status).toBe('succeeded');
    st = (await g.refresh(app.id)).status;
    expect(st).toMatchObject({ sync: 'Synced', health: 'Healthy', syncedSha: c1 });
    const stack = await h.stacks.get('prod-net');
    expect(stack.labels['gitops.infraflow.dev/app']).toBe('prod');
    expect(stack.revision).toBe(1);

    // a sync of the same commit changes nothing: no new stack revision
    const again = await g.sync(app.id);
    expect((await finished(again.run.id)).status).toBe('succeeded');
    expect((await h.stacks.get('prod-net')).revision).toBe(1);

    // an edit in Git: OutOfSync with the reason, and the diff names the field
    const c2 = repo.commit({ 'envs/prod/net.yaml': netStack('prod-net', { mtu: 9000 }) }, 'jumbo frames');
    st = (await g.refresh(app.id)).status;
    expect(st.targetSha).toBe(c2);
    expect(st.sync).toBe('OutOfSync');
    expect(st.resources.find((r) => r.file === 'envs/prod/net.yaml')).toMatchObject({ sync: 'OutOfSync', reason: 'changed in Git' });
    expect(st.resources.find((r) => r.file === 'envs/prod/dns.yaml')).toMatchObject({ sync: 'Synced' });
    const diff = await g.diff(app.id);
    expect(diff.items.map((i) => i.file)).toEqual(['envs/prod/net.yaml']);
    expect(diff.items[0]!.text).toContain('mtu');
    expect((await finished((await g.sync(app.id)).run.id)).status).toBe('succeeded');
    expect((await g.refresh(app.id)).status).toMatchObject({ sync: 'Synced', health: 'Healthy', syncedSha: c2 });
    expect((await h.stacks.get('prod-net')).revision).toBe(2);
    expect((await h.stacks.get('prod-dns')).revision).toBe(1);

    // revert the edit: back in sync after one more sync
    repo.git('revert', '--no-edit', 'HEAD');
    expect((await g.refresh(app.id)).status.sync).toBe('OutOfSync');
    expect((await finished((await g.sync(app.id)).run.id)).status).toBe('succeeded');
    expect((await g.refresh(app.id)).status.sync).toBe('Synced');

    // a file removed from Git: OutOfSync until a sync with prune destroys its stack
    repo.commit({ 'envs/prod/dns.yaml': null }, 'drop dns');
    st = (await g.refresh(app.id)).status;
    expect(st.resources.find((r) => r.file === 'envs/prod/dns.yaml')).toMatchObject({ sync: 'OutOfSync', reason: 'deleted in Git: prune removes it' });
    const withoutPrune = await g.sync(app.id);
    expect((await finished(withoutPrune.run.id)).status).toBe('succeeded');
    expect((await h.stacks.get('prod-dns')).status).toBe('applied');
    const pruned = await g.sync(app.id, { prune: true });
    expect((await finished(pruned.run.id)).status).toBe('succeeded');
    expect((await h.stacks.get('prod-dns')).status).toBe('destroyed');
    st = (await g.refresh(app.id)).status;
    expect(st).toMatchObject({ sync: 'Synced', health: 'Healthy' });
    expect(st.resources.map((r) => r.file)).toEqual(['envs/prod/net.yaml']);

    // history: every sync with its commit, newest first; rollback pins an earlier commit
    const history = await g.history(app.id);
    expect(history.map((x) => x.result)).toEqual(Array(history.length).fill('succeeded'));
    expect(history.at(-1)!.sha).toBe(c1);
    const rb = await g.rollback(app.id, { sha: c2 });
    expect((await finished(rb.run.id)).status).toBe('succeeded');
    const rolled = await g.refresh(app.id);
    expect(rolled.pinnedSha).toBe(c2);
    expect(rolled.status).toMatchObject({ targetSha: c2, sync: 'Synced' });
    expect((await h.stacks.get('prod-dns')).status).toBe('applied'); // c2 still had it
  });

  it('applies waves in order, each after the previous is healthy, with PreSync and PostSync hooks around them', async () => {
    const { g, repo, h } = await setup();
    repo.commit({
      'b.yaml': netStack('wave-b', { labels: { [LABEL_WAVE]: '2' } }),
      'a.yaml': netStack('wave-a', { labels: { [LABEL_WAVE]: '1' } }),
      'pre.yaml': hookStack('pre', 'PreSync'),
      'post.yaml': hookStack('post', 'PostSync'),
    });
    await g.createSource({ project: 'default', name: 'src', url: repo.url });
    const app = await g.createApp({ project: 'default', name: 'ordered', source: 'src' });
    const s = await g.sync(app.id);
    expect((await finished(s.run.id)).status).toBe('succeeded');
    // the order in which the sync started the stacks' runs (run ids sort by creation)
    const order = await Promise.all(['pre', 'wave-a', 'wave-b', 'post'].map(async (n) => ({ n, run: (await h.stacks.get(n)).lastRunId! })));
    const byStart = [...order].sort((x, y) => (x.run < y.run ? -1 : 1)).map((x) => x.n);
    expect(byStart).toEqual(['pre', 'wave-a', 'wave-b', 'post']);
    // each wave started only after the previous one finished
    const aDone = (await h.engine.get((await h.stacks.get('wave-a')).lastRunId!)).finishedAt!;
    const bStart = (await h.engine.get((await h.stacks.get('wave-b')).lastRunId!)).createdAt;
    expect(bStart).toBeGreaterThanOrEqual(aDone);
    // hooks count neither for sync nor for health
    const st = (await g.refresh(app.id)).status;
    expect(st).toMatchObject({ sync: 'Synced', health: 'Healthy' });
    expect(st.resources.filter((r) => r.hook).map((r) => r.stack).sort()).toEqual(['post', 'pre']);
  });

  it('a failing hook fails the sync with its reason, runs the SyncFail hook, and leaves the app Degraded or unsynced, never half-applied past the hook', async () => {
    const { g, repo, h } = await setup();
    repo.commit({
      'pre.yaml': hookStack('pre-check', 'PreSync', 3),
      'fail.yaml': hookStack('on-fail', 'SyncFail'),
      'net.yaml': netStack('guarded-net'),
    });
    await g.createSource({ project: 'default', name: 'src', url: repo.url });
    const app = await g.createApp({ project: 'default', name: 'guarded', source: 'src' });
    const s = await g.sync(app.id);
    const run = await finished(s.run.id);
    expect(run.status).toBe('failed');
    expect(run.error?.message).toContain('PreSync hook pre.yaml');
    // the SyncFail hook ran; the wave behind the failed PreSync hook never started
    expect((await h.stacks.get('on-fail')).status).toBe('applied');
    await expect(h.stacks.get('guarded-net')).rejects.toMatchObject({ code: 'stacks.not_found' });
    const hist = await g.history(app.id);
    expect(hist[0]).toMatchObject({ result: 'failed', message: expect.stringContaining('pre.yaml') });
    const st = (await g.refresh(app.id)).status;
    expect(st.sync).toBe('OutOfSync');
    expect(st.operation).toMatchObject({ phase: 'Failed' });
  });

  it('waits for the applications it depends on, saying what it waits for', async () => {
    const { g, repo } = await setup();
    repo.commit({ 'base/net.yaml': netStack('base-net'), 'app/net.yaml': netStack('app-net') });
    await g.createSource({ project: 'default', name: 'src', url: repo.url });
    const base = await g.createApp({ project: 'default', name: 'base', source: 'src', path: 'base' });
    const top = await g.createApp({ project: 'default', name: 'top', source: 'src', path: 'app', dependsOn: ['base'] });
    const s = await g.sync(top.id);
    await vi.waitFor(async () => {
      const r = await h!.engine.get(s.run.id);
      expect(r.progress?.waitingFor).toBe('application base');
      expect(r.progress?.since).toBeGreaterThan(0);
    }, { timeout: 30_000, interval: 50 });
    expect((await finished((await g.sync(base.id)).run.id)).status).toBe('succeeded');
    expect((await finished(s.run.id)).status).toBe('succeeded');
    expect((await g.refresh(top.id)).status).toMatchObject({ sync: 'Synced', health: 'Healthy' });
  });

  it('automated: a push syncs once per commit and never repeats a synced one; self-heal repairs drift', async () => {
    const { g, repo, h } = await setup();
    const c1 = repo.commit({ 'net.yaml': netStack('auto-net') });
    await g.createSource({ project: 'default', name: 'src', url: repo.url, pollIntervalS: 3600 });
    const app = await g.createApp({ project: 'default', name: 'auto', source: 'src', syncPolicy: { automated: true, selfHeal: true } });
    await g.refreshSource('src');
    await vi.waitFor(async () => expect((await g.history(app.id))[0]).toMatchObject({ sha: c1, result: 'succeeded' }), { timeout: 60_000, interval: 50 });
    // nothing new: no second sync
    await g.refreshSource('src');
    expect((await g.history(app.id)).length).toBe(1);
    // a new commit: synced once
    const c2 = repo.commit({ 'net.yaml': netStack('auto-net', { mtu: 9000 }) });
    await g.refreshSource('src');
    await vi.waitFor(async () => expect((await g.history(app.id))[0]).toMatchObject({ sha: c2, result: 'succeeded' }), { timeout: 60_000, interval: 50 });
    expect((await g.history(app.id)).length).toBe(2);
    // drift: the network changed behind Infraflow's back; self-heal syncs it back
    const net = (await h.stacks.resources('auto-net')).find((r) => r.address === 'net')!;
    const res = await h.resources.get(net.resourceId!);
    await h.sim.driftModify(res.status.externalId!, { mtu: 1400 });
    await g.reconcileApp(await g.db.getApp(app.id));
    await vi.waitFor(async () => expect((await g.history(app.id))[0]).toMatchObject({ reason: 'self-heal', result: 'succeeded' }), { timeout: 60_000, interval: 50 });
    expect((await g.refresh(app.id)).status).toMatchObject({ sync: 'Synced', health: 'Healthy' });
    expect((await h.sim.getObject(res.status.externalId!))?.actual.mtu).toBe(9000);
  });

  it('retries a failed commit with backoff (5 s, 10 s, 20 s …), at most 5 times, and syncs the next commit at once', async () => {
    let offset = 0;
    const clock = { now: () => Date.now() + offset, sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)) };
    const { h, repo, g: gc } = await setup({ clock });
    const failing = `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: flaky
spec:
  workflows:
    postDeploy:
      - { name: check, type: shell, script: "exit 7" }
`;
    const c1 = repo.commit({ 'flaky.yaml': failing });
    await gc.createSource({ project: 'default', name: 'src', url: repo.url, pollIntervalS: 3600 });
    const app = await gc.createApp({ project: 'default', name: 'flaky', source: 'src', syncPolicy: { automated: true } });
    await gc.fetch(await gc.db.getSource('src'));
    const attempt = async () => {
      const last = (await gc.history(app.id))[0]!;
      await h.engine.result(last.runId, { timeoutMs: 60_000 });
      await vi.waitFor(async () => expect((await gc.history(app.id))[0]!.result).toBe('failed'), { timeout: 30_000, interval: 20 });
    };
    expect(await gc.reconcileApp(await gc.db.getApp(app.id))).toBe('started');
    await attempt();
    const delays = [5_000, 10_000, 20_000, 40_000];
    for (const d of delays) {
      offset += d - 1_000;
      expect(await gc.reconcileApp(await gc.db.getApp(app.id))).toBe('waiting'); // not yet
      offset += 1_000;
      expect(await gc.reconcileApp(await gc.db.getApp(app.id))).toBe('started');
      await attempt();
    }
    const hist = await gc.history(app.id);
    expect(hist.map((x) => [x.sha, x.result])).toEqual(Array(5).fill([c1, 'failed']));
    expect(hist.map((x) => x.reason)).toEqual(['retry 5/5', 'retry 4/5', 'retry 3/5', 'retry 2/5', 'automated: new commit']);
    offset += 3_600_000;
    expect(await gc.reconcileApp(await gc.db.getApp(app.id))).toBe('idle'); // gave up on this commit
    // a fixed commit is synced at once
    const c2 = repo.commit({ 'flaky.yaml': failing.replace('exit 7', 'exit 0') });
    await gc.fetch(await gc.db.getSource('src'));
    expect(await gc.reconcileApp(await gc.db.getApp(app.id))).toBe('started');
    const fixed = (await gc.history(app.id))[0]!;
    expect(fixed.sha).toBe(c2);
    expect((await h.engine.result(fixed.runId, { timeoutMs: 60_000 })).status).toBe('succeeded');
  });

  it('refuses bad input with clear errors and applies nothing: unreachable repository, bad ref, invalid document at file:line', async () => {
    const { g, repo, h } = await setup();
    repo.commit({ 'ok.yaml': netStack('fine-net'), 'bad.yaml': netStack('broken-net', { extra: '  bogus: 1\n' }) });
    await g.createSource({ project: 'default', name: 'gone', url: 'file:///nonexistent/infraflow-repo' });
    const lost = await g.createApp({ project: 'default', name: 'lost', source: 'gone' });
    const st = (await g.refresh(lost.id)).status;
    expect(st.sync).toBe('Unknown');
    expect(st.conditions[0]).toMatchObject({ type: 'ComparisonError', message: expect.stringContaining('cannot fetch file:///nonexistent/infraflow-repo') });
    await expect(g.sync(lost.id)).rejects.toMatchObject({ code: 'gitops.unreachable' });

    await g.createSource({ project: 'default', name: 'badref', url: repo.url, ref: 'no-such-branch' });
    const br = await g.createApp({ project: 'default', name: 'badref', source: 'badref' });
    await expect(g.sync(br.id)).rejects.toMatchObject({ code: 'gitops.bad_ref', message: expect.stringContaining('no-such-branch') });

    await g.createSource({ project: 'default', name: 'src', url: repo.url });
    const app = await g.createApp({ project: 'default', name: 'broken', source: 'src' });
    const err = await g.sync(app.id).then(() => undefined, (e: unknown) => e as Error & { code: string });
    expect(err).toMatchObject({ code: 'gitops.invalid_document' });
    expect(err!.message).toMatch(/^bad\.yaml@[0-9a-f]{12}: .*(:|line )\d+/);
    expect(err!.message).toContain('bogus');
    // nothing applied: not even the valid document
    expect(await h.stacks.list()).toEqual([]);
    expect(await g.history(app.id)).toEqual([]);

    await expect(g.createSource({ project: 'default', name: 'Bad Name', url: repo.url })).rejects.toMatchObject({ code: 'gitops.invalid_name' });
    await expect(g.createSource({ project: 'default', name: 'pw', url: 'https://u:secret@example.com/r.git' })).rejects.toMatchObject({ code: 'gitops.credentials_in_url' });
    await expect(g.createApp({ project: 'default', name: 'x', source: 'src', path: '../etc' })).rejects.toMatchObject({ code: 'gitops.invalid_path' });
  });

  it('resumes a sync after the worker stops mid-wave, without applying a document twice', async () => {
    const { g, repo } = await setup();
    repo.commit({ 'a.yaml': netStack('resume-a', { labels: { [LABEL_WAVE]: '1' } }), 'b.yaml': netStack('resume-b', { labels: { [LABEL_WAVE]: '2' } }) });
    await g.createSource({ project: 'default', name: 'src', url: repo.url });
    const app = await g.createApp({ project: 'default', name: 'resume', source: 'src' });
    const s = await g.sync(app.id);
    // stop the worker as soon as the first wave's stack exists (its apply may still run)
    await vi.waitFor(async () => expect((await h!.stacks.list()).map((x) => x.name)).toContain('resume-a'), { timeout: 30_000, interval: 5 });
    await h!.engine.stop({ graceful: false });
    // a new worker (as after a restart) on the same database finishes it
    const h2 = await stackHarness(t!.store, { workerId: 'second' });
    const g2 = new Gitops({ store: t!.store, engine: h2.engine, stacks: h2.stacks, box: SecretBox.random(), workDir: work!, waitIntervalMs: 30 });
    try {
      const done = await h2.engine.result(s.run.id, { timeoutMs: 90_000 });
      expect(done.status).toBe('succeeded');
      expect((await h2.stacks.get('resume-a')).revision).toBe(1);
      expect((await h2.stacks.get('resume-b')).revision).toBe(1);
      expect((await g2.refresh(app.id)).status).toMatchObject({ sync: 'Synced', health: 'Healthy' });
    } finally {
      await h2.close();
    }
  });

  it('API: sources, apps, sync, history; the push webhook is refused unsigned or mis-signed and accepted signed', async () => {
    const { g, repo, h } = await setup();
    api = await makeHarness(dialect, { t: t!, engine: h.engine, areas: { gitops: g, stacks: h.stacks } });
    const c1 = repo.commit({ 'net.yaml': netStack('api-net') });
    const src = await api.req('POST', '/api/v1/gitops/sources', { token: api.adminToken, body: { project: 'default', name: 'web', url: repo.url, webhookSecret: 'a-webhook-secret-of-length', pollIntervalS: 3600 } });
    expect(src.statusCode).toBe(201);
    expect(src.json()).toMatchObject({ name: 'web', hasWebhookSecret: true });
    expect(src.body).not.toContain('a-webhook-secret-of-length');
    const bad = await api.req('POST', '/api/v1/gitops/apps', { token: api.adminToken, body: { project: 'default', name: 'web', source: 'nope' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'gitops.source_not_found' });
    const created = await api.req('POST', '/api/v1/gitops/apps', { token: api.adminToken, body: { project: 'default', name: 'web', source: 'web', syncPolicy: { automated: true } } });
    expect(created.statusCode).toBe(201);
    const appId = created.json().id as string;

    const body = JSON.stringify({ ref: 'refs/heads/main', after: c1 });
    const sign = (secret: string) => 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
    const unsigned = await api.req('POST', `/api/v1/gitops/webhooks/${src.json().id}`, { rawBody: body });
    expect(unsigned.statusCode).toBe(401);
    const wrong = await api.req('POST', `/api/v1/gitops/webhooks/${src.json().id}`, { rawBody: body, headers: { 'x-hub-signature-256': sign('another-secret-entirely') } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['content-type']).toContain('application/problem+json');
    expect(await g.history(appId)).toEqual([]);
    const ok = await api.req('POST', `/api/v1/gitops/webhooks/${src.json().id}`, { rawBody: body, headers: { 'x-hub-signature-256': sign('a-webhook-secret-of-length') } });
    expect(ok.statusCode).toBe(202);
    await vi.waitFor(async () => expect((await g.history(appId))[0]).toMatchObject({ sha: c1, result: 'succeeded' }), { timeout: 60_000, interval: 50 });

    const got = await api.req('GET', `/api/v1/gitops/apps/${appId}`, { token: api.adminToken });
    expect(got.statusCode).toBe(200);
    expect(got.json().status).toMatchObject({ sync: 'Synced', health: 'Healthy', targetSha: c1 });
    const hist = await api.req('GET', `/api/v1/gitops/apps/${appId}/history`, { token: api.adminToken });
    expect(hist.json().items[0]).toMatchObject({ sha: c1, result: 'succeeded' });
    const busy = await api.req('POST', '/api/v1/gitops/sources/web', { token: api.adminToken });
    expect(busy.statusCode).toBe(404);
    const del = await api.req('DELETE', `/api/v1/gitops/sources/${src.json().id}`, { token: api.adminToken });
    expect(del.statusCode).toBe(409);
    expect(del.json().detail).toContain('used by application web');
  });

  it('CLI: source add, app create, sync --wait, get, diff, history, rollback — one readable line on bad input', async () => {
    const { g, repo, h } = await setup();
    api = await makeHarness(dialect, { t: t!, engine: h.engine, areas: { gitops: g, stacks: h.stacks } });
    const url = await api.app.listen({ host: '127.0.0.1', port: 0 });
    const cfgDir = mkdtempSync(join(tmpdir(), 'infraflow-gitops-cli-'));
    const cli = (...args: string[]) => runCliCaptured(args, { INFRAFLOW_CLI_CONFIG: join(cfgDir, 'cli.yaml'), INFRAFLOW_URL: url, INFRAFLOW_TOKEN: api!.adminToken, INFRAFLOW_PROJECT: 'default' });
    try {
      const c1 = repo.commit({ 'net.yaml': netStack('cli-net') });
      expect((await cli('gitops', 'source', 'add', 'repo', '--url', repo.url)).out).toContain('source repo');
      const created = await cli('gitops', 'app', 'create', 'web', '--source', 'repo');
      expect(created.code).toBe(0);
      const diff = await cli('gitops', 'app', 'diff', 'web');
      expect(diff.out).toContain('net.yaml (stack cli-net): not created yet');
      const synced = await cli('gitops', 'app', 'sync', 'web', '--wait');
      expect(synced.err + synced.out).toContain(`syncing ${c1.slice(0, 12)}`);
      expect(synced.code).toBe(0);
      const got = await cli('gitops', 'app', 'get', 'web');
      expect(got.out).toMatch(/^web {2}sync Synced {2}health Healthy/);
      expect(got.out).toContain('net.yaml → stack cli-net: Synced, Healthy');
      const c2 = repo.commit({ 'net.yaml': netStack('cli-net', { mtu: 9000 }) });
      expect((await cli('gitops', 'source', 'refresh', 'repo')).out).toContain(`at ${c2.slice(0, 12)}`);
      expect((await cli('gitops', 'app', 'sync', 'web', '--wait')).code).toBe(0);
      const hist = await cli('gitops', 'app', 'history', 'web');
      expect(hist.out).toContain(c1.slice(0, 12));
      expect(hist.out).toContain(c2.slice(0, 12));
      const rb = await cli('gitops', 'app', 'rollback', 'web', '1');
      expect(rb.out).toContain(`rolling back to ${c1.slice(0, 12)}`);
      const bad = await cli('gitops', 'app', 'create', 'Bad_Name', '--source', 'repo');
      expect(bad.code).not.toBe(0);
      expect(bad.err.trim().split('\n')).toHaveLength(1);
      expect(bad.err).toContain('name');
    } finally {
      rmSync(cfgDir, { recursive: true, force: true });
    }
  });
});
