/**
 * The database schema as one Kysely interface. Each area declares its own
 * tables by merging into `Database` from its own module:
 *
 *   declare module '../store/schema.js' {
 *     interface Database { engine_runs: RunTable }
 *   }
 *
 * so the store never imports an outer layer, and every query is typed.
 * Conventions: ids are text, timestamps are bigint milliseconds since the
 * epoch, JSON is text (parsed in code, identical on both dialects), booleans
 * are integer 0/1.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Database {}
