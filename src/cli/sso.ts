import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApiClient } from './client.js';
import { CliError, EXIT } from './errors.js';

/**
 * `infraflow login --sso`: sign-in through the server's identity provider.
 * With a browser (like cloud CLIs do): a listener on a random loopback port
 * receives a one-time code once the provider has sent the browser back to
 * the server; the code and this process's PKCE verifier buy a session
 * token. Without one (`--device`, or no display): the device flow, a code to
 * enter on another device.
 */
export interface SsoIo {
  write(s: string): void;
  /** Opens the URL in a browser; false when there is none. */
  openBrowser?(url: string): Promise<boolean> | boolean;
}

export interface SsoSession { token: string; expiresAt: number; user: { name: string } }

export function defaultOpenBrowser(url: string): boolean {
  const platform = process.platform;
  if (platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY && !process.env.BROWSER) return false;
  const cmd = process.env.BROWSER ?? (platform === 'darwin' ? 'open' : platform === 'win32' ? 'explorer' : 'xdg-open');
  try {
    const child = spawn(cmd, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}

export async function ssoLogin(api: ApiClient, io: SsoIo, opts: { device?: boolean; timeoutMs?: number } = {}): Promise<SsoSession> {
  const open = io.openBrowser ?? defaultOpenBrowser;
  if (!opts.device) {
    const verifier = randomBytes(48).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const state = randomBytes(16).toString('base64url');
    let resolveCode!: (c: string) => void;
    let rejectCode!: (e: Error) => void;
    const gotCode = new Promise<string>((res, rej) => {
      resolveCode = res;
      rejectCode = rej;
    });
    const listener = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (u.pathname !== '/callback') {
        res.writeHead(404).end();
        return;
      }
      const ok = u.searchParams.get('state') === state && !!u.searchParams.get('code');
      res.writeHead(ok ? 200 : 400, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(ok ? '<!doctype html><title>Infraflow</title><p>Signed in. You can close this window and return to the terminal.</p>' : '<!doctype html><title>Infraflow</title><p>This sign-in answer does not belong to the waiting command.</p>');
      if (ok) resolveCode(u.searchParams.get('code')!);
      else rejectCode(new CliError('sign-in: the answer on the loopback address carried the wrong state; run infraflow login --sso again', EXIT.auth));
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    const port = (listener.address() as AddressInfo).port;
    try {
      const start = new URL('/api/v1/auth/oidc/start', api.server);
      start.searchParams.set('cliRedirect', `http://127.0.0.1:${port}/callback`);
      start.searchParams.set('cliChallenge', challenge);
      start.searchParams.set('cliState', state);
      const opened = await open(start.toString());
      if (opened) {
        io.write(`Opening your browser to sign in. If it does not open, visit:\n  ${start}\n`);
        const timer = setTimeout(() => rejectCode(new CliError('sign-in: no answer from the browser within 5 minutes; run infraflow login --sso again (or --device)', EXIT.auth)), opts.timeoutMs ?? 300_000);
        try {
          const code = await gotCode;
          const r = await api.request<SsoSession>('POST', '/auth/oidc/exchange', { body: { code, verifier }, auth: false });
          return r.body;
        } finally {
          clearTimeout(timer);
        }
      }
      io.write('No browser here: using the device flow.\n');
    } finally {
      listener.close();
    }
  }
  const d = (await api.request<{ userCode: string; verificationUri: string; verificationUriComplete: string | null; intervalSeconds: number; expiresIn: number; handle: string }>('POST', '/auth/oidc/device', { auth: false })).body;
  io.write(`On any device, open ${d.verificationUriComplete ?? d.verificationUri}\nand enter the code: ${d.userCode}\n(waiting up to ${Math.round(d.expiresIn / 60)} minutes)\n`);
  const until = Date.now() + d.expiresIn * 1000;
  while (Date.now() < until) {
    const r = await api.request<SsoSession | { pending: true }>('POST', '/auth/oidc/device/token', { body: { handle: d.handle }, auth: false });
    if (r.status === 200) return r.body as SsoSession;
  }
  throw new CliError('sign-in: the device code expired; run infraflow login --sso again', EXIT.auth);
}
