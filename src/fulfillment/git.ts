import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
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

  private async hasCommit(key: string, hasHead: boolean): Promise<string | null> {
    if (!hasHead) return null;
    const out = await this.git(['log', '--format=%H', `--grep=^Infraflow-Key: ${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, `origin/${this.branch}`]);
    return out.trim().split('\n')[0] || null;
  }

  /**
   * Replaces the folder `dir` with `files` (path → content) in one commit;
   * `files: null` removes the folder. Returns the commit (an existing one
   * when this key was already committed, or the head when nothing changed).
   */
  async commitFolder(dir: string, files: Record<string, string> | null, message: string, key: string): Promise<{ commit: string; created: boolean }> {
    return this.serial(async () => {
      await this.init();
      for (let attempt = 1; ; attempt++) {
        const hasHead = await this.sync();
        const existing = await this.hasCommit(key, hasHead);
        if (existing) return { commit: existing, created: false };
        const abs = join(this.workdir, dir);
        rmSync(abs, { recursive: true, force: true });
        for (const [p, content] of Object.entries(files ?? {})) {
          const f = join(abs, p);
          mkdirSync(dirname(f), { recursive: true });
          writeFileSync(f, content);
        }
        await this.git(['add', '-A']);
        await this.git(['commit', '-q', '--allow-empty', '-m', `${message}\n\nInfraflow-Key: ${key}`]);
        try {
          await this.git(['push', '-q', 'origin', `HEAD:refs/heads/${this.branch}`]);
        } catch (e) {
          if (attempt < 8) continue;
          throw e;
        }
        return { commit: (await this.git(['rev-parse', 'HEAD'])).trim(), created: true };
      }
    });
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
