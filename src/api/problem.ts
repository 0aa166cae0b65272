import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { ZodError } from 'zod';
import { isInfraflowError } from '../core/errors.js';

/**
 * RFC 9457 problem details. This file is the ONE place where errors become
 * HTTP: typed errors from src/core/errors.ts keep their code and status,
 * schema failures name the field, Fastify's own 4xx keep their status, and
 * anything else is a 500 whose body says only where to look (the request id)
 * — never a stack trace or an internal message.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  requestId?: string;
  /** Field-level problems of a rejected request. */
  errors?: { field: string; message: string }[];
  details?: Record<string, unknown>;
}

export const PROBLEM_BASE = 'https://infraflow.dev/problems/';

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable',
  409: 'Conflict', 410: 'Gone', 412: 'Precondition Failed', 413: 'Content Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content',
  428: 'Precondition Required', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** Fastify's own error codes, as ours. */
const FASTIFY_CODES: Record<string, { code: string; detail?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'api.body_too_large', detail: 'the request body is larger than the server accepts (http.bodyLimitBytes); send a smaller document' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'api.unsupported_media_type', detail: 'send the body as application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'api.invalid_request', detail: 'the Content-Length header does not match the body' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'api.invalid_request', detail: 'the body is empty but Content-Type is application/json; send a JSON document or no Content-Type' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'api.invalid_json', detail: 'the body is not valid JSON' },
  FST_ERR_BAD_URL: { code: 'api.invalid_request', detail: 'the URL is malformed' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'api.invalid_request' },
};

/** Control, format (bidi, zero-width) and separator characters, escaped wherever a path or key is shown. */
const UNSAFE = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;
const escapeUnsafe = (s: string) => s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

function fieldOf(path: string, context?: string): string {
  const p = path.replace(/^\//, '').replace(/\//g, '.');
  return escapeUnsafe([context, p].filter(Boolean).join('.') || (context ?? '(root)'));
}

/** A schema failure's message, never echoing the value: unknown keys named (escaped), record keys explained. */
function validationMessage(v: { keyword?: string; message?: string; params?: Record<string, unknown> }): string {
  const params = v.params ?? {};
  if (v.keyword === 'invalid_key' && Array.isArray(params.issues) && typeof (params.issues[0] as { message?: unknown })?.message === 'string') return `invalid key: ${(params.issues[0] as { message: string }).message}`;
  if (v.keyword === 'unrecognized_keys' && Array.isArray(params.keys)) return `unknown field${params.keys.length > 1 ? 's' : ''} ${params.keys.map((k) => escapeUnsafe(JSON.stringify(String(k).slice(0, 64)))).join(', ')}`;
  return escapeUnsafe(v.message ?? 'invalid');
}

export function problemFor(err: unknown, req: FastifyRequest): Problem {
  const base = { instance: req.url.split('?')[0]!, requestId: String(req.id) };
  if (isInfraflowError(err)) {
    const status = err.status >= 400 && err.status < 600 ? err.status : 500;
    const field = typeof err.details?.field === 'string' ? err.details.field : undefined;
    const listed = Array.isArray(err.details?.errors) ? (err.details.errors as unknown[]).filter((e): e is { field: string; message: string } => typeof (e as { field?: unknown })?.field === 'string' && typeof (e as { message?: unknown }).message === 'string') : [];
    const details = err.details ? Object.fromEntries(Object.entries(err.details).filter(([k]) => k !== 'cause' && k !== 'stack' && k !== 'errors')) : undefined;
    const errors = listed.length ? listed.map((e) => ({ field: e.field, message: e.message })) : field ? [{ field, message: err.message }] : undefined;
    return {
      type: PROBLEM_BASE + err.code, title: TITLES[status] ?? 'Error', status, detail: err.message, code: err.code, ...base,
      ...(errors ? { errors } : {}),
      ...(details && Object.keys(details).length ? { details } : {}),
    };
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const context = (err as FastifyError).validationContext;
    const errors = err.validation.map((v) => ({ field: fieldOf(v.instancePath, context), message: validationMessage(v as never) }));
    return {
      type: PROBLEM_BASE + 'api.invalid_request', title: TITLES[400]!, status: 400, code: 'api.invalid_request', ...base,
      detail: errors.map((e) => `${e.field}: ${e.message}`).join('; ').slice(0, 1000), errors,
    };
  }
  if (err instanceof ZodError) {
    const errors = err.issues.map((i) => ({ field: i.path.join('.') || '(root)', message: i.message }));
    return { type: PROBLEM_BASE + 'api.invalid_request', title: TITLES[400]!, status: 400, code: 'api.invalid_request', ...base, detail: errors.map((e) => `${e.field}: ${e.message}`).join('; ').slice(0, 1000), errors };
  }
  const fe = err as Partial<FastifyError> | undefined;
  if (fe && typeof fe === 'object' && !isResponseSerializationError(fe as any)) {
    const status = typeof fe.statusCode === 'number' ? fe.statusCode : 0;
    if (status >= 400 && status < 500) {
      const known = fe.code ? FASTIFY_CODES[fe.code] : undefined;
      const code = known?.code ?? (status === 429 ? 'api.rate_limited' : status === 413 ? 'api.body_too_large' : status === 415 ? 'api.unsupported_media_type' : 'api.invalid_request');
      // Fastify's 4xx messages describe the request, not the server; keep them short
      const detail = known?.detail ?? (typeof fe.message === 'string' ? fe.message.slice(0, 300) : 'the request was rejected');
      return { type: PROBLEM_BASE + code, title: TITLES[status] ?? 'Error', status, code, detail, ...base };
    }
  }
  return {
    type: PROBLEM_BASE + 'internal', title: TITLES[500]!, status: 500, code: 'internal', ...base,
    detail: `the server failed while handling this request; report request id ${String(req.id)} to the operator (it is in the server log)`,
  };
}

export function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type('application/problem+json').send(problem);
}

export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): void {
  sendProblem(reply, {
    type: PROBLEM_BASE + 'api.route_not_found', title: TITLES[404]!, status: 404, code: 'api.route_not_found',
    detail: `no route ${req.method} ${req.url.split('?')[0]}; see /openapi.json for the API`, instance: req.url.split('?')[0]!, requestId: String(req.id),
  });
}
