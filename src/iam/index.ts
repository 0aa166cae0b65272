export * from './permissions.js';
export * from './policy.js';
export * from './service.js';
export { iamMigrations } from './migrations.js';
