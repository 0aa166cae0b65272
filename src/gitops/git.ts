import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InfraflowError } from '../core/errors.js';

/**
 * Git, through the `git` command (any URL git understands: file://, https://,
 * ssh://, git://). Each source has one bare mirror under the work directory;
 * `fetch` brings it up to date and resolves the source's ref to a commit,
 * reads go through one `git cat-file --batch` process per call.
 *
 * Credentials never appear on a command line: HTTP credentials travel as an
 * `http.extraHeader` set through GIT_CONFIG_* environment variables, an SSH
 * key as a 0600 file named by GIT_SSH_COMMAND, removed after the call.
 */

export type GitCredentials =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'token'; token: string }
  | { kind: 'ssh'; privateKey: string };

export class GitError extends InfraflowError {
  constructor(code: string, message: string) {
    // an unreachable server or a slow fetch may pass; a bad ref or a missing git will not
    super(code, message, code === 'gitops.bad_ref' ? 422 : 502, { retryable: code === 'gitops.unreachable' || code === 'gitops.timeout' });
  }
}

const SHA = /^[0-9a-f]{40}$/;
const TIMEOUT_MS = 120_000;

/** Parses a secret value into credentials: `user:password`, a bare token, or an OpenSSH private key. */
export function parseCredentials(value: string): GitCredentials {
  if (value.includes('PRIVATE KEY-----')) return { kind: 'ssh', privateKey: value.endsWith('\n') ? value : value + '\n' };
  const i = value.indexOf(':');
  if (i > 0) return { kind: 'basic', username: value.slice(0, i), password: value.slice(i + 1) };
  return { kind: 'token', token: value };
}

/** A URL with any user:password part removed (for messages and logs). */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password || u.username) {
      u.username = '';
      u.password = '';
    }
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//');
  }
}

interface Env {
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

function gitEnv(creds: GitCredentials | undefined): Env {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: 'true',
    SSH_ASKPASS: 'true',
    GIT_CONFIG_NOSYSTEM: '1',
    LC_ALL: 'C',
  };
  let cleanup = () => {};
  if (creds?.kind === 'basic' || creds?.kind === 'token') {
    const auth = creds.kind === 'basic' ? 'Basic ' + Buffer.from(`${creds.username}:${creds.password}`).toString('base64') : `Bearer ${creds.token}`;
    env.GIT_CONFIG_COUNT = '1';
    env.GIT_CONFIG_KEY_0 = 'http.extraHeader';
    env.GIT_CONFIG_VALUE_0 = `Authorization: ${auth}`;
  } else if (creds?.kind === 'ssh') {
    const dir = mkdtempSync(join(tmpdir(), 'infraflow-git-ssh-'));
    const key = join(dir, 'id');
    writeFileSync(key, creds.privateKey, { mode: 0o600 });
    env.GIT_SSH_COMMAND = `ssh -i ${key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new`;
    cleanup = () => rmSync(dir, { recursive: true, force: true });
  }
  return { env, cleanup };
}

function run(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('git', args, { cwd: opts.cwd, env: opts.env ?? gitEnv(undefined).env, timeout: opts.timeoutMs ?? TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException & { killed?: boolean };
        if (e.code === 'ENOENT') reject(new GitError('gitops.git_missing', 'the git command is not installed on this machine (install the Debian package git)'));
        else if (e.killed) reject(new GitError('gitops.timeout', `git ${args[0]} did not finish within ${Math.round((opts.timeoutMs ?? TIMEOUT_MS) / 1000)} s`));
        else reject(Object.assign(new Error(firstLine(stderr) || e.message), { stderr }));
        return;
      }
      resolve(stdout);
    });
  });
}

function firstLine(s: string): string {
  return s.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('hint:'))[0] ?? '';
}

export interface FetchResult {
  sha: string;
  /** Commit time (ms) and subject of the commit, for history. */
  committedAt: number;
  message: string;
}

/**
 * A bare mirror of one repository. `fetch(ref)` updates it from the URL and
 * resolves `ref` (branch, tag, or commit SHA) to a commit.
 */
