import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parse as parseYaml } from 'yaml';
import { InfraflowError, ValidationError } from '../../core/errors.js';
import { ProviderError } from '../../resources/errors.js';

/**
 * A Kubernetes API client driven by a kubeconfig: discovery (kind → resource
 * path), server-side apply, get/list/delete, watches (streamed JSON lines)
 * and pod logs (follow). It speaks the wire protocol only, so it drives real
 * clusters and the simulator's clusters alike.
 */

export type KObj = Record<string, any>;

export interface KubeTarget {
  server: string;
  token?: string;
  ca?: string;
  insecureSkipTlsVerify?: boolean;
  clientCert?: string;
  clientKey?: string;
  namespace?: string;
}

/** The current context of a kubeconfig (YAML text). */
export function parseKubeconfig(text: string, contextName?: string): KubeTarget {
  let doc: KObj;
  try {
    doc = parseYaml(text) as KObj;
  } catch (e) {
    throw new ValidationError('kubernetes.invalid_kubeconfig', `the kubeconfig is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const ctxName = contextName ?? doc?.['current-context'];
  const ctx = (doc?.contexts ?? []).find((c: KObj) => c.name === ctxName)?.context;
  if (!ctx) throw new ValidationError('kubernetes.invalid_kubeconfig', `the kubeconfig has no context ${JSON.stringify(ctxName)} (set current-context)`);
  const cluster = (doc.clusters ?? []).find((c: KObj) => c.name === ctx.cluster)?.cluster;
  const user = (doc.users ?? []).find((u: KObj) => u.name === ctx.user)?.user ?? {};
  if (!cluster?.server) throw new ValidationError('kubernetes.invalid_kubeconfig', `the kubeconfig's cluster ${JSON.stringify(ctx.cluster)} has no server`);
  const b64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : undefined);
  return {
    server: String(cluster.server).replace(/\/+$/, ''),
    ...(user.token ? { token: String(user.token) } : {}),
    ...(cluster['certificate-authority-data'] ? { ca: b64(cluster['certificate-authority-data']) } : {}),
    ...(cluster['insecure-skip-tls-verify'] ? { insecureSkipTlsVerify: true } : {}),
    ...(user['client-certificate-data'] ? { clientCert: b64(user['client-certificate-data']) } : {}),
    ...(user['client-key-data'] ? { clientKey: b64(user['client-key-data']) } : {}),
    ...(ctx.namespace ? { namespace: String(ctx.namespace) } : {}),
  };
}

export class KubeApiError extends InfraflowError {
  constructor(readonly httpStatus: number, readonly reason: string, message: string) {
    super(`kubernetes.${reason ? reason.replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase()) : 'error'}`, message, httpStatus >= 500 ? 502 : httpStatus === 404 ? 404 : httpStatus === 409 ? 409 : 400, { retryable: httpStatus >= 500 || httpStatus === 429 });
  }
}

interface Res { status: number; body: string }

export interface ResourceRef { plural: string; namespaced: boolean; apiVersion: string; kind: string }

export class KubeClient {
  private discovery = new Map<string, Promise<ResourceRef[]>>();

  constructor(readonly target: KubeTarget) {}

  static fromKubeconfig(text: string): KubeClient {
    return new KubeClient(parseKubeconfig(text));
  }

  private open(method: string, path: string, headers: Record<string, string>, body?: string) {
    const url = new URL(this.target.server + path);
    const https = url.protocol === 'https:';
    const opts = {
      method,
      headers: { accept: 'application/json', ...(this.target.token ? { authorization: `Bearer ${this.target.token}` } : {}), ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) },
      ...(https ? { ca: this.target.ca, rejectUnauthorized: !this.target.insecureSkipTlsVerify, cert: this.target.clientCert, key: this.target.clientKey } : {}),
    };
    return (https ? httpsRequest : httpRequest)(url, opts);
  }

  /** One request; a non-2xx status becomes KubeApiError with the server's message. */
  async request(method: string, path: string, opts: { body?: unknown; contentType?: string; signal?: AbortSignal } = {}): Promise<KObj> {
    const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    const res = await new Promise<Res>((resolve, reject) => {
      const req = this.open(method, path, body !== undefined ? { 'content-type': opts.contentType ?? 'application/json' } : {}, body);
      const onAbort = () => req.destroy(new Error('aborted'));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.setTimeout(30_000, () => req.destroy(new Error('the Kubernetes API did not answer within 30 s')));
      req.on('error', (e) => reject(new ProviderError('BackendUnavailable', `Kubernetes API ${this.target.server}: ${e.message}`, { retryable: true })));
      req.on('response', (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c) => chunks.push(c as Buffer));
        r.on('end', () => {
          opts.signal?.removeEventListener('abort', onAbort);
          resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        r.on('error', reject);
      });
      req.end(body);
    });
    let parsed: KObj;
    try {
      parsed = res.body ? (JSON.parse(res.body) as KObj) : {};
    } catch {
      parsed = { message: res.body.slice(0, 300) };
    }
    if (res.status < 200 || res.status >= 300) throw new KubeApiError(res.status, String(parsed.reason ?? ''), String(parsed.message ?? `HTTP ${res.status}`));
    return parsed;
  }

  /** The resource of `apiVersion` + `kind` (from discovery, cached). */
  async resourceFor(apiVersion: string, kind: string): Promise<ResourceRef> {
    let p = this.discovery.get(apiVersion);
    if (!p) {
      p = this.request('GET', apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`).then((l) =>
        ((l.resources ?? []) as KObj[]).filter((r) => !String(r.name).includes('/')).map((r) => ({ plural: r.name, namespaced: !!r.namespaced, apiVersion, kind: r.kind })),
      );
      p.catch(() => this.discovery.delete(apiVersion));
      this.discovery.set(apiVersion, p);
    }
    const r = (await p).find((x) => x.kind === kind);
    if (!r) throw new ValidationError('kubernetes.unknown_kind', `the cluster does not serve ${kind} in ${apiVersion}`);
    return r;
  }

  async path(apiVersion: string, kind: string, namespace: string | undefined, name?: string): Promise<string> {
    const r = await this.resourceFor(apiVersion, kind);
    const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    return `${base}${r.namespaced ? `/namespaces/${encodeURIComponent(namespace ?? this.target.namespace ?? 'default')}` : ''}/${r.plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  /** Server-side apply of one object (fieldManager infraflow, conflicts forced). */
  async apply(obj: KObj, opts: { fieldManager?: string; force?: boolean; dryRun?: boolean; signal?: AbortSignal } = {}): Promise<KObj> {
    const p = await this.path(obj.apiVersion, obj.kind, obj.metadata?.namespace, obj.metadata?.name);
    const q = new URLSearchParams({ fieldManager: opts.fieldManager ?? 'infraflow', fieldValidation: 'Strict' });
    if (opts.force ?? true) q.set('force', 'true');
    if (opts.dryRun) q.set('dryRun', 'All');
    return this.request('PATCH', `${p}?${q}`, { body: obj, contentType: 'application/apply-patch+yaml', ...(opts.signal ? { signal: opts.signal } : {}) });
  }

  async get(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<KObj | undefined> {
    try {
      return await this.request('GET', await this.path(apiVersion, kind, namespace, name));
    } catch (e) {
      if (e instanceof KubeApiError && e.httpStatus === 404) return undefined;
      throw e;
    }
  }

  async list(apiVersion: string, kind: string, namespace: string | undefined, opts: { labelSelector?: string; fieldSelector?: string } = {}): Promise<KObj[]> {
    const q = new URLSearchParams();
    if (opts.labelSelector) q.set('labelSelector', opts.labelSelector);
    if (opts.fieldSelector) q.set('fieldSelector', opts.fieldSelector);
    const l = await this.request('GET', `${await this.path(apiVersion, kind, namespace)}${q.size ? `?${q}` : ''}`);
    return (l.items ?? []) as KObj[];
  }

  /** Deletes (absent is fine). Returns whether it existed. */
  async delete(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<boolean> {
    try {
      await this.request('DELETE', await this.path(apiVersion, kind, namespace, name), { body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' } });
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.httpStatus === 404) return false;
      throw e;
    }
  }

  /**
   * Watches a collection: `onEvent` gets every ADDED/MODIFIED/DELETED event
   * (from now: the current objects first as ADDED). Returns a stop function.
   */
  async watch(apiVersion: string, kind: string, namespace: string | undefined, onEvent: (type: string, obj: KObj) => void, opts: { labelSelector?: string; onEnd?: (err?: Error) => void } = {}): Promise<() => void> {
    const q = new URLSearchParams({ watch: 'true' });
    if (opts.labelSelector) q.set('labelSelector', opts.labelSelector);
    return this.stream(`${await this.path(apiVersion, kind, namespace)}?${q}`, (line) => {
      const e = JSON.parse(line) as { type: string; object: KObj };
      onEvent(e.type, e.object);
    }, opts.onEnd);
  }

  /** Pod logs; with `follow` the lines keep coming until stop() or the pod ends. */
  async logs(namespace: string, pod: string, onLine: (line: string) => void, opts: { container?: string; follow?: boolean; tailLines?: number; onEnd?: (err?: Error) => void } = {}): Promise<() => void> {
    const q = new URLSearchParams();
    if (opts.container) q.set('container', opts.container);
    if (opts.follow) q.set('follow', 'true');
    if (opts.tailLines !== undefined) q.set('tailLines', String(opts.tailLines));
    return this.stream(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log${q.size ? `?${q}` : ''}`, onLine, opts.onEnd);
  }

  private stream(path: string, onLine: (line: string) => void, onEnd?: (err?: Error) => void): Promise<() => void> {
    return new Promise((resolve, reject) => {
      const req = this.open('GET', path, {});
      let ended = false;
      const end = (err?: Error) => {
        if (ended) return;
        ended = true;
        onEnd?.(err);
      };
      req.on('error', (e) => {
        reject(new ProviderError('BackendUnavailable', `Kubernetes API ${this.target.server}: ${e.message}`, { retryable: true }));
        end(e);
      });
      req.on('response', (r) => {
        if ((r.statusCode ?? 0) >= 300) {
          const chunks: Buffer[] = [];
          r.on('data', (c) => chunks.push(c as Buffer));
          r.on('end', () => {
            let m = Buffer.concat(chunks).toString('utf8');
            let reason = '';
            try {
              const j = JSON.parse(m) as KObj;
              m = j.message ?? m;
              reason = j.reason ?? '';
            } catch { /* plain text */ }
            reject(new KubeApiError(r.statusCode ?? 0, reason, m));
          });
          return;
        }
        let buf = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => {
          buf += c;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line) onLine(line);
          }
        });
        r.on('end', () => {
          if (buf) onLine(buf);
          end();
        });
        r.on('error', (e) => end(e));
        resolve(() => {
          ended = true;
          req.destroy();
        });
      });
      req.end();
    });
  }
}
