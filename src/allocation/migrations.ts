import { col, type AreaMigration } from '../store/migrate.js';
import './tables.js';

export const allocationMigrations: AreaMigration[] = [
  {
    name: '0350_allocation_initial',
    async up(db) {
      await db.schema.createTable('alloc_reservations')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('status', col.text, (c) => c.notNull())
        .addColumn('holder', col.text, (c) => c.notNull())
        .addColumn('idem_key', col.text)
        .addColumn('request', col.json, (c) => c.notNull())
        .addColumn('expires_at', col.ts, (c) => c.notNull())
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addColumn('updated_at', col.ts, (c) => c.notNull())
        .addColumn('reason', col.text, (c) => c.notNull().defaultTo(''))
        .execute();
      await db.schema.createIndex('alloc_reservations_key').on('alloc_reservations').column('idem_key').unique().execute();
      await db.schema.createIndex('alloc_reservations_exp').on('alloc_reservations').columns(['status', 'expires_at']).execute();
      await db.schema.createIndex('alloc_reservations_holder').on('alloc_reservations').column('holder').execute();
      await db.schema.createTable('alloc_dns_names')
        .addColumn('id', col.id, (c) => c.primaryKey())
        .addColumn('zone', col.text, (c) => c.notNull())
        .addColumn('name', col.text, (c) => c.notNull())
        .addColumn('holder', col.text, (c) => c.notNull())
        .addColumn('reservation_id', col.text)
        .addColumn('expires_at', col.ts)
        .addColumn('created_at', col.ts, (c) => c.notNull())
        .addUniqueConstraint('alloc_dns_names_uniq', ['zone', 'name'])
        .execute();
      await db.schema.createIndex('alloc_dns_names_resv').on('alloc_dns_names').column('reservation_id').execute();
      await db.schema.createIndex('alloc_dns_names_exp').on('alloc_dns_names').column('expires_at').execute();
    },
  },
];
