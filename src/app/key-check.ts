import { col, type AreaMigration } from '../store/migrate.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../core/clock.js';
import { InfraflowError } from '../core/errors.js';
import type { SecretBox } from '../core/secrets.js';

/**
 * A check value of the secret key, stored in the database by the first
 * process that starts on it. Every process sharing the database (several
 * processes on PostgreSQL) must seal and open secrets with the same key; one
 * whose key cannot open the check value refuses to start, instead of failing
 * later on the first secret it reads (`secrets.decrypt_failed`).
 */
export interface KeyCheckTable {
  id: string;
  /** `infraflow-key-check`, sealed with the key. */
  sealed: string;
  created_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    app_key_check: KeyCheckTable;
  }
}

export const keyCheckMigrations: AreaMigration[] = [
  {
    name: '0900_app_key_check',
    async up(db) {
      await db.schema.createTable('app_key_check')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('sealed', col.text, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .execute();
    },
  },
];

const PLAIN = 'infraflow-key-check';
const AAD = 'app_key_check';

/**
 * Stores the check value on first start (the first insert wins, whatever
 * the concurrency) and verifies this process's key against the stored one.
 */
export async function verifySecretKey(store: Store, box: SecretBox, clock: Clock): Promise<void> {
  await store.db.insertInto('app_key_check').values({ id: 'secret-key', sealed: box.seal(PLAIN, AAD), created_at: clock.now() })
    .onConflict((oc) => oc.column('id').doNothing()).execute();
  const row = await store.db.selectFrom('app_key_check').select('sealed').where('id', '=', 'secret-key').executeTakeFirstOrThrow();
  let ok: boolean;
  try {
    ok = box.open(row.sealed, AAD) === PLAIN;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new InfraflowError('config.secret_key_mismatch', 'this process\'s secret key cannot open the secrets in this database (another process created them with a different key): give every process the same INFRAFLOW_SECRET_KEY (see docs/configuration.md)', 500);
  }
}
