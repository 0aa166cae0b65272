import { describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { isUniqueViolation } from './errors.js';
import { DIALECTS, openTestStore } from '../../test/support/dialects.js';
import { sql } from 'kysely';

describe.each(DIALECTS)('isUniqueViolation on %s', (dialect) => {
  it('recognises a real unique and primary-key violation, and nothing else', async () => {
    const t = await openTestStore(dialect, { migrations: [] });
    const store: Store = t.store;
    try {
      await sql`create table uv_test (id text primary key, name text not null unique, n integer not null check (n >= 0))`.execute(store.db);
      await sql`insert into uv_test (id, name, n) values ('a', 'x', 1)`.execute(store.db);
      const err = async (q: Promise<unknown>) => q.then(() => undefined, (e: unknown) => e);
      expect(isUniqueViolation(await err(sql`insert into uv_test (id, name, n) values ('a', 'y', 1)`.execute(store.db)))).toBe(true);
      expect(isUniqueViolation(await err(sql`insert into uv_test (id, name, n) values ('b', 'x', 1)`.execute(store.db)))).toBe(true);
      const check = await err(sql`insert into uv_test (id, name, n) values ('c', 'z', -1)`.execute(store.db));
      expect(check).toBeDefined();
      expect(isUniqueViolation(check)).toBe(false);
      expect(isUniqueViolation(new Error('something else'))).toBe(false);
      expect(isUniqueViolation(null)).toBe(false);
    } finally {
      await t.cleanup();
    }
  });
});
