/**
 * Typed errors with a stable `code`. Every layer throws these; the API maps
 * them to RFC 9457 problem+json in exactly one place, the CLI prints
 * `message` as one line. `retryable` tells the engine whether a step that
 * threw it may be tried again.
 */
export interface ErrorOptions {
  /** Extra, non-secret detail for the caller (field names, limits, ids). */
  details?: Record<string, unknown>;
  cause?: unknown;
  retryable?: boolean;
}

export class InfraflowError extends Error {
  /** Stable machine-readable code, e.g. `engine.workflow_not_found`. */
  readonly code: string;
  /** HTTP status the API answers with. */
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;
  readonly retryable: boolean;

  constructor(code: string, message: string, status = 500, opts: ErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = opts.details;
    this.retryable = opts.retryable ?? false;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, status: this.status, details: this.details, retryable: this.retryable };
  }
}

/** The request is malformed or fails its schema. Not retryable. */
export class ValidationError extends InfraflowError {
  constructor(code: string, message: string, opts: ErrorOptions = {}) {
    super(code, message, 400, opts);
  }
}

export class NotFoundError extends InfraflowError {
  constructor(code: string, message: string, opts: ErrorOptions = {}) {
    super(code, message, 404, opts);
  }
}

/** State conflict: wrong state for the operation, stale revision, duplicate. */
export class ConflictError extends InfraflowError {
  constructor(code: string, message: string, opts: ErrorOptions = {}) {
    super(code, message, 409, opts);
  }
}

/** A scarce resource is exhausted (addresses, VLANs, servers). */
export class ExhaustedError extends InfraflowError {
  constructor(code: string, message: string, opts: ErrorOptions = {}) {
    super(code, message, 409, opts);
  }
}

export class UnauthorizedError extends InfraflowError {
  constructor(message = 'authentication required: log in or pass a valid API token', opts: ErrorOptions = {}) {
    super('auth.unauthenticated', message, 401, opts);
  }
}

export class ForbiddenError extends InfraflowError {
  constructor(message: string, opts: ErrorOptions = {}) {
    super('auth.forbidden', message, 403, opts);
  }
}

/** A transient failure: the operation may succeed if tried again. */
export class TransientError extends InfraflowError {
  constructor(code: string, message: string, opts: ErrorOptions = {}) {
    super(code, message, 503, { ...opts, retryable: opts.retryable ?? true });
  }
}

export class TimeoutError extends InfraflowError {
  constructor(code: string, message: string, opts: ErrorOptions = {}) {
    super(code, message, 504, { retryable: true, ...opts });
  }
}

export function isInfraflowError(e: unknown): e is InfraflowError {
  return e instanceof InfraflowError;
}

/** Serializable form of any thrown value (for journals and events). */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof InfraflowError) {
    return { name: e.name, code: e.code, message: e.message, retryable: e.retryable, ...(e.details ? { details: e.details } : {}) };
  }
  if (e instanceof Error) {
    const retryable = (e as { retryable?: unknown }).retryable;
    return { name: e.name, code: (e as { code?: unknown }).code ? String((e as { code?: unknown }).code) : 'internal', message: e.message, retryable: retryable === undefined ? true : Boolean(retryable) };
  }
  return { name: 'Error', code: 'internal', message: String(e), retryable: true };
}

/** Rebuilds a thrown error from its serialized form, keeping code and retryability. */
export function deserializeError(s: SerializedError): InfraflowError {
  const e = new InfraflowError(s.code, s.message, 500, { retryable: s.retryable, ...(s.details ? { details: s.details } : {}) });
  Object.defineProperty(e, 'name', { value: s.name });
  return e;
}
