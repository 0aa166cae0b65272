import { z } from 'zod';
import { InfraflowError, UnauthorizedError } from '../../core/errors.js';
import { defineRoute, type AnyRoute, type ApiDeps } from '../route.js';
import { clearSessionCookies, flowCookie, setFlowCookie, setSessionCookies, signInSettings, SESSION_COOKIE } from '../session.js';
import { Name, Password, UserOut } from './schemas.js';

const SessionOut = z.object({ user: UserOut, expiresAt: z.number(), csrfToken: z.string(), refreshSeconds: z.number().nullable() });
const TokenSessionOut = z.object({ token: z.string(), expiresAt: z.number(), user: UserOut });

function noOidc(): InfraflowError {
  return new InfraflowError('auth.oidc_not_configured', 'no identity provider is configured on this server (auth.oidc in the configuration)', 404);
}

export function passwordLoginDisabled(): InfraflowError {
  return new InfraflowError('auth.password_login_disabled', 'password sign-in is turned off on this server (auth.passwordLogin: false); sign in with the identity provider', 403);
}

/** Sign-in for the console (cookies) and for `infraflow login --sso` (loopback code or device flow). */
export function sessionRoutes(deps: ApiDeps): AnyRoute[] {
  const { iam } = deps;
  const s = () => signInSettings(deps);
  const oidc = () => s().oidc ?? (() => {
    throw noOidc();
  })();
  return [
    defineRoute({
      method: 'GET', url: '/auth/providers', summary: 'How one may sign in here: password, and the identity provider if one is configured', tags: ['auth'], policy: { scope: 'public' },
      schema: { response: { 200: z.object({ password: z.boolean(), oidc: z.object({ name: z.string(), startUrl: z.string(), refreshSeconds: z.number() }).nullable() }) } },
      handler: () => {
        const o = s().oidc;
        return { password: s().passwordLogin, oidc: o ? { name: o.settings.displayName, startUrl: '/api/v1/auth/oidc/start', refreshSeconds: o.settings.refreshSeconds } : null };
      },
    }),
    defineRoute({
      method: 'POST', url: '/auth/session', summary: 'Browser sign-in with a password: sets the HttpOnly session cookie and the CSRF cookie', tags: ['auth'], policy: { scope: 'public' },
      rateLimit: { max: 20, timeWindowMs: 60_000, keyBy: 'ip' },
      schema: { body: z.strictObject({ name: Name, password: Password }), response: { 200: SessionOut } },
      handler: async ({ body, req, reply }) => {
        req.auditActorName = body.name;
        if (!s().passwordLogin) throw passwordLoginDisabled();
        const out = await iam.login(body.name, body.password);
        const csrfToken = setSessionCookies(req, reply, s(), out.token, out.expiresAt, iam.clock.now());
        return { user: out.user, expiresAt: out.expiresAt, csrfToken, refreshSeconds: null };
      },
    }),
    defineRoute({
      method: 'DELETE', url: '/auth/session', summary: 'Sign out: revokes the session, clears its cookies, and gives the provider\'s logout URL (RP-initiated logout) when there is one', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: { response: { 200: z.object({ logoutUrl: z.string().nullable() }) } },
      handler: async ({ req, reply, principal }) => {
        const o = s().oidc;
        const base = s().publicUrl ?? `${req.protocol}://${req.host}`;
        const logoutUrl = o ? await o.endSessionUrl(principal.tokenId, `${base.replace(/\/$/, '')}/`) : null;
        await iam.revokeToken(principal.tokenId);
        clearSessionCookies(req, reply, s());
        return { logoutUrl };
      },
    }),
    defineRoute({
      method: 'POST', url: '/auth/refresh', summary: 'Refresh a federated session at the provider: group changes upstream apply now; a refusal upstream ends the session (401)', tags: ['auth'], policy: { scope: 'authenticated' },
      schema: { response: { 200: z.object({ federated: z.boolean(), groups: z.array(z.string()).optional(), expiresAt: z.number() }) } },
      handler: async ({ principal, req, reply }) => {
        const o = s().oidc;
        try {
          const r = o ? await o.refresh(principal.tokenId) : { federated: false };
          return { ...r, expiresAt: (await iam.getToken(principal.tokenId)).expiresAt };
        } catch (e) {
          if (e instanceof UnauthorizedError && (req as { cookies?: Record<string, string> }).cookies?.[SESSION_COOKIE]) clearSessionCookies(req, reply, s());
          throw e;
        }
      },
    }),
    defineRoute({
      method: 'GET', url: '/auth/oidc/start', summary: 'Start sign-in at the identity provider (authorization code + PKCE): redirects there', tags: ['auth'], policy: { scope: 'public' },
      schema: {
        querystring: z.object({
          returnTo: z.string().max(1000).optional().describe('a path of the console to come back to'),
          cliRedirect: z.string().max(300).optional().describe('infraflow login --sso: the loopback URL that receives a one-time code'),
          cliChallenge: z.string().regex(/^[A-Za-z0-9_-]{43}$/).optional().describe('S256 challenge of the CLI\'s code verifier'),
          cliState: z.string().regex(/^[A-Za-z0-9_-]{8,128}$/).optional(),
        }),
      },
      handler: async ({ query, req, reply }) => {
        const o = oidc();
        const cli = query.cliRedirect ? { redirect: query.cliRedirect, challenge: query.cliChallenge ?? '', state: query.cliState ?? '' } : undefined;
        if (cli && (!cli.challenge || !cli.state)) throw new InfraflowError('api.invalid_request', 'cliChallenge and cliState are required with cliRedirect', 400, { details: { field: 'cliChallenge' } });
        const { url, flow } = await o.begin({ returnTo: query.returnTo, cli });
        setFlowCookie(req, reply, s(), flow);
        reply.header('cache-control', 'no-store');
        return reply.redirect(url, 302);
      },
    }),
    defineRoute({
      method: 'GET', url: '/auth/oidc/callback', summary: 'The identity provider sends the browser back here (the redirect URI to register at the provider)', tags: ['auth'], policy: { scope: 'public' },
      rateLimit: { max: 60, timeWindowMs: 60_000, keyBy: 'ip' },
      schema: { querystring: z.looseObject({ code: z.string().max(4000).optional(), state: z.string().max(4000).optional(), iss: z.string().max(2000).optional(), error: z.string().max(200).optional(), error_description: z.string().max(2000).optional() }) },
      handler: async ({ req, reply }) => {
        const o = oidc();
        const sealed = flowCookie(req);
        setFlowCookie(req, reply, s(), null); // one use, whatever happens
        reply.header('cache-control', 'no-store');
        const query = req.url.slice(req.url.indexOf('?'));
        const callbackUrl = new URL(o.redirectUri);
        callbackUrl.search = req.url.includes('?') ? query : '';
        const out = await o.complete(callbackUrl, sealed);
        req.auditActorName = out.user.name;
        if (out.cli) {
          const code = await o.handoff(out, out.cli.challenge);
          const back = new URL(out.cli.redirect);
          back.searchParams.set('code', code);
          back.searchParams.set('state', out.cli.state);
          return reply.redirect(back.toString(), 302);
        }
        setSessionCookies(req, reply, s(), out.token, out.expiresAt, iam.clock.now());
        return reply.redirect(out.returnTo, 302);
      },
    }),
    defineRoute({
      method: 'POST', url: '/auth/oidc/exchange', summary: 'infraflow login --sso: trade the one-time code and the PKCE verifier for a session token', tags: ['auth'], policy: { scope: 'public' },
      rateLimit: { max: 20, timeWindowMs: 60_000, keyBy: 'ip' },
      schema: { body: z.strictObject({ code: z.string().min(20).max(200), verifier: z.string().min(43).max(128) }), response: { 200: TokenSessionOut } },
      handler: async ({ body }) => oidc().exchange(body.code, body.verifier),
    }),
    defineRoute({
      method: 'POST', url: '/auth/oidc/device', summary: 'infraflow login --sso without a browser: start the device flow at the provider', tags: ['auth'], policy: { scope: 'public' },
      rateLimit: { max: 20, timeWindowMs: 60_000, keyBy: 'ip' },
      schema: { response: { 200: z.object({ userCode: z.string(), verificationUri: z.string(), verificationUriComplete: z.string().nullable(), intervalSeconds: z.number(), expiresIn: z.number(), handle: z.string() }) } },
      handler: async () => oidc().deviceStart(),
    }),
    defineRoute({
      method: 'POST', url: '/auth/oidc/device/token', summary: 'Poll the device flow (waits up to 20 s): 200 with the session token once approved, 202 while pending', tags: ['auth'], policy: { scope: 'public' },
      schema: { body: z.strictObject({ handle: z.string().min(1).max(8000) }), response: { 200: TokenSessionOut, 202: z.object({ pending: z.literal(true) }) } },
      handler: async ({ body, reply }) => {
        const r = await oidc().devicePoll(body.handle);
        if ('pending' in r) {
          reply.code(202);
          return { pending: true as const };
        }
        return { token: r.token, expiresAt: r.expiresAt, user: r.user };
      },
    }),
  ];
}
