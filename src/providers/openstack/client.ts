import { setTimeout as sleep } from 'node:timers/promises';
import { ProviderError } from '../../resources/errors.js';
import type { ProviderErrorReason } from '../../resources/types.js';

/**
 * A small OpenStack REST client: Keystone v3 auth (password or application
 * credential) with token renewal before expiry and after a 401, endpoints
 * from the service catalogue, microversion headers, pagination (`*_links`
 * and Glance's `next`), and backoff on 429/502/503/504 and connection errors
 * (honouring Retry-After). Every other failure becomes a ProviderError whose
 * reason a user of clouds knows, with the backend's message.
 */
export interface OpenStackCredentials {
  authUrl: string;
  username?: string;
  password?: string;
  userDomain?: string;
  projectName?: string;
  projectDomain?: string;
  applicationCredentialId?: string;
  applicationCredentialSecret?: string;
  region?: string;
  interface?: 'public' | 'internal' | 'admin';
}

export type ServiceType = 'compute' | 'network' | 'image' | 'volume' | 'identity';

interface CatalogEntry { type: string; endpoints: { interface: string; region?: string; region_id?: string; url: string }[] }

export interface RequestOptions {
  body?: unknown;
  microversion?: string;
  signal?: AbortSignal | undefined;
  headers?: Record<string, string>;
  /** Raw body (image data) instead of JSON. */
  raw?: RequestInit['body'];
  /** Statuses answered without throwing (e.g. 404 for reads). */
  accept?: number[];
}

const RETRY_STATUS = new Set([429, 502, 503, 504]);

export class OpenStackClient {
  private token: { value: string; expiresAt: number; catalog: CatalogEntry[] } | undefined;
  private authing: Promise<void> | undefined;
  /** Attempts on 429/5xx/connection errors before giving up (retryable BackendUnavailable). */
  readonly attempts: number;
  readonly baseDelayMs: number;

  constructor(readonly creds: OpenStackCredentials, opts: { attempts?: number; baseDelayMs?: number } = {}) {
    this.attempts = opts.attempts ?? 5;
    this.baseDelayMs = opts.baseDelayMs ?? 200;
  }

