import type { AreaMigration } from '../store/migrate.js';
import { allocationMigrations } from '../allocation/migrations.js';
import { inventoryMigrations } from '../inventory/migrations.js';
import { engineMigrations } from '../engine/schema.js';
import { ipamMigrations } from '../ipam/migrations.js';
import { iamMigrations } from '../iam/migrations.js';
import { resourceMigrations } from '../resources/migrations.js';
import { simMigrations } from '../providers/sim/migrations.js';
import { stackMigrations } from '../stacks/migrations.js';
import { serverMigrations } from '../servers/migrations.js';
import { fulfillmentMigrations } from '../fulfillment/migrations.js';
import { simClusterMigrations } from '../providers/sim/cluster.js';
import { gitopsMigrations } from '../gitops/migrations.js';
import { keyCheckMigrations } from './key-check.js';

/**
 * Every area's migrations, in one list. Each area owns its migration files
 * (`src/<area>/migrations.ts`) and a number range (see store/migrate.ts);
 * this composition root is the only place that knows them all.
 */
export const allMigrations: AreaMigration[] = [
  ...allocationMigrations,
  ...inventoryMigrations,
  ...engineMigrations,
  ...ipamMigrations,
  ...resourceMigrations,
  ...simMigrations,
  ...iamMigrations,
  ...stackMigrations,
  ...serverMigrations,
  ...simClusterMigrations,
  ...fulfillmentMigrations,
  ...gitopsMigrations,
  ...keyCheckMigrations,
];
