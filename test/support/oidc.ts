import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

/**
 * A real OpenID provider for tests: `oidc-provider` (a certified
 * implementation) on a random loopback port, with one confidential client
 * and accounts whose groups a test can change. Its development login form
 * takes any password; the account decides the claims.
 */
export interface TestAccount { groups: string[]; email?: string; name?: string }

export interface TestProvider {
  /** The issuer the provider announces (normally its own address). */
  issuer: string;
  /** Where it listens. */
  listenUrl: string;
  clientId: string;
  clientSecret: string;
  accounts: Map<string, TestAccount>;
  close(): Promise<void>;
}

export async function startTestProvider(opts: { redirectUris: string[]; postLogoutRedirectUris?: string[]; issuerOverride?: string; accounts?: Record<string, TestAccount> }): Promise<TestProvider> {
  const accounts = new Map(Object.entries(opts.accounts ?? {}));
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const issuer = opts.issuerOverride ?? `http://127.0.0.1:${port}`;
  const clientId = 'infraflow';
  const clientSecret = 'test-client-secret-0123456789';
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId, client_secret: clientSecret, redirect_uris: opts.redirectUris, response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      post_logout_redirect_uris: opts.postLogoutRedirectUris ?? [],
    }],
    cookies: { keys: ['test-cookie-key-0123456789abcdef'] },
    pkce: { required: () => true },
    conformIdTokenClaims: false,
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'], groups: ['groups'] },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: 3600, IdToken: 3600, RefreshToken: 86400, Session: 3600, Grant: 86400, Interaction: 600, DeviceCode: 600 },
    findAccount: async (_ctx, sub) => {
      if (!accounts.has(sub)) return undefined;
      return {
        accountId: sub,
        claims: async () => {
          const a = accounts.get(sub);
          if (!a) throw new Error('account removed');
          return { sub, preferred_username: sub, name: a.name ?? sub, email: a.email ?? `${sub}@example.test`, groups: [...a.groups] };
        },
      };
    },
  });
  provider.on('server_error', () => undefined);
  server.on('request', provider.callback());
  return {
    issuer, listenUrl: `http://127.0.0.1:${port}`, clientId, clientSecret, accounts,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A minimal user agent: follows redirects by hand, keeps cookies per host, fills the provider's development forms. */
export class Agent {
  private readonly jar = new Map<string, Map<string, string>>();
  constructor(private readonly fetchImpl: typeof fetch = fetch) {}

  cookies(host: string): Map<string, string> {
    return this.jar.get(host) ?? this.jar.set(host, new Map()).get(host)!;
  }

  private store(url: URL, res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0/i.test(a) || /^\s*expires=Thu, 01 Jan 1970/i.test(a));
      if (expired || value === '') this.cookies(url.host).delete(name);
      else this.cookies(url.host).set(name, value);
    }
  }

  async request(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const u = new URL(url);
    const jar = this.cookies(u.host);
    const headers = new Headers(init.headers);
    if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await this.fetchImpl(u, { ...init, headers, redirect: 'manual' });
    this.store(u, res);
    return res;
  }

  /**
   * Follows redirects from `url`; on the provider's login and consent pages
   * submits the form (login as `login`). Stops at the first URL for which
   * `stop` is true (not fetched) or at a final response.
   */
  async follow(url: string, o: { login?: string; stop?: (u: URL) => boolean } = {}): Promise<{ url: URL; res?: Response }> {
    let next = new URL(url);
    for (let i = 0; i < 20; i++) {
      if (o.stop?.(next)) return { url: next };
      const res = await this.request(next);
      if (res.status >= 300 && res.status < 400) {
        next = new URL(res.headers.get('location')!, next);
        continue;
      }
      const body = res.headers.get('content-type')?.includes('html') ? await res.text() : '';
      const form = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(body);
      const prompt = /name="prompt" value="(\w+)"/.exec(body)?.[1];
      if (form && prompt) {
        const action = new URL(form[1]!.replace(/&amp;/g, '&'), next);
        const fields = new URLSearchParams(prompt === 'login' ? { prompt, login: o.login ?? 'alice', password: 'any' } : { prompt });
        const post = await this.request(action, { method: 'POST', body: fields, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
        if (post.status >= 300 && post.status < 400) {
          next = new URL(post.headers.get('location')!, action);
          continue;
        }
        return { url: action, res: post };
      }
      return { url: next, res: new Response(body, { status: res.status, headers: res.headers }) };
    }
    throw new Error(`too many redirects from ${url}`);
  }
}