  private async authenticate(signal?: AbortSignal): Promise<void> {
    const c = this.creds;
    const identity = c.applicationCredentialId
      ? { methods: ['application_credential'], application_credential: { id: c.applicationCredentialId, secret: c.applicationCredentialSecret } }
      : { methods: ['password'], password: { user: { name: c.username, password: c.password, domain: { name: c.userDomain ?? 'Default' } } } };
    const body = { auth: { identity, ...(c.applicationCredentialId ? {} : { scope: { project: { name: c.projectName, domain: { name: c.projectDomain ?? 'Default' } } } }) } };
    const url = `${c.authUrl.replace(/\/+$/, '')}${/\/v3$/.test(c.authUrl.replace(/\/+$/, '')) ? '' : '/v3'}/auth/tokens`;
    const res = await this.fetchRetrying(url, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(body), signal: signal ?? null });
    const text = await res.text();
    if (res.status !== 201) throw new ProviderError(res.status === 401 ? 'InvalidSpec' : 'BackendUnavailable', `Keystone refused the credentials (${res.status}): ${messageOf(text)}`, { retryable: res.status !== 401 });
    const token = res.headers.get('x-subject-token');
    const parsed = JSON.parse(text) as { token: { expires_at: string; catalog?: CatalogEntry[] } };
    if (!token) throw new ProviderError('Internal', 'Keystone answered without X-Subject-Token');
    this.token = { value: token, expiresAt: Date.parse(parsed.token.expires_at), catalog: parsed.token.catalog ?? [] };
  }

  /** A valid token, renewed 5 minutes before it expires (one renewal at a time). */
  async tokenValue(signal?: AbortSignal, force = false): Promise<string> {
    if (force || !this.token || this.token.expiresAt - Date.now() < 5 * 60_000) {
      if (force) this.token = undefined;
      this.authing ??= this.authenticate(signal).finally(() => {
        this.authing = undefined;
      });
      await this.authing;
    }
    return this.token!.value;
  }

  /** The endpoint of a service from the catalogue, versioned the way this client calls it. */
  async endpoint(service: ServiceType, signal?: AbortSignal): Promise<string> {
    await this.tokenValue(signal);
    const types = service === 'volume' ? ['block-storage', 'volumev3', 'volume'] : [service];
    const entry = types.map((t) => this.token!.catalog.find((e) => e.type === t)).find(Boolean);
    if (!entry) throw new ProviderError('InvalidSpec', `the OpenStack catalogue has no ${service} service`);
    const iface = this.creds.interface ?? 'public';
    const ep = entry.endpoints.find((e) => e.interface === iface && (!this.creds.region || e.region_id === this.creds.region || e.region === this.creds.region)) ?? entry.endpoints[0];
    if (!ep) throw new ProviderError('InvalidSpec', `the ${service} service has no ${iface} endpoint`);
    let url = ep.url.replace(/\/+$/, '');
    if (service === 'network' && !/\/v2\.0$/.test(url)) url += '/v2.0';
    if (service === 'image' && !/\/v2$/.test(url)) url += '/v2';
    return url;
  }

  private async fetchRetrying(url: string, init: RequestInit): Promise<Response> {
    let last: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      try {
        const res = await fetch(url, init);
        if (!RETRY_STATUS.has(res.status) || attempt === this.attempts - 1) return res;
        const after = Number(res.headers.get('retry-after'));
        await res.arrayBuffer();
        await sleep(Number.isFinite(after) && after > 0 ? Math.min(after * 1000, 30_000) : this.baseDelayMs * 2 ** attempt, undefined, { signal: init.signal ?? undefined });
      } catch (e) {
        if ((init.signal as AbortSignal | null)?.aborted) throw new ProviderError('Timeout', `request to ${url} was cancelled`, { retryable: true, cause: e });
        last = e;
        if (attempt === this.attempts - 1) break;
        await sleep(this.baseDelayMs * 2 ** attempt);
      }
    }
    throw new ProviderError('BackendUnavailable', `cannot reach ${url}: ${last instanceof Error ? last.message : String(last)}`, { cause: last });
  }

  /** One call; JSON in and out. Throws a classified ProviderError for any status it was not told to accept. */
  async request<T = any>(service: ServiceType, method: string, path: string, opts: RequestOptions = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const base = await this.endpoint(service, opts.signal);
    const url = path.startsWith('http') ? path : `${base}${path}`;
    for (let renewed = false; ; renewed = true) {
      const headers: Record<string, string> = { 'x-auth-token': await this.tokenValue(opts.signal, false), accept: 'application/json', ...opts.headers };
      if (opts.body !== undefined) headers['content-type'] ??= 'application/json';
      if (opts.microversion) headers['openstack-api-version'] = `${service === 'volume' ? 'volume' : service} ${opts.microversion}`;
      if (opts.microversion && service === 'compute') headers['x-openstack-nova-api-version'] = opts.microversion;
      const res = await this.fetchRetrying(url, { method, headers, body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : null), signal: opts.signal ?? null, ...(opts.raw ? { duplex: 'half' } as object : {}) });
      const text = await res.text();
      if (res.status === 401 && !renewed) {
        await this.tokenValue(opts.signal, true);
        continue;
      }
      if (res.status >= 400 && !(opts.accept ?? []).includes(res.status)) throw errorFor(res.status, text, `${method} ${path}`);
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      return { status: res.status, body: body as T, headers: res.headers };
    }
  }

  /** Every item of a paginated list (`<key>_links` rel=next, or Glance's `next`). */
  async list<T = any>(service: ServiceType, path: string, key: string, opts: RequestOptions = {}): Promise<T[]> {
    const out: T[] = [];
    let next: string | undefined = path;
    const base = await this.endpoint(service, opts.signal);
    for (let pages = 0; next && pages < 1000; pages++) {
      const r: { body: Record<string, unknown> } = await this.request(service, 'GET', next, opts);
      out.push(...((r.body[key] ?? []) as T[]));
      const links = r.body[`${key}_links`] as { rel: string; href: string }[] | undefined;
      const href = links?.find((l) => l.rel === 'next')?.href ?? (typeof r.body.next === 'string' ? r.body.next : undefined);
      next = href ? (href.startsWith('http') ? href : service === 'image' ? `${base.replace(/\/v2$/, '')}${href}` : `${base}${href}`) : undefined;
    }
    return out;
  }
}

function messageOf(text: string): string {
  try {
    const j = JSON.parse(text) as Record<string, any>;
    const inner = j.NeutronError ?? j.error ?? Object.values(j)[0];
    const m = inner?.message ?? j.message ?? j.title;
    if (typeof m === 'string') return m;
  } catch {
    /* not JSON */
  }
  return text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 500);
}

/** An OpenStack error answer as a ProviderError (the backend's message kept). */
export function errorFor(status: number, text: string, what: string): ProviderError {
  const msg = messageOf(text);
  let reason: ProviderErrorReason;
  let retryable: boolean | undefined;
  if (/quota|overlimit|over limit/i.test(msg) || status === 413) reason = 'QuotaExceeded';
  else if (/no valid host/i.test(msg)) reason = 'NoValidHost';
  else if (/no more ip|IpAddressGenerationFailure|exhausted/i.test(msg)) reason = 'CapacityExhausted';
  else if (status === 400 || status === 406 || status === 422) reason = 'InvalidSpec';
  else if (status === 404) reason = 'NotFound';
  else if (status === 409) {
    reason = 'Conflict';
    // in use / busy / a task in progress clears by itself; a duplicate does not
    retryable = !/already exists|duplicate/i.test(msg);
  } else if (status === 401 || status === 403) reason = 'InvalidSpec';
  else if (status >= 500) reason = 'BackendUnavailable';
  else reason = 'Internal';
  return new ProviderError(reason, `${what}: ${msg} (HTTP ${status})`, { ...(retryable !== undefined ? { retryable } : {}), details: { status } });
}
