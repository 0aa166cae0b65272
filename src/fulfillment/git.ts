import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { InfraflowError } from '../core/errors.js';

const run = promisify(execFile);

/**
 * GitOps output: post-install manifests committed to a real Git repository
 * with the `git` command, one commit per cluster revision (a GitOps agent
 * such as Argo CD on the cluster deploys them). `url` is any Git URL; a
 * local path that does not exist is created as a bare repository. Commits
 * carry an `Infraflow-Key:` trailer so a repeated call (a retried step, a
 * crash after the push) finds its commit and makes none.
 *
 * Operations of one process are serialized; a push that loses a race with
 * another process is rebased onto the new head and pushed again.
 */
export interface GitOpsOptions {
  url: string;
  /** Working clone (default: `<url>.work` for a local repository). */
  workdir?: string;
  branch?: string;
}

export class GitOps {
  readonly url: string;
  readonly workdir: string;
  readonly branch: string;
  private chain: Promise<unknown> = Promise.resolve();
  private ready = false;

  constructor(opts: GitOpsOptions) {
    this.url = /^[a-z]+:\/\//.test(opts.url) || opts.url.includes('@') ? opts.url : resolve(opts.url);
    this.workdir = resolve(opts.workdir ?? `${this.url.replace(/\/$/, '')}.work-${process.pid}`);
    this.branch = opts.branch ?? 'main';
  }

