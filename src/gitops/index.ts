/**
 * GitOps: Git sources, applications that keep a path of a source applied as
 * stacks, sync waves and hooks, automated sync with prune and self-heal.
 * See docs/gitops.md.
 */
export { Gitops, type GitopsOptions, type AppDocument } from './service.js';
export { gitopsMigrations } from './migrations.js';
export { GitMirror, GitError, parseCredentials, safeUrl } from './git.js';
export { SYNC_WORKFLOW, type SyncInput } from './sync.js';
export * from './status.js';
export type { AppRow, AppStatus, SourceRow, SyncPolicy, SyncRow, ResourceStatus, OperationState } from './store.js';
