import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';

/** An RFC 9457 problem from the API, thrown by `call`. */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly errors: { field: string; message: string }[] = [],
    readonly requestId?: string,
  ) {
    super(detail);
  }
  /** The message for a form field (`name` matches `body.name` or `name`). */
  fieldError(name: string): string | undefined {
    return this.errors.find((e) => e.field === name || e.field === `body.${name}` || e.field.endsWith(`.${name}`))?.message;
  }
}

export function csrfToken(): string {
  return /(?:^|;\s*)infraflow_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '';
}

const csrf: Middleware = {
  onRequest({ request }) {
    if (request.method !== 'GET' && request.method !== 'HEAD') request.headers.set('x-csrf-token', decodeURIComponent(csrfToken()));
    return request;
  },
};

/** The typed client: paths, parameters and bodies from the server's OpenAPI document (generated at build). */
// no HTTP cache: a resource's ETag is its generation (the spec), so a revalidated copy could hide a new status
export const api = createClient<paths>({ baseUrl: '', fetch: (req: Request) => globalThis.fetch(new Request(req, { cache: 'no-store' })) });
api.use(csrf);

let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

/** Turns an openapi-fetch result into its data, or throws the problem. */
export async function call<T = any>(p: Promise<{ data?: unknown; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await p;
  if (response.ok) return data as T;
  const e = (error ?? {}) as { code?: string; detail?: string; title?: string; errors?: { field: string; message: string }[]; requestId?: string };
  if (response.status === 401 && onUnauthorized) onUnauthorized();
  throw new Problem(response.status, e.code ?? `http.${response.status}`, e.detail ?? e.title ?? response.statusText, e.errors ?? [], e.requestId);
}

/** For the few calls whose path is built at run time (same error handling). */
export async function raw<T = any>(method: string, url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = decodeURIComponent(csrfToken());
  const res = await fetch(url, { method, headers, cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const data = res.status === 204 ? undefined : await res.json().catch(() => undefined);
  return call<T>(Promise.resolve({ data: res.ok ? data : undefined, error: res.ok ? undefined : data, response: res }));
}
