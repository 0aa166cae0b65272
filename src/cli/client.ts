import { CliError, EXIT, exitCodeForStatus } from './errors.js';

export interface SseEvent {
  id?: string;
  event: string;
  data: any;
}

/** A thin HTTP client of the Infraflow API: problem+json errors become one-line CliErrors. */
export class ApiClient {
  constructor(readonly server: string, private readonly token: string | undefined, private readonly fetchImpl: typeof fetch = fetch) {}

  private url(path: string, query?: Record<string, unknown>): string {
    const u = new URL(path.startsWith('/') && !path.startsWith('/api/') && !['/healthz', '/readyz', '/metrics', '/openapi.json'].includes(path) ? `/api/v1${path}` : path, this.server);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
    return u.toString();
  }

  async request<T = any>(method: string, path: string, opts: { query?: Record<string, unknown>; body?: unknown; headers?: Record<string, string>; auth?: boolean } = {}): Promise<{ status: number; body: T; headers: Headers }> {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (opts.auth !== false && this.token) headers.authorization = `Bearer ${this.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await this.fetchImpl(this.url(path, opts.query), { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code;
      throw new CliError(`cannot reach the Infraflow server at ${this.server}${cause ? ` (${cause})` : ''}; check --server or run: infraflow config set server <url>`, EXIT.unavailable);
    }
    const text = await res.text();
    let body: any = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (!res.ok) throw problemError(res.status, body, this.token !== undefined, opts.auth === false);
    return { status: res.status, body: body as T, headers: res.headers };
  }

  get<T = any>(path: string, query?: Record<string, unknown>): Promise<T> {
    return this.request<T>('GET', path, { query }).then((r) => r.body);
  }

  /**
   * Follows a server-sent event stream, reconnecting with Last-Event-ID when
   * the connection drops, until the server ends it (`event: end`) or `stop` returns true.
   */
  async stream(path: string, query: Record<string, unknown>, onEvent: (e: SseEvent) => boolean | void | Promise<boolean | void>, signal?: AbortSignal): Promise<void> {
    let lastId: string | undefined;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      if (lastId) headers['last-event-id'] = lastId;
      let res: Response;
      try {
        res = await this.fetchImpl(this.url(path, query), { headers, ...(signal ? { signal } : {}) });
      } catch (e) {
        if (signal?.aborted) return;
        if (attempt < 5) {
          await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
          continue;
        }
        throw new CliError(`lost the event stream from ${this.server} (${(e as Error).message}); run the command again to resume`, EXIT.unavailable);
      }
      if (!res.ok) {
        const text = await res.text();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* not json */
        }
        throw problemError(res.status, body, this.token !== undefined);
      }
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let ended = false;
      try {
        while (true) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev: SseEvent = { event: 'message', data: undefined };
            let hasData = false;
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              if (line.startsWith('id: ')) ev.id = line.slice(4);
              else if (line.startsWith('event: ')) ev.event = line.slice(7);
              else if (line.startsWith('data: ')) {
                hasData = true;
                try {
                  ev.data = JSON.parse(line.slice(6));
                } catch {
                  ev.data = line.slice(6);
                }
              }
            }
            if (!hasData && !ev.id) continue;
            if (ev.id) lastId = ev.id;
            if (ev.event === 'end') {
              ended = true;
              break;
            }
            if ((await onEvent(ev)) === true) {
              ended = true;
              break;
            }
          }
          if (ended) break;
        }
      } catch (e) {
        if (signal?.aborted) return;
        if (attempt >= 5) throw new CliError(`lost the event stream (${(e as Error).message}); run the command again to resume`, EXIT.unavailable);
      } finally {
        try {
          await reader.cancel();
        } catch {
          /* closed */
        }
      }
      if (ended || signal?.aborted) return;
      attempt = 0; // the server closed the stream without ending it: resume from the last id
    }
  }
}

export function problemError(status: number, body: unknown, hadToken: boolean, anonymousCall = false): CliError {
  const p = (body && typeof body === 'object' ? body : {}) as { detail?: string; code?: string; title?: string };
  let msg = p.detail ?? (typeof body === 'string' && body ? body.slice(0, 200) : `HTTP ${status}`);
  if (status === 401 && !anonymousCall) msg = hadToken ? `${msg} — your session may have expired: run infraflow login` : 'not logged in: run infraflow login (or set INFRAFLOW_TOKEN)';
  return new CliError(`${msg}${p.code ? ` [${p.code}]` : ''}`, exitCodeForStatus(status), p.code);
}
