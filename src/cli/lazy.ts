import { createRequire } from 'node:module';

/**
 * Libraries the CLI loads only when a command needs them, synchronously (a
 * `get` printing a table never loads the YAML library, `--version` loads
 * nothing): keeps `infraflow` starting in a few tens of milliseconds.
 */
const require = createRequire(import.meta.url);
let yamlLib: typeof import('yaml') | undefined;

/** The `yaml` library (parse, stringify). */
export function yaml(): typeof import('yaml') {
  return (yamlLib ??= require('yaml') as typeof import('yaml'));
}
