import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { generate } from 'selfsigned';
import { timingSafeEqual } from 'node:crypto';
import { KubeApi, readRequest } from './api.js';
import { SimKubeCluster, type SimKubeOptions } from './cluster.js';
import { KubeError } from './store.js';

/**
 * The simulated clusters' Kubernetes APIs. Each cluster runs in simulated
 * time: a ticker advances it by the real time elapsed × the simulator speed.
 * `handle` serves `/<cluster id>/…` with a bearer token check (the
 * cluster's credentials); `listen` starts a standalone HTTP server for it.
 */

export { SimKubeCluster, type SimKubeOptions, type NodePoolConfig, type NodeProvisioner, RES, isReady, podRequests, cpuQuantity, memQuantity } from './cluster.js';
export { KubeApi, readRequest, podStatus, type KubeRequest, type ResponseSink } from './api.js';
export { KubeStore, KubeError, RESOURCES, matchesSelector, type KObj, type ResourceInfo, type WatchEvent } from './store.js';

interface Entry { cluster: SimKubeCluster; api: KubeApi; token: string }

export class SimKubeRegistry {
  private clusters = new Map<string, Entry>();
  private timer: NodeJS.Timeout | undefined;
  private lastTick = Date.now();
  private server: Server | undefined;

  /** `speed()` gives the simulator's speed factor (simulated ms per real ms). */
  constructor(private readonly speed: () => number = () => 1) {}

  add(id: string, token: string, opts: SimKubeOptions): SimKubeCluster {
    const existing = this.clusters.get(id);
    if (existing) return existing.cluster;
    const cluster = new SimKubeCluster({ start: Date.now(), ...opts });
    this.clusters.set(id, { cluster, api: new KubeApi(cluster), token });
    return cluster;
  }

  get(id: string): SimKubeCluster | undefined {
    return this.clusters.get(id)?.cluster;
  }

  remove(id: string): void {
    this.clusters.delete(id);
  }

  ids(): string[] {
    return [...this.clusters.keys()];
  }

  /** Advances every cluster by real elapsed time × speed (called by the ticker; tests may call it). */
  tick(): void {
    const now = Date.now();
    // at most a minute of simulated time per tick: at very high speeds the clusters run as fast as they can
    const dt = Math.min(60_000, (now - this.lastTick) * this.speed());
    this.lastTick = now;
    if (dt <= 0) return;
    for (const e of this.clusters.values()) e.cluster.advance(dt, Math.min(1000, Math.max(100, dt)));
  }

  start(everyMs = 200): void {
    if (this.timer) return;
    this.lastTick = Date.now();
    this.timer = setInterval(() => this.tick(), everyMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Serves a request whose path starts with `/<cluster id>`. */
  async handle(req: IncomingMessage, res: ServerResponse, prefix = ''): Promise<void> {
    const kreq = await readRequest(req, prefix);
    const m = /^\/([^/]+)(\/.*)?$/.exec(kreq.path);
    const entry = m ? this.clusters.get(decodeURIComponent(m[1]!)) : undefined;
    const fail = (e: KubeError) => {
      const body = JSON.stringify(e.status());
      res.writeHead(e.code, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    };
    if (!entry) return fail(new KubeError(404, 'NotFound', `no simulated cluster ${m?.[1] ?? ''}`));
    const auth = String(req.headers.authorization ?? '');
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    const a = Buffer.from(token);
    const b = Buffer.from(entry.token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return fail(new KubeError(401, 'Unauthorized', 'Unauthorized'));
    await entry.api.handle({ ...kreq, path: m![2] ?? '/' }, res);
  }

  /** PEM of the serving certificate (the kubeconfig's certificate authority). */
  certificate: string | undefined;

  /**
   * A standalone HTTPS server on `host` (port 0 = a free one) with a
   * self-signed certificate made at start (kubectl sends bearer tokens over
   * TLS only). Returns its base URL.
   */
  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    const now = new Date();
    const pems = await generate([{ name: 'commonName', value: 'infraflow-sim-kube' }], {
      keyType: 'ec', algorithm: 'sha256', notBeforeDate: new Date(now.getTime() - 3600_000), notAfterDate: new Date(now.getTime() + 3 * 365 * 86400_000),
      extensions: [{ name: 'basicConstraints', cA: true }, { name: 'keyUsage', digitalSignature: true, keyCertSign: true, keyEncipherment: true }, { name: 'extKeyUsage', serverAuth: true }, { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, ...(host !== '127.0.0.1' && /^[\d.]+$/.test(host) ? [{ type: 7 as const, ip: host }] : [])] }],
    });
    this.certificate = pems.cert;
    const server = createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: (e as Error).message, code: 500 }));
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(port, host, resolve));
    const addr = server.address() as { port: number };
    return `https://${host}:${addr.port}`;
  }

  async close(): Promise<void> {
    this.stop();
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections?.();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }
}

/** A kubeconfig for a simulated cluster served at `server` with `token` (and the server's certificate as its authority). */
export function kubeconfig(name: string, server: string, token: string, namespace = 'default', caPem?: string): string {
  return [
    'apiVersion: v1', 'kind: Config', 'clusters:', `- name: ${name}`, '  cluster:', `    server: ${server}`,
    ...(caPem ? [`    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`] : server.startsWith('https') ? ['    insecure-skip-tls-verify: true'] : []),
    'users:', `- name: ${name}-admin`, '  user:', `    token: ${token}`,
    'contexts:', `- name: ${name}`, '  context:', `    cluster: ${name}`, `    user: ${name}-admin`, `    namespace: ${namespace}`,
    `current-context: ${name}`, '',
  ].join('\n');
}
