/**
 * CLI exit codes (documented in docs/cli.md):
 *   0 success · 1 the operation ran and failed (a run ended failed or cancelled)
 *   2 usage or invalid input (400) · 3 not logged in or not allowed (401/403)
 *   4 not found (404) · 5 conflict or stale (409/412) · 6 server unavailable, rate limited or internal error
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, auth: 3, notFound: 4, conflict: 5, unavailable: 6 } as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.failed, readonly code?: string) {
    super(message);
    this.name = 'CliError';
  }
}

export function exitCodeForStatus(status: number): number {
  if (status === 400 || status === 413 || status === 415 || status === 422) return EXIT.usage;
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 409 || status === 412) return EXIT.conflict;
  return EXIT.unavailable;
}