  private async git(args: string[], cwd = this.workdir): Promise<string> {
    try {
      const { stdout } = await run('git', ['-c', 'user.name=Infraflow', '-c', 'user.email=infraflow@localhost', '-c', 'commit.gpgsign=false', ...args], { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } });
      return stdout;
    } catch (e) {
      const err = e as { code?: string; stderr?: string; message: string };
      if (err.code === 'ENOENT') throw new InfraflowError('fulfillment.git_missing', 'the git command is not installed; install git (Debian: apt-get install git) for GitOps output', 500);
      throw new InfraflowError('fulfillment.git_failed', `git ${args[0]} failed: ${(err.stderr ?? err.message).trim().split('\n').slice(-2).join(' ')}`, 503, { retryable: true });
    }
  }

  private gitInput(args: string[], input: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn('git', args, { cwd: this.workdir, stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new InfraflowError('fulfillment.git_missing', 'the git command is not installed; install git (Debian: apt-get install git) for GitOps output', 500) : e));
      child.on('close', (code) => (code === 0 ? resolve() : reject(new InfraflowError('fulfillment.git_failed', `git ${args[0]} failed: ${err.trim().split('\n').slice(-2).join(' ')}`, 503, { retryable: true }))));
      child.stdin.end(input);
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => {});
    return p;
  }

  private async init(): Promise<void> {
    if (this.ready) return;
    const local = !/^[a-z]+:\/\//.test(this.url) && !this.url.includes('@');
    if (local && !existsSync(this.url)) {
      mkdirSync(this.url, { recursive: true });
      await this.git(['init', '--bare', '-b', this.branch, this.url], dirname(this.url));
    }
    if (!existsSync(join(this.workdir, '.git'))) {
      rmSync(this.workdir, { recursive: true, force: true });
      mkdirSync(dirname(this.workdir), { recursive: true });
      await this.git(['clone', '-q', this.url, this.workdir], dirname(this.workdir));
    }
    this.ready = true;
  }

  /** Resets the working clone to the remote head (or an empty branch when the repository has no commits). */
  private async sync(): Promise<boolean> {
    await this.git(['fetch', '-q', 'origin']);
    const has = await this.git(['rev-parse', '--verify', '-q', `origin/${this.branch}`]).then(() => true, () => false);
    if (has) {
      await this.git(['checkout', '-q', '-B', this.branch, `origin/${this.branch}`]);
      await this.git(['reset', '-q', '--hard', `origin/${this.branch}`]);
    } else {
      await this.git(['checkout', '-q', '--orphan', `${this.branch}-tmp`]).catch(() => '');
      await this.git(['rm', '-rfq', '--ignore-unmatch', '.']).catch(() => '');
      await this.git(['checkout', '-q', '--orphan', this.branch]).catch(() => this.git(['checkout', '-q', this.branch]));
    }
    await this.git(['clean', '-qfdx']);
    return has;
  }

  private keys: Map<string, string> | null = null;

  /** Infraflow-Key trailer → commit, read from the history once after each sync, then kept up to date by our own commits. */
  private async knownKeys(): Promise<Map<string, string>> {
    if (this.keys) return this.keys;
    const keys = new Map<string, string>();
    const hasHead = await this.git(['rev-parse', '--verify', '-q', 'HEAD']).then(() => true, () => false);
    if (hasHead) {
      const out = await this.git(['log', '--format=%H %(trailers:key=Infraflow-Key,valueonly,separator=%x20)', 'HEAD']);
      for (const line of out.split('\n')) {
        const [h, k] = line.trim().split(' ');
        if (h && k && !keys.has(k)) keys.set(k, h);
      }
    }
    this.keys = keys;
    return keys;
  }

  private queue: { dir: string; files: Record<string, string> | null; message: string; key: string; resolve: (r: { commit: string; created: boolean }) => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;
  private stale = true;

  /**
   * Replaces the folder `dir` with `files` (path → content) in one commit;
   * `files: null` removes the folder. Returns the commit (an existing one
   * when this key was already committed). Requests that arrive while a push
   * is in flight are committed one by one and pushed together (one commit
   * per request, one push per batch).
   */
  commitFolder(dir: string, files: Record<string, string> | null, message: string, key: string): Promise<{ commit: string; created: boolean }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ dir, files, message, key, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length) {
        const batch = this.queue.splice(0, this.queue.length);
        try {
          const out = await this.serial(() => this.commitBatch(batch));
          batch.forEach((b, i) => b.resolve(out[i]!));
        } catch (e) {
          this.stale = true;
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private async commitBatch(batch: { dir: string; files: Record<string, string> | null; message: string; key: string }[]): Promise<{ commit: string; created: boolean }[]> {
    await this.init();
    for (let attempt = 1; ; attempt++) {
      // the clone is in step with the remote after our own pushes; it is re-read only after a failure or a push lost to another writer
      if (this.stale) {
        await this.sync();
        this.stale = false;
        this.keys = null;
      }
      const keys = await this.knownKeys();
      const out: ({ commit: string; created: boolean } | null)[] = [];
      const todo = batch.filter((b) => !keys.has(b.key));
      // one git fast-import for the whole batch: one commit per request, no working tree
      if (todo.length) {
        const parent = (await this.git(['rev-parse', '--verify', '-q', `refs/heads/${this.branch}`]).catch(() => '')).trim();
        const chunks: string[] = [];
        const data = (text: string) => `data ${Buffer.byteLength(text)}\n${text}\n`;
        const when = Math.floor(Date.now() / 1000);
        todo.forEach((b, i) => {
          chunks.push(`commit refs/heads/${this.branch}\nmark :${i + 1}\ncommitter Infraflow <infraflow@localhost> ${when} +0000\n${data(`${b.message}\n\nInfraflow-Key: ${b.key}\n`)}`);
          if (i === 0 && parent) chunks.push(`from ${parent}\n`);
          chunks.push(`D ${b.dir}\n`);
          for (const [path, content] of Object.entries(b.files ?? {})) chunks.push(`M 100644 inline ${b.dir}/${path}\n${data(content)}`);
          chunks.push('\n');
        });
        await this.gitInput(['fast-import', '--quiet', '--done'], chunks.join('') + 'done\n');
        const ids = (await this.git(['log', `-${todo.length}`, '--format=%H', `refs/heads/${this.branch}`])).trim().split('\n').reverse();
        todo.forEach((b, i) => keys.set(b.key, ids[i]!));
      }
      for (const b of batch) out.push({ commit: keys.get(b.key)!, created: todo.includes(b) });
      const created = todo.length;
      const result = out as { commit: string; created: boolean }[];
      if (!created) return result;
      try {
        await this.git(['push', '-q', 'origin', `refs/heads/${this.branch}:refs/heads/${this.branch}`]);
        return result;
      } catch (e) {
        this.stale = true;
        if (attempt >= 8) throw e;
      }
    }
  }

  /** Files under `dir` at the remote head (tests, leak checks). */
  async listFolder(dir: string): Promise<string[]> {
    return this.serial(async () => {
      await this.init();
      const has = await this.sync();
      if (!has) return [];
      const out = await this.git(['ls-tree', '-r', '--name-only', `origin/${this.branch}`, '--', dir]);
      return out.split('\n').filter(Boolean);
    });
  }
}
