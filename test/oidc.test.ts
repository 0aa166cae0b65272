import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import * as client from 'openid-client';
import type { FastifyInstance } from 'fastify';
import { openTestStore, type TestDb } from './support/dialects.js';
import { Agent, startTestProvider, type TestProvider } from './support/oidc.js';
import { Iam } from '../src/iam/service.js';
import { OidcFederation } from '../src/iam/oidc.js';
import { SecretBox } from '../src/core/secrets.js';
import { ManualClock } from '../src/core/clock.js';
import { createServer } from '../src/api/server.js';
import type { ApiDeps } from '../src/api/route.js';
import type { SignInSettings } from '../src/api/session.js';
import { ssoLogin } from '../src/cli/sso.js';
import { ApiClient } from '../src/cli/client.js';

/**
 * Sign-in through a real OpenID provider (oidc-provider on loopback), with an
 * HTTP user agent that follows the redirects and fills the provider's forms
 * as a browser would.
 */
describe('OIDC federation against oidc-provider', () => {
  let t: TestDb;
  let iam: Iam;
  let app: FastifyInstance;
  let base: string;
  let provider: TestProvider;
  let deps: ApiDeps;
  let signin: SignInSettings;
  const clock = new ManualClock(Date.now());
  const logLines: string[] = [];
  const TTL = 3600_000;

  const callbackPath = '/api/v1/auth/oidc/callback';
  const isCallback = (u: URL) => u.pathname === callbackPath;

  function federation(issuer: string): OidcFederation {
    return new OidcFederation({
      iam, redirectUri: `${base}${callbackPath}`, sessionTtlMs: TTL,
      settings: { issuer, clientId: provider.clientId, clientSecret: provider.clientSecret, scopes: 'openid profile email groups offline_access', displayName: 'Test IdP', groupsClaim: 'groups', groupMap: { 'platform-ops': 'ops' }, usernameClaim: 'preferred_username', refreshSeconds: 60, allowInsecure: true },
    });
  }

  /** Runs the browser flow up to the provider's redirect back to Infraflow (not yet fetched). */
  async function toCallback(agent: Agent, login: string, returnTo = '/runs'): Promise<URL> {
    const r = await agent.follow(`${base}/api/v1/auth/oidc/start?returnTo=${encodeURIComponent(returnTo)}`, { login, stop: isCallback });
    expect(r.url.pathname, `the flow should come back to the callback, got ${r.url} (${r.res?.status})`).toBe(callbackPath);
    return r.url;
  }

  async function signIn(login: string): Promise<{ agent: Agent; csrf: string }> {
    const agent = new Agent();
    const cb = await toCallback(agent, login);
    const res = await agent.request(cb);
    expect(res.status, await res.clone().text()).toBe(302);
    expect(res.headers.get('location')).toBe('/runs');
    const jar = agent.cookies(new URL(base).host);
    return { agent, csrf: jar.get('infraflow_csrf')! };
  }

  const api = (agent: Agent, method: string, path: string, o: { csrf?: string; body?: unknown } = {}) => agent.request(`${base}/api/v1${path}`, {
    method, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    headers: { ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(o.csrf ? { 'x-csrf-token': o.csrf } : {}) },
  });

  beforeAll(async () => {
    t = await openTestStore('sqlite');
    iam = new Iam({ store: t.store, box: SecretBox.random(), clock, cacheTtlMs: 0 });
    await iam.bootstrap({ adminPassword: 'admin-password-for-tests' });
    await iam.createProject({ name: 'ops-proj' });
    const ops = await iam.createGroup({ name: 'ops' });
    await iam.assign({ role: 'member', group: ops.id, project: 'ops-proj' });
    await iam.createGroup({ name: 'auditors' });
    const logger = pino({ level: 'info' }, new Writable({ write(chunk, _e, cb) { logLines.push(String(chunk)); cb(); } }));
    deps = { store: t.store, clock, logger, iam, areas: {} };
    app = await createServer(deps, { rateLimit: false });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    provider = await startTestProvider({
      redirectUris: [`${base}${callbackPath}`], postLogoutRedirectUris: [`${base}/`],
      accounts: { alice: { groups: ['platform-ops', 'auditors', 'not-in-infraflow'] }, bob: { groups: [] }, carol: { groups: ['ops'] } },
    });
    signin = { passwordLogin: true, cookieSecure: 'auto', sessionTtlMs: TTL, oidc: federation(provider.issuer) };
    deps.areas!.signin = signin;
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await provider?.close();
    await t?.cleanup();
  });

  it('announces the provider to the sign-in page', async () => {
    const res = await new Agent().request(`${base}/api/v1/auth/providers`);
    expect(await res.json() as any).toEqual({ password: true, oidc: { name: 'Test IdP', startUrl: '/api/v1/auth/oidc/start', refreshSeconds: 60 } });
  });

  it('signs a new user in: created on first sign-in, groups mapped to roles, cookies HttpOnly/SameSite, writes need the CSRF header, nothing secret logged', async () => {
    const agent = new Agent();
    const cb = await toCallback(agent, 'alice');
    expect(cb.searchParams.get('code')).toBeTruthy();
    const res = await agent.request(cb);
    expect(res.status).toBe(302);
    const cookies = res.headers.getSetCookie();
    const session = cookies.find((c) => c.startsWith('infraflow_session='))!;
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Lax/i);
    expect(session).toMatch(/Max-Age=3600/);
    expect(cookies.find((c) => c.startsWith('infraflow_csrf='))).not.toMatch(/HttpOnly/i);
    const csrf = agent.cookies(new URL(base).host).get('infraflow_csrf')!;
    const token = agent.cookies(new URL(base).host).get('infraflow_session')!;

    const who = await (await api(agent, 'GET', '/auth/whoami')).json() as any;
    expect(who.user.name).toBe('alice');
    expect(who.user.email).toBe('alice@example.test');
    expect(who.user.hasPassword).toBe(false);
    expect(who.projects['ops-proj']).toContain('resources:write');
    // upstream platform-ops → ops (groupMap), auditors by name, not-in-infraflow ignored
    const user = await iam.getUser('alice');
    const groups = (await iam.store.db.selectFrom('iam_group_members').innerJoin('iam_groups', 'iam_groups.id', 'iam_group_members.group_id').select('iam_groups.name').where('user_id', '=', user.id).execute()).map((g) => g.name).sort();
    expect(groups).toEqual(['auditors', 'ops']);

    // a cookie-authenticated write without the CSRF header is refused; with it, it goes through
    const noCsrf = await api(agent, 'POST', '/tokens', { body: { name: 'from-console' } });
    expect(noCsrf.status).toBe(403);
    expect((await noCsrf.json() as any).code).toBe('auth.csrf');
    const wrongCsrf = await api(agent, 'POST', '/tokens', { body: { name: 'from-console' }, csrf: 'x'.repeat(43) });
    expect(wrongCsrf.status).toBe(403);
    const ok = await api(agent, 'POST', '/tokens', { body: { name: 'from-console' }, csrf });
    expect(ok.status).toBe(201);

    // the second sign-in finds the same user (linked by issuer + subject)
    const again = await signIn('alice');
    expect((await (await api(again.agent, 'GET', '/auth/whoami')).json() as any).user.id).toBe(user.id);

    const logs = logLines.join('');
    expect(logs).toContain('/api/v1/auth/oidc/callback?[redacted]');
    expect(logs).not.toContain(cb.searchParams.get('code')!);
    expect(logs).not.toContain(token);
  });

  it('a user removed from a group upstream loses its rights at the next refresh, and at the next sign-in', async () => {
    provider.accounts.set('carol', { groups: ['ops'] });
    const { agent, csrf } = await signIn('carol');
    expect((await api(agent, 'GET', '/projects/ops-proj')).status).toBe(200);

    provider.accounts.set('carol', { groups: [] });
    expect((await api(agent, 'GET', '/projects/ops-proj')).status).toBe(200); // nothing changes until the refresh
    const r = await api(agent, 'POST', '/auth/refresh', { csrf });
    expect(r.status, await r.clone().text()).toBe(200);
    expect((await r.json() as any).groups).toEqual([]);
    expect((await api(agent, 'GET', '/projects/ops-proj')).status).toBe(404);

    // back in the group: a fresh sign-in restores it
    provider.accounts.set('carol', { groups: ['ops'] });
    const s2 = await signIn('carol');
    expect((await api(s2.agent, 'GET', '/projects/ops-proj')).status).toBe(200);
    // removed upstream altogether: the refresh is refused and the session ends
    provider.accounts.delete('carol');
    const gone = await api(s2.agent, 'POST', '/auth/refresh', { csrf: s2.csrf });
    expect(gone.status).toBe(401);
    expect((await api(s2.agent, 'GET', '/auth/whoami')).status).toBe(401);
  });

  it('a user without mapped groups signs in with no rights', async () => {
    const { agent } = await signIn('bob');
    expect((await api(agent, 'GET', '/auth/whoami')).status).toBe(200);
    expect((await api(agent, 'GET', '/projects/ops-proj')).status).toBe(404);
  });

  it('refuses a tampered state, and the flow cookie works only once', async () => {
    const agent = new Agent();
    const cb = await toCallback(agent, 'alice');
    const bad = new URL(cb);
    bad.searchParams.set('state', 'tampered-' + cb.searchParams.get('state'));
    const res = await agent.request(bad);
    expect(res.status).toBe(401);
    expect((await res.json() as any).detail).toMatch(/state/);
    // the real callback now fails too: the flow cookie was spent
    const replay = await agent.request(cb);
    expect(replay.status).toBe(401);
    expect(agent.cookies(new URL(base).host).get('infraflow_session')).toBeUndefined();
  });

  it('refuses an ID token whose nonce is not the one this browser sent', async () => {
    const agent = new Agent();
    const start = await agent.request(`${base}/api/v1/auth/oidc/start`);
    expect(start.status).toBe(302);
    const sealed = agent.cookies(new URL(base).host).get('infraflow_oidc')!;
    const flow = JSON.parse(iam.box.open(decodeURIComponent(sealed), 'oidc-flow')) as { state: string; verifier: string };
    // an authorization request with this browser's state and PKCE, but another nonce (an injected response)
    const config = await signin.oidc!.configuration();
    const url = client.buildAuthorizationUrl(config, { redirect_uri: `${base}${callbackPath}`, scope: 'openid', state: flow.state, nonce: 'someone-elses-nonce', code_challenge: await client.calculatePKCECodeChallenge(flow.verifier), code_challenge_method: 'S256' });
    const r = await agent.follow(url.toString(), { login: 'alice', stop: isCallback });
    const res = await agent.request(r.url);
    expect(res.status).toBe(401);
    expect((await res.json() as any).detail).toMatch(/nonce/);
  });

  it('refuses a provider whose announced issuer is not the configured one', async () => {
    const liar = await startTestProvider({ redirectUris: [`${base}${callbackPath}`], issuerOverride: 'https://idp.example.test/realms/other' });
    try {
      // the liar serves its discovery document on 127.0.0.1:<port> but announces another issuer
      expect((await (await fetch(`${liar.listenUrl}/.well-known/openid-configuration`)).json() as any).issuer).toBe('https://idp.example.test/realms/other');
      deps.areas!.signin = { ...signin, oidc: federation(liar.listenUrl) };
      const res = await new Agent().request(`${base}/api/v1/auth/oidc/start`);
      expect(res.status).toBe(502);
      const body = await res.json() as any;
      expect(body.code).toBe('auth.oidc_unavailable');
      expect(body.detail).toMatch(/issuer/);
    } finally {
      deps.areas!.signin = signin;
      await liar.close();
    }
  });

  it('ends a session when it expires, and on logout (with the provider\'s end-session URL)', async () => {
    const a = await signIn('alice');
    expect((await api(a.agent, 'GET', '/auth/whoami')).status).toBe(200);
    clock.advance(TTL + 1000);
    expect((await api(a.agent, 'GET', '/auth/whoami')).status).toBe(401);

    const b = await signIn('alice');
    const out = await api(b.agent, 'DELETE', '/auth/session', { csrf: b.csrf });
    expect(out.status).toBe(200);
    const { logoutUrl } = await out.json() as any;
    expect(logoutUrl).toMatch(new RegExp(`^${provider.issuer}/session/end\\?`));
    expect(new URL(logoutUrl).searchParams.get('id_token_hint')).toBeTruthy();
    expect(new URL(logoutUrl).searchParams.get('post_logout_redirect_uri')).toBe(`${base}/`);
    expect(b.agent.cookies(new URL(base).host).get('infraflow_session')).toBeUndefined();
    expect((await api(b.agent, 'GET', '/auth/whoami')).status).toBe(401);
  });

  it('hands a CLI a one-time code on its loopback address, traded once with its PKCE verifier', async () => {
    const verifier = client.randomPKCECodeVerifier();
    const challenge = await client.calculatePKCECodeChallenge(verifier);
    const loopback = 'http://127.0.0.1:9/callback';
    const agent = new Agent();
    const r = await agent.follow(`${base}/api/v1/auth/oidc/start?cliRedirect=${encodeURIComponent(loopback)}&cliChallenge=${challenge}&cliState=state12345`, { login: 'alice', stop: (u) => u.port === '9' });
    expect(r.url.searchParams.get('state')).toBe('state12345');
    const code = r.url.searchParams.get('code')!;
    expect(agent.cookies(new URL(base).host).get('infraflow_session')).toBeUndefined(); // the browser gets no session
    const wrong = await fetch(`${base}/api/v1/auth/oidc/exchange`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code, verifier: client.randomPKCECodeVerifier() }) });
    expect(wrong.status).toBe(401);
    // the wrong verifier spent the code: start again
    const r2 = await agent.follow(`${base}/api/v1/auth/oidc/start?cliRedirect=${encodeURIComponent(loopback)}&cliChallenge=${challenge}&cliState=state12345`, { login: 'alice', stop: (u) => u.port === '9' });
    const code2 = r2.url.searchParams.get('code')!;
    const ok = await fetch(`${base}/api/v1/auth/oidc/exchange`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: code2, verifier }) });
    expect(ok.status).toBe(200);
    const { token, user } = await ok.json() as any;
    expect(user.name).toBe('alice');
    const who = await fetch(`${base}/api/v1/auth/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(who.status).toBe(200);
    const twice = await fetch(`${base}/api/v1/auth/oidc/exchange`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: code2, verifier }) });
    expect(twice.status).toBe(401);
    // only loopback listeners receive codes
    const evil = await new Agent().request(`${base}/api/v1/auth/oidc/start?cliRedirect=${encodeURIComponent('https://evil.example/cb')}&cliChallenge=${challenge}&cliState=state12345`);
    expect(evil.status).toBe(400);
  });

  it('infraflow login --sso: the browser flow ends on the CLI\'s loopback listener, which gets a working session token', async () => {
    const out: string[] = [];
    const agent = new Agent();
    let followed: Promise<unknown> | undefined;
    const session = await ssoLogin(new ApiClient(base, undefined), {
      write: (t) => out.push(t),
      openBrowser: (url) => {
        followed = agent.follow(url, { login: 'alice' });
        return true;
      },
    });
    await followed;
    expect(session.user.name).toBe('alice');
    expect(out.join('')).toContain('Opening your browser');
    const who = await fetch(`${base}/api/v1/auth/whoami`, { headers: { authorization: `Bearer ${session.token}` } });
    expect(((await who.json()) as any).user.name).toBe('alice');
  });

  it('infraflow login --sso --device: the device flow gives a session once the user approves the code at the provider', async () => {
    const out: string[] = [];
    const pending = ssoLogin(new ApiClient(base, undefined), { write: (t) => out.push(t) }, { device: true });
    await vi.waitFor(() => expect(out.join('')).toMatch(/enter the code: \S+/), { timeout: 20_000 });
    const userCode = /enter the code: (\S+)/.exec(out.join(''))![1]!;
    expect(out.join('')).toContain(`${provider.issuer}/device`);
    // the user, on another device: opens the page, enters the code, confirms, signs in, consents
    const agent = new Agent();
    const form = await (await agent.request(`${provider.issuer}/device`)).text();
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(form)![1]!;
    const confirm = await agent.request(`${provider.issuer}/device`, { method: 'POST', body: new URLSearchParams({ xsrf, user_code: userCode, confirm: 'yes' }), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(confirm.status).toBeGreaterThanOrEqual(300);
    await agent.follow(new URL(confirm.headers.get('location')!, provider.issuer).toString(), { login: 'alice' });
    const session = await pending;
    expect(session.user.name).toBe('alice');
    const who = await fetch(`${base}/api/v1/auth/whoami`, { headers: { authorization: `Bearer ${session.token}` } });
    expect(((await who.json()) as any).projects['ops-proj']).toContain('resources:write');
  });

  it('password sign-in can be turned off', async () => {
    deps.areas!.signin = { ...signin, passwordLogin: false };
    try {
      for (const path of ['/auth/login', '/auth/session']) {
        const res = await fetch(`${base}/api/v1${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'admin', password: 'admin-password-for-tests' }) });
        expect(res.status).toBe(403);
        expect((await res.json() as any).code).toBe('auth.password_login_disabled');
      }
      expect(await (await fetch(`${base}/api/v1/auth/providers`)).json() as any).toMatchObject({ password: false });
    } finally {
      deps.areas!.signin = signin;
    }
  });
});

