import { ProviderError } from '../../resources/errors.js';
import type { ProviderErrorReason } from '../../resources/types.js';

/**
 * A small JSON-over-HTTP helper for the real providers (PowerDNS, Kea's
 * control agent, Redfish): per-call timeout combined with the caller's
 * AbortSignal, and every failure turned into a classified ProviderError
 * (connection refused → BackendUnavailable, no answer in time → Timeout,
 * 5xx → BackendUnavailable, 401/403 → non-retryable BackendUnavailable
 * naming the credentials). Secrets (API keys, passwords) travel only in
 * headers and never appear in error messages.
 */
export interface HttpOptions {
  baseUrl: string;
  /** Extra headers on every request (API key, basic auth). */
  headers?: Record<string, string>;
  /** Per-call timeout. Default 15 s. */
  timeoutMs?: number;
  /** Name of the backend in messages ("PowerDNS at http://…"). */
  backend: string;
  /**
   * Retry a request once when a reused keep-alive connection turns out to be
   * closed by the server (servers that drop idle connections, like Kea's
   * control agent). Only for backends whose calls are safe to repeat.
   */
  retryOnReset?: boolean;
}

export interface HttpResponse<T = unknown> { status: number; body: T; headers: Headers }

export class HttpClient {
  readonly opts: HttpOptions;
  constructor(opts: HttpOptions) {
    this.opts = { ...opts, baseUrl: opts.baseUrl.replace(/\/+$/, '') };
  }

  /** Sends a request; answers any status (callers map 4xx themselves), throws only for transport failures, 5xx and auth failures. */
  async request<T = unknown>(method: string, path: string, body?: unknown, signal?: AbortSignal, extraHeaders?: Record<string, string>): Promise<HttpResponse<T>> {
    const timeoutMs = this.opts.timeoutMs ?? 15_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const sig = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const where = `${this.opts.backend} (${method} ${path})`;
    let res: Response;
    const send = () => fetch(this.opts.baseUrl + path, {
      method,
      headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...this.opts.headers, ...extraHeaders },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      signal: sig,
    });
    try {
      try {
        res = await send();
      } catch (e) {
        const code = (e as { cause?: { code?: string } })?.cause?.code;
        if (!this.opts.retryOnReset || sig.aborted || (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET')) throw e;
        res = await send();
      }
    } catch (e) {
      if (signal?.aborted) throw new ProviderError('Timeout', `${where}: cancelled by the caller`, { retryable: false, cause: e });
      if (timeout.aborted) throw new ProviderError('Timeout', `${where}: no answer within ${timeoutMs} ms`, { cause: e });
      throw new ProviderError('BackendUnavailable', `${where}: ${describeNetError(e)}`, { cause: e });
    }
    const text = await res.text().catch(() => '');
    let parsed: unknown = text;
    if (text && (res.headers.get('content-type') ?? '').includes('json')) {
      try { parsed = JSON.parse(text); } catch { /* keep text */ }
    }
    if (res.status === 401 || res.status === 403) {
      throw new ProviderError('BackendUnavailable', `${where}: the backend refused the credentials (HTTP ${res.status}); fix the API key or password in the provider configuration`, { retryable: false, details: { status: res.status, auth: true } });
    }
    if (res.status >= 500) {
      throw new ProviderError(res.status === 503 ? 'BackendUnavailable' : 'BackendUnavailable', `${where}: HTTP ${res.status} ${errorText(parsed)}`, { details: { status: res.status } });
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }
}

/** The backend's own error message from a JSON or text body. */
export function errorText(body: unknown): string {
  if (typeof body === 'string') return body.slice(0, 300);
  if (body && typeof body === 'object') {
    const b = body as Record<string, any>;
    const m = b.error ?? b.text ?? b.message ?? b['error']?.message;
    if (typeof m === 'string') return m;
    if (m && typeof m === 'object' && typeof m.message === 'string') return m.message;
    return JSON.stringify(body).slice(0, 300);
  }
  return '';
}

export function describeNetError(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused (is the server running and listening?)';
  if (cause?.code) return `${cause.code}${cause.message ? ` ${cause.message}` : ''}`;
  return e instanceof Error ? e.message : String(e);
}

/** Maps a 4xx the caller did not expect to a ProviderError. */
export function httpError(reason: ProviderErrorReason, where: string, res: HttpResponse): ProviderError {
  return new ProviderError(reason, `${where}: HTTP ${res.status} ${errorText(res.body)}`, { details: { status: res.status } });
}
