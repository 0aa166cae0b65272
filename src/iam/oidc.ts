import { createHash, randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { InfraflowError, UnauthorizedError, ValidationError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import { NAME_RE, type Iam, type User } from './service.js';
import './oidc-migrations.js';

/**
 * OpenID Connect federation: the authorization code flow with PKCE (S256),
 * state and nonce, through openid-client v6, against any provider named by
 * its issuer URL. Users are created on their first sign-in (linked by issuer
 * and subject, never by name or e-mail to an existing local account), and
 * the groups claim decides their Infraflow group memberships at every sign-in
 * and every refresh: a federated user's memberships belong to the provider.
 *
 * Nothing here is kept in process memory between requests: the browser's
 * flow state (state, nonce, PKCE verifier) travels in a sealed, short-lived
 * cookie; the provider's tokens are sealed in the database beside the
 * session they stand behind. Several processes can share the work.
 */
export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret?: string | undefined;
  scopes: string;
  displayName: string;
  groupsClaim: string;
  groupMap: Record<string, string>;
  usernameClaim: string;
  refreshSeconds: number;
  allowInsecure: boolean;
}

/** The CLI's loopback listener, waiting for a one-time code. */
export interface CliHandoff {
  redirect: string;
  /** PKCE S256 challenge of the CLI's own verifier (the exchange must present the verifier). */
  challenge: string;
  state: string;
}

interface FlowState {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  cli?: CliHandoff | undefined;
  exp: number;
}

export interface SessionOut { token: string; tokenId: string; expiresAt: number; user: User }

const FLOW_TTL_MS = 10 * 60_000;
const HANDOFF_TTL_MS = 2 * 60_000;

function sha256b64url(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

/** Only a path on this server (no scheme, no host, no `//`): sign-in never redirects elsewhere. */
export function safeReturnTo(v: string | undefined): string {
  if (!v || !v.startsWith('/') || v.startsWith('//') || v.includes('\\') || /[\r\n]/.test(v)) return '/';
  return v.slice(0, 1000);
}

/** A loopback URL of the CLI's own listener (http://127.0.0.1:<port>/… or http://[::1]:<port>/…); anything else is refused. */
export function checkLoopback(redirect: string): string {
  let u: URL;
  try {
    u = new URL(redirect);
  } catch {
    throw new ValidationError('auth.invalid_redirect', 'cliRedirect: not a URL; the CLI passes http://127.0.0.1:<port>/callback', { details: { field: 'cliRedirect' } });
  }
  if (u.protocol !== 'http:' || !['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname) || !u.port || u.username || u.password) {
    throw new ValidationError('auth.invalid_redirect', 'cliRedirect: only a loopback listener (http://127.0.0.1:<port>/…) may receive a sign-in code', { details: { field: 'cliRedirect' } });
  }
  return u.toString();
}

/** One line for the user: the provider's error, or the library's message and its causes' (never a token: they carry none). */
function describe(e: unknown): string {
  const err = e as { error?: string; error_description?: string; message?: string; cause?: unknown };
  if (err.error) return `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`.slice(0, 300);
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur && typeof cur === 'object'; i++) {
    const c = cur as { message?: unknown; cause?: unknown; name?: unknown };
    if (typeof c.message === 'string' && !parts.includes(c.message)) parts.push(c.message);
    cur = c.cause;
  }
  return (parts.join(': ') || String(e)).slice(0, 300);
}

export class OidcFederation {
  readonly settings: OidcSettings;
  private readonly iam: Iam;
  private readonly logger: Logger;
  private readonly sessionTtlMs: number;
  /** The redirect URI registered at the provider: <publicUrl>/api/v1/auth/oidc/callback. */
  readonly redirectUri: string;
  private config: Promise<client.Configuration> | null = null;

  constructor(opts: { iam: Iam; settings: OidcSettings; redirectUri: string; sessionTtlMs: number; logger?: Logger }) {
    this.iam = opts.iam;
    this.settings = opts.settings;
    this.redirectUri = opts.redirectUri;
    this.sessionTtlMs = opts.sessionTtlMs;
    this.logger = opts.logger ?? silentLogger;
  }

  /** The provider's metadata, discovered once (again after a failure). The discovered issuer must equal the configured one. */
  async configuration(): Promise<client.Configuration> {
    if (!this.config) {
      const s = this.settings;
      this.config = client.discovery(new URL(s.issuer), s.clientId, { client_secret: s.clientSecret, redirect_uris: [this.redirectUri] }, s.clientSecret ? client.ClientSecretBasic(s.clientSecret) : client.None(), {
        ...(s.allowInsecure ? { execute: [client.allowInsecureRequests] } : {}),
        timeout: 10,
      });
      this.config.catch(() => {
        this.config = null;
      });
    }
    try {
      return await this.config;
    } catch (e) {
      throw new InfraflowError('auth.oidc_unavailable', `the identity provider ${this.settings.issuer} could not be used: ${describe(e)}; check auth.oidc.issuer (it must equal the issuer the provider announces)`, 502);
    }
  }

  /** The provider's authorization URL for a new sign-in, and the sealed flow state to keep in a cookie. */
  async begin(opts: { returnTo?: string | undefined; cli?: CliHandoff | undefined } = {}): Promise<{ url: string; flow: string }> {
    const config = await this.configuration();
    const flow: FlowState = {
      state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier(),
      returnTo: safeReturnTo(opts.returnTo), ...(opts.cli ? { cli: { ...opts.cli, redirect: checkLoopback(opts.cli.redirect) } } : {}), exp: this.iam.clock.now() + FLOW_TTL_MS,
    };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri, scope: this.settings.scopes, response_type: 'code',
      code_challenge: await client.calculatePKCECodeChallenge(flow.verifier), code_challenge_method: 'S256',
      state: flow.state, nonce: flow.nonce,
    });
    return { url: url.toString(), flow: this.iam.box.seal(JSON.stringify(flow), 'oidc-flow') };
  }

  private openFlow(sealed: string | undefined): FlowState {
    if (!sealed) throw new UnauthorizedError('sign-in: this browser has no sign-in under way (its cookie is missing or expired); start again from the sign-in page');
    let flow: FlowState;
    try {
      flow = JSON.parse(this.iam.box.open(sealed, 'oidc-flow')) as FlowState;
    } catch {
      throw new UnauthorizedError('sign-in: the sign-in state cookie is not valid; start again from the sign-in page');
    }
    if (flow.exp < this.iam.clock.now()) throw new UnauthorizedError('sign-in: the sign-in took too long (10 minutes); start again from the sign-in page');
    return flow;
  }

  /**
   * The provider sent the browser back: checks state, exchanges the code
   * (PKCE verifier), validates the ID token (issuer, audience, signature,
   * expiry, nonce), then signs the user in.
   */
  async complete(callbackUrl: URL, sealedFlow: string | undefined): Promise<SessionOut & { returnTo: string; cli?: CliHandoff | undefined }> {
    const flow = this.openFlow(sealedFlow);
    const config = await this.configuration();
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: flow.verifier, expectedState: flow.state, expectedNonce: flow.nonce, idTokenExpected: true });
    } catch (e) {
      this.logger.info({ reason: describe(e) }, 'OIDC sign-in refused');
      throw new UnauthorizedError(`sign-in with ${this.settings.displayName} failed: ${describe(e)}`);
    }
    const claims = tokens.claims();
    if (!claims) throw new UnauthorizedError('sign-in: the provider sent no ID token');
    const session = await this.signIn(claims as Record<string, unknown>, tokens.id_token ?? null, tokens.refresh_token ?? null);
    return { ...session, returnTo: flow.returnTo, cli: flow.cli };
  }

  /** Links (or creates) the user of these claims, syncs their groups, and opens a session. */
  async signIn(claims: Record<string, unknown>, idToken: string | null, refreshToken: string | null): Promise<SessionOut> {
    const issuer = String(claims.iss);
    const subject = String(claims.sub);
    const db = this.iam.store.db;
    const now = this.iam.clock.now();
    const link = await db.selectFrom('iam_identities').selectAll().where('issuer', '=', issuer).where('subject', '=', subject).executeTakeFirst();
    let user: User;
    if (link) {
      user = await this.iam.getUser(link.user_id);
      await db.updateTable('iam_identities').set({ last_login_at: now }).where('issuer', '=', issuer).where('subject', '=', subject).execute();
    } else {
      user = await this.iam.createUser({ name: await this.freeName(claims, subject), displayName: typeof claims.name === 'string' ? claims.name.slice(0, 200) : null, email: typeof claims.email === 'string' ? claims.email.slice(0, 200) : null });
      await db.insertInto('iam_identities').values({ issuer, subject, user_id: user.id, created_at: now, last_login_at: now }).execute();
      this.logger.info({ user: user.name, issuer }, 'OIDC: created a user on first sign-in');
    }
    if (user.disabled) throw new UnauthorizedError('sign-in: this account is disabled in Infraflow; ask an administrator');
    await this.syncGroups(user.id, claims);
    const s = await this.iam.createSession(user.id, this.sessionTtlMs);
    await db.insertInto('iam_oidc_sessions').values({
      token_id: s.tokenId, user_id: user.id, issuer, subject,
      id_token: idToken ? this.iam.box.seal(idToken, `oidc-id:${s.tokenId}`) : null,
      refresh_token: refreshToken ? this.iam.box.seal(refreshToken, `oidc-rt:${s.tokenId}`) : null,
      refreshed_at: now, created_at: now,
    }).execute();
    return { ...s, user };
  }

  private async freeName(claims: Record<string, unknown>, subject: string): Promise<string> {
    const raw = [claims[this.settings.usernameClaim], typeof claims.email === 'string' ? claims.email.split('@')[0] : undefined, subject].find((v) => typeof v === 'string' && v.length > 0) as string;
    let base = raw.toLowerCase().replace(/[^a-z0-9._@-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '').slice(0, 50) || 'user';
    if (!NAME_RE.test(base)) base = 'user';
    const taken = await this.iam.store.db.selectFrom('iam_users').select('id').where('name', '=', base).executeTakeFirst();
    // never take over a local account of the same name: a federated user gets a suffix from their subject
    return taken ? `${base}-${sha256b64url(subject).toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 8)}` : base;
  }

  /** The Infraflow groups the claims name (through groupMap), that exist. */
  async mappedGroups(claims: Record<string, unknown>): Promise<{ id: string; name: string }[]> {
    const raw = claims[this.settings.groupsClaim];
    const upstream = (Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : []).filter((g): g is string => typeof g === 'string');
    const names = [...new Set(upstream.map((g) => this.settings.groupMap[g] ?? this.settings.groupMap[g.replace(/^\//, '')] ?? g.replace(/^\//, '').toLowerCase()))].filter((n) => NAME_RE.test(n));
    if (!names.length) return [];
    return this.iam.store.db.selectFrom('iam_groups').select(['id', 'name']).where('name', 'in', names).execute();
  }

  /** A federated user's memberships become exactly the groups the provider names. */
  async syncGroups(userId: string, claims: Record<string, unknown>): Promise<string[]> {
    const want = await this.mappedGroups(claims);
    const db = this.iam.store.db;
    const have = await db.selectFrom('iam_group_members').select('group_id').where('user_id', '=', userId).execute();
    const wantIds = new Set(want.map((g) => g.id));
    const haveIds = new Set(have.map((g) => g.group_id));
    const remove = [...haveIds].filter((g) => !wantIds.has(g));
    const add = [...wantIds].filter((g) => !haveIds.has(g));
    if (remove.length || add.length) {
      await this.iam.store.transaction(async (trx) => {
        if (remove.length) await trx.deleteFrom('iam_group_members').where('user_id', '=', userId).where('group_id', 'in', remove).execute();
        for (const g of add) await trx.insertInto('iam_group_members').values({ group_id: g, user_id: userId }).execute();
      });
      this.iam.invalidate();
    }
    return want.map((g) => g.name).sort();
  }

  /**
   * Refreshes the provider session behind an Infraflow session: a refresh
   * token grant, then the groups again (from the new ID token, else from
   * userinfo). A refusal upstream (user removed or disabled, session
   * revoked) ends the Infraflow session. No-op for password sessions.
   */
  async refresh(tokenId: string): Promise<{ federated: boolean; groups?: string[] }> {
    const db = this.iam.store.db;
    const row = await db.selectFrom('iam_oidc_sessions').selectAll().where('token_id', '=', tokenId).executeTakeFirst();
    if (!row) return { federated: false };
    const config = await this.configuration();
    if (!row.refresh_token) throw new UnauthorizedError('session: the provider gave no refresh token (add offline_access to auth.oidc.scopes); sign in again');
    let tokens: Awaited<ReturnType<typeof client.refreshTokenGrant>>;
    try {
      tokens = await client.refreshTokenGrant(config, this.iam.box.open(row.refresh_token, `oidc-rt:${tokenId}`));
    } catch (e) {
      await this.iam.revokeToken(tokenId).catch(() => undefined);
      throw new UnauthorizedError(`session: ${this.settings.displayName} no longer accepts this session (${describe(e)}); sign in again`);
    }
    let claims = tokens.claims() as Record<string, unknown> | undefined;
    if (!claims || claims[this.settings.groupsClaim] === undefined) {
      claims = { ...(claims ?? {}), ...(await client.fetchUserInfo(config, tokens.access_token, row.subject)) };
    }
    if (claims.sub !== undefined && String(claims.sub) !== row.subject) throw new UnauthorizedError('session: the provider answered for another user');
    const groups = await this.syncGroups(row.user_id, claims);
    await db.updateTable('iam_oidc_sessions').set({
      refreshed_at: this.iam.clock.now(),
      ...(tokens.refresh_token ? { refresh_token: this.iam.box.seal(tokens.refresh_token, `oidc-rt:${tokenId}`) } : {}),
      ...(tokens.id_token ? { id_token: this.iam.box.seal(tokens.id_token, `oidc-id:${tokenId}`) } : {}),
    }).where('token_id', '=', tokenId).execute();
    return { federated: true, groups };
  }

  /** RP-initiated logout: the provider's end-session URL for this session, or null (a password session, or a provider without one). */
  async endSessionUrl(tokenId: string, postLogoutRedirect: string): Promise<string | null> {
    const db = this.iam.store.db;
    const row = await db.selectFrom('iam_oidc_sessions').selectAll().where('token_id', '=', tokenId).executeTakeFirst();
    if (!row) return null;
    await db.deleteFrom('iam_oidc_sessions').where('token_id', '=', tokenId).execute();
    const config = await this.configuration().catch(() => null);
    if (!config?.serverMetadata().end_session_endpoint) return null;
    return client.buildEndSessionUrl(config, {
      post_logout_redirect_uri: postLogoutRedirect, client_id: this.settings.clientId,
      ...(row.id_token ? { id_token_hint: this.iam.box.open(row.id_token, `oidc-id:${tokenId}`) } : {}),
    }).toString();
  }

  /** After a CLI sign-in: a one-time code for the CLI's loopback listener (good for 2 minutes, bound to the CLI's PKCE challenge). */
  async handoff(session: SessionOut, challenge: string): Promise<string> {
    const code = randomBytes(32).toString('base64url');
    await this.iam.store.db.insertInto('iam_oidc_handoffs').values({ id: sha256b64url(code), token: this.iam.box.seal(session.token, 'oidc-handoff'), challenge, expires_at: this.iam.clock.now() + HANDOFF_TTL_MS }).execute();
    return code;
  }

  /** The CLI trades its one-time code and PKCE verifier for the session token (once). */
  async exchange(code: string, verifier: string): Promise<{ token: string; expiresAt: number; user: User }> {
    const db = this.iam.store.db;
    const id = sha256b64url(code);
    const row = await db.selectFrom('iam_oidc_handoffs').selectAll().where('id', '=', id).executeTakeFirst();
    await db.deleteFrom('iam_oidc_handoffs').where((eb) => eb.or([eb('id', '=', id), eb('expires_at', '<', this.iam.clock.now())])).execute();
    if (!row || row.expires_at < this.iam.clock.now()) throw new UnauthorizedError('sign-in: this code is unknown, used or expired; run infraflow login --sso again');
    if (sha256b64url(verifier) !== row.challenge) throw new UnauthorizedError('sign-in: the code verifier does not match; run infraflow login --sso again');
    const token = this.iam.box.open(row.token, 'oidc-handoff');
    const principal = await this.iam.authenticate(token);
    if (!principal) throw new UnauthorizedError('sign-in: the session ended before it was picked up; run infraflow login --sso again');
    const t = await this.iam.getToken(principal.tokenId);
    return { token, expiresAt: t.expiresAt, user: await this.iam.getUser(principal.userId) };
  }

  /** Device authorization grant (RFC 8628) for a CLI without a browser: the code to show, and a sealed handle to poll with. */
  async deviceStart(): Promise<{ userCode: string; verificationUri: string; verificationUriComplete: string | null; intervalSeconds: number; expiresIn: number; handle: string }> {
    const config = await this.configuration();
    if (!config.serverMetadata().device_authorization_endpoint) throw new InfraflowError('auth.device_flow_unsupported', `${this.settings.displayName} does not offer the device flow; use infraflow login --sso on a machine with a browser`, 501);
    let r: Awaited<ReturnType<typeof client.initiateDeviceAuthorization>>;
    try {
      r = await client.initiateDeviceAuthorization(config, { scope: this.settings.scopes });
    } catch (e) {
      throw new InfraflowError('auth.oidc_unavailable', `the device flow could not start: ${describe(e)}`, 502);
    }
    const handle = this.iam.box.seal(JSON.stringify({ r, exp: this.iam.clock.now() + r.expires_in * 1000 }), 'oidc-device');
    return { userCode: r.user_code, verificationUri: r.verification_uri, verificationUriComplete: r.verification_uri_complete ?? null, intervalSeconds: r.interval ?? 5, expiresIn: r.expires_in, handle };
  }

  /** Polls the provider for up to `waitMs`: the session once the user has approved, or pending. */
  async devicePoll(handle: string, waitMs = 20_000): Promise<SessionOut | { pending: true }> {
    let state: { r: Awaited<ReturnType<typeof client.initiateDeviceAuthorization>>; exp: number };
    try {
      state = JSON.parse(this.iam.box.open(handle, 'oidc-device'));
    } catch {
      throw new ValidationError('auth.invalid_handle', 'handle: not a handle this server issued', { details: { field: 'handle' } });
    }
    if (state.exp < this.iam.clock.now()) throw new UnauthorizedError('sign-in: the device code expired; run infraflow login --sso again');
    const config = await this.configuration();
    let tokens: Awaited<ReturnType<typeof client.pollDeviceAuthorizationGrant>>;
    try {
      tokens = await client.pollDeviceAuthorizationGrant(config, state.r, undefined, { signal: AbortSignal.timeout(waitMs) });
    } catch (e) {
      if ((e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError') return { pending: true };
      throw new UnauthorizedError(`sign-in with ${this.settings.displayName} failed: ${describe(e)}`);
    }
    const claims = tokens.claims();
    if (!claims) throw new UnauthorizedError('sign-in: the provider sent no ID token');
    return this.signIn(claims as Record<string, unknown>, tokens.id_token ?? null, tokens.refresh_token ?? null);
  }
}
