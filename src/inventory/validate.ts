import type { z } from 'zod';
import { zodError } from '../core/input.js';

/**
 * Validates module input against its schema. The error names the field
 * (`count: must be at least 1`) so a caller knows what to fix; nothing has
 * been written when it is thrown.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw zodError(`${what}.invalid_input`, r.error);
}
