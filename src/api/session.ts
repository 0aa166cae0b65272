import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { InfraflowError } from '../core/errors.js';
import type { OidcFederation } from '../iam/oidc.js';
import type { ApiDeps } from './route.js';

/**
 * Browser sessions. The console signs in through POST /auth/session (or an
 * OpenID provider) and gets its session token in a cookie it cannot read
 * (HttpOnly, SameSite=Lax, Secure over https, expiring with the token), and
 * a second, readable cookie holding the CSRF token: a hash of the session
 * token, which the console sends back as `X-CSRF-Token` on every write. A
 * write authenticated by the cookie without that header is refused (403
 * auth.csrf); bearer-token calls (CLI, scripts) are not affected.
 */
export const SESSION_COOKIE = 'infraflow_session';
export const CSRF_COOKIE = 'infraflow_csrf';
export const FLOW_COOKIE = 'infraflow_oidc';
export const CSRF_HEADER = 'x-csrf-token';

export interface SignInSettings {
  passwordLogin: boolean;
  cookieSecure: 'auto' | 'always' | 'never';
  publicUrl?: string | undefined;
  sessionTtlMs: number;
  oidc?: OidcFederation | undefined;
}

const DEFAULTS: SignInSettings = { passwordLogin: true, cookieSecure: 'auto', sessionTtlMs: 12 * 3600_000 };

/** The composition root hands these in `deps.areas.signin` (absent: password sign-in, no provider). */
export function signInSettings(deps: ApiDeps): SignInSettings {
  const s = deps.areas?.signin as SignInSettings | undefined;
  return s ?? DEFAULTS;
}

export function csrfFor(sessionToken: string): string {
  return createHash('sha256').update('csrf:' + sessionToken).digest('base64url');
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function cookieOf(req: FastifyRequest, name: string): string | undefined {
  const jar = (req as FastifyRequest & { cookies?: Record<string, string | undefined> }).cookies;
  return jar?.[name];
}

/**
 * The session token of a cookie-authenticated request, or undefined when
 * there is no session cookie. Writes must carry the CSRF header.
 */
export function cookieBearer(req: FastifyRequest): string | undefined {
  const token = cookieOf(req, SESSION_COOKIE);
  if (!token) return undefined;
  if (MUTATING.has(req.method)) {
    const h = req.headers[CSRF_HEADER];
    const sent = Array.isArray(h) ? h[0] : h;
    if (!sent || sent !== csrfFor(token)) {
      throw new InfraflowError('auth.csrf', 'this write came with the session cookie but without its X-CSRF-Token header; reload the console (or use a bearer token)', 403);
    }
  }
  return token;
}

export function flowCookie(req: FastifyRequest): string | undefined {
  return cookieOf(req, FLOW_COOKIE);
}

function secure(req: FastifyRequest, s: SignInSettings): boolean {
  if (s.cookieSecure === 'always') return true;
  if (s.cookieSecure === 'never') return false;
  return (s.publicUrl ?? '').startsWith('https:') || req.protocol === 'https';
}

type CookieReply = FastifyReply & {
  setCookie(name: string, value: string, opts: Record<string, unknown>): FastifyReply;
  clearCookie(name: string, opts: Record<string, unknown>): FastifyReply;
};

export function setSessionCookies(req: FastifyRequest, reply: FastifyReply, s: SignInSettings, token: string, expiresAt: number, now: number): string {
  const r = reply as CookieReply;
  const maxAge = Math.max(1, Math.floor((expiresAt - now) / 1000));
  const csrf = csrfFor(token);
  r.setCookie(SESSION_COOKIE, token, { path: '/', httpOnly: true, sameSite: 'lax', secure: secure(req, s), maxAge });
  r.setCookie(CSRF_COOKIE, csrf, { path: '/', httpOnly: false, sameSite: 'strict', secure: secure(req, s), maxAge });
  return csrf;
}

export function clearSessionCookies(req: FastifyRequest, reply: FastifyReply, s: SignInSettings): void {
  const r = reply as CookieReply;
  r.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'lax', secure: secure(req, s) });
  r.clearCookie(CSRF_COOKIE, { path: '/', sameSite: 'strict', secure: secure(req, s) });
}

export function setFlowCookie(req: FastifyRequest, reply: FastifyReply, s: SignInSettings, sealed: string | null): void {
  const r = reply as CookieReply;
  const opts = { path: '/api/v1/auth/oidc', httpOnly: true, sameSite: 'lax', secure: secure(req, s) };
  if (sealed) r.setCookie(FLOW_COOKIE, sealed, { ...opts, maxAge: 600 });
  else r.clearCookie(FLOW_COOKIE, opts);
}