export class GitMirror {
  constructor(readonly dir: string, readonly url: string, private readonly creds?: GitCredentials) {}

  private async ensure(): Promise<void> {
    if (existsSync(join(this.dir, 'HEAD'))) return;
    mkdirSync(this.dir, { recursive: true });
    await run(['init', '--bare', '--quiet', this.dir]);
  }

  async fetch(ref: string): Promise<FetchResult> {
    await this.ensure();
    const { env, cleanup } = gitEnv(this.creds);
    try {
      await run(['fetch', '--quiet', '--prune', '--force', '--no-tags', this.url, '+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'], { cwd: this.dir, env });
    } catch (e) {
      if (e instanceof GitError) throw e;
      const msg = (e as Error).message.replace(this.url, safeUrl(this.url));
      throw new GitError('gitops.unreachable', `cannot fetch ${safeUrl(this.url)}: ${msg}`);
    } finally {
      cleanup();
    }
    return this.resolve(ref);
  }

  /** Resolves a ref already in the mirror. */
  async resolve(ref: string): Promise<FetchResult> {
    const candidates = SHA.test(ref) ? [ref] : [`refs/heads/${ref}`, `refs/tags/${ref}`, ref];
    for (const c of candidates) {
      try {
        const out = await run(['log', '-1', '--format=%H%x00%ct%x00%s', `${c}^{commit}`, '--'], { cwd: this.dir });
        const [sha, ct, subject] = out.trim().split('\0');
        if (sha && SHA.test(sha)) return { sha, committedAt: Number(ct) * 1000, message: subject ?? '' };
      } catch {
        /* try the next form */
      }
    }
    throw new GitError('gitops.bad_ref', `${safeUrl(this.url)} has no branch, tag or commit "${ref}"`);
  }

  /** Files under `path` at `sha` with their blob ids (YAML and JSON only), sorted by path. */
  async list(sha: string, path: string): Promise<{ file: string; blob: string }[]> {
    const prefix = path.replace(/^\/+|\/+$/g, '');
    let out: string;
    try {
      out = await run(['ls-tree', '-r', '--full-tree', sha, '--', ...(prefix ? [prefix + '/'] : [])], { cwd: this.dir });
    } catch (e) {
      throw new GitError('gitops.bad_ref', `cannot read commit ${sha.slice(0, 12)}: ${(e as Error).message}`);
    }
    const files: { file: string; blob: string }[] = [];
    for (const line of out.split('\n')) {
      if (!line) continue;
      const tab = line.indexOf('\t');
      const [, type, blob] = line.slice(0, tab).split(' ');
      const file = line.slice(tab + 1);
      if (type === 'blob' && blob && /\.(ya?ml|json)$/i.test(file)) files.push({ file, blob });
    }
    return files.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  }

  /** Reads blobs by id in one `git cat-file --batch` process. */
  async blobs(ids: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const want = [...new Set(ids)];
    if (!want.length) return out;
    await this.ensure();
    return new Promise((resolve, reject) => {
      const child = spawn('git', ['cat-file', '--batch'], { cwd: this.dir, env: gitEnv(undefined).env, stdio: ['pipe', 'pipe', 'pipe'] });
      const chunks: Buffer[] = [];
      let err = '';
      child.stdout.on('data', (c: Buffer) => chunks.push(c));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', (e) => reject(e));
      child.on('close', (code) => {
        if (code !== 0) return reject(new GitError('gitops.read_failed', `git cat-file failed: ${firstLine(err)}`));
        const buf = Buffer.concat(chunks);
        let pos = 0;
        for (const id of want) {
          const nl = buf.indexOf(10, pos);
          const header = buf.subarray(pos, nl).toString('utf8');
          const [, type, size] = header.split(' ');
          if (type === 'missing' || size === undefined) return reject(new GitError('gitops.read_failed', `blob ${id} is missing from the mirror`));
          const n = Number(size);
          out.set(id, buf.subarray(nl + 1, nl + 1 + n).toString('utf8'));
          pos = nl + 1 + n + 1;
        }
        resolve(out);
      });
      child.stdin.end(want.join('\n') + '\n');
    });
  }
}
