/**
 * Inventory: datacenters, racks, server types, bare-metal servers and their
 * lifecycle, switches and cabling, hubs, hot pools, server allocation.
 * Module API used by workflow steps, the HTTP API, the CLI and providers.
 */
export { Inventory, matchLabels, type InventoryOptions, type CapacityListener, type EventSink } from './inventory.js';
export * from './schemas.js';
export { TRANSITIONS, canTransition, PENDING_READY } from './lifecycle.js';
export { inventoryMigrations } from './migrations.js';
export { importInventory, exportInventory, InventoryDocSchema, type InventoryDoc, type ImportSummary } from './yaml.js';
export {
  SimulatedDiscovery, reconcileHotPool, hotPoolStatus, hotPoolWorkflow, hotPoolTickWorkflow, HotPoolReconcileInput,
  type HardwareDiscovery, type DiscoveredServer, type InspectionResult, type HotPoolStatus,
} from './hotpool.js';
export { allocateServersWhenAvailable, connectCapacitySignals, capacitySignal, CAPACITY_SIGNAL, type WaitForServersOptions } from './wait.js';
export { withTx, isRetryableDbError, RaceLost } from './tx.js';
