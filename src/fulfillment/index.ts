/**
 * Cluster fulfillment: templates, hubs, host pools, cluster orders and the
 * staged durable workflows that build, scale and delete clusters on bare
 * metal (and VMs). See docs/fulfillment.md.
 */
export { Fulfillment, DEFAULT_CONFIG, CREATE_WORKFLOW, SCALE_WORKFLOW, DELETE_WORKFLOW, type FulfillmentConfig, type FulfillmentOptions, type OrderPlan, type PlannedNodeSet } from './service.js';
export { fulfillmentWorkflows, createWorkflow, scaleWorkflow, deleteWorkflow, type Agent } from './workflows.js';
export { fulfillmentMigrations } from './migrations.js';
export { GitOps, type GitOpsOptions } from './git.js';
export { BackendError, type ClusterBackend, type InstallStatus, type ValidationResult, type SwitchPortRef } from './backend.js';
export { parseTemplate, resolveParameters, render } from './templates.js';
export * from './schemas.js';
