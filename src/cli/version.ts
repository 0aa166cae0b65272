import { readFileSync } from 'node:fs';

/** The package's version (package.json two levels above src/cli and dist/cli). */
export function cliVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
