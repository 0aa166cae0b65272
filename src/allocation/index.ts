/**
 * Reservations (all-or-nothing allocation across servers, prefixes,
 * addresses, floating IPs, VLANs and DNS names, with a time to live) and
 * feasibility checks. Module API for workflow steps, the HTTP API and the CLI.
 */
export { Allocations, reserveStep, type AllocationsOptions } from './reservations.js';
export * from './schemas.js';
export { reserveWhenAvailable, reserveWorkflow, RESERVE_WORKFLOW, ReserveWhenAvailableInput, type ReserveWhenAvailableOptions } from './wait.js';
export { allocationMigrations } from './migrations.js';
export { createAllocationServices, type AllocationServices } from './services.js';
