import type { z } from 'zod';
import { ValidationError } from '../core/errors.js';

/**
 * Validates module input against its schema. The error names the field
 * (`count: must be at least 1`) so a caller knows what to fix; nothing has
 * been written when it is thrown.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.length ? issue.path.join('.') : '(input)';
  throw new ValidationError(`${what}.invalid_input`, `${field}: ${issue.message}`, { details: { field, issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) } });
}
