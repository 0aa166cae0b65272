import { hash, verify } from '@node-rs/argon2';
import { ValidationError } from '../core/errors.js';

/** argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane). */
const OPTIONS = { algorithm: 2 /* Algorithm.Argon2id */, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const MIN_PASSWORD_LENGTH = 12;

export function checkPasswordStrength(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new ValidationError('iam.weak_password', `password: must be at least ${MIN_PASSWORD_LENGTH} characters long`, { details: { field: 'password', minLength: MIN_PASSWORD_LENGTH } });
  }
  if (password.length > 1024) throw new ValidationError('iam.weak_password', 'password: must be at most 1024 characters long', { details: { field: 'password' } });
}

export async function hashPassword(password: string): Promise<string> {
  return hash(password, OPTIONS);
}

let dummy: Promise<string> | undefined;

/** Verifies; with no stored hash, still spends the same time (no user enumeration by timing). */
export async function verifyPassword(stored: string | null, password: string): Promise<boolean> {
  if (!stored) {
    dummy ??= hash('infraflow-dummy-password', OPTIONS);
    await verify(await dummy, password).catch(() => false);
    return false;
  }
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}
