/**
 * Database error classification shared by every area (one place, both
 * dialects): PostgreSQL SQLSTATE codes, better-sqlite3 result codes.
 */

/** A unique or primary-key constraint refused the write (PostgreSQL 23505; SQLite SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY). */
export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  const code = err?.code;
  if (code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return true;
  // errors re-thrown without their code still carry the database's wording
  return typeof err?.message === 'string' && /UNIQUE constraint failed|duplicate key value violates unique constraint/.test(err.message);
}
