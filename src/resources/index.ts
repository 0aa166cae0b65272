/**
 * Resources: the resource model, kind schemas, the resource store, the
 * provider registry and the workflow steps that drive resources.
 *
 * Store (outside workflows):
 *   const resources = new ResourceStore(store, { clock, engine, secretKey })
 *   resources.create({ kind, name, project, spec, labels?, owner?, id? }) → Resource   (validates spec; 409 resources.name_taken)
 *   resources.get(id) / find(id) / getByName(project, kind, name)
 *   resources.list({ project?, kind?, owner?, phase?, labels?, namePrefix?, includeDeleted?, after?, limit? }) → { items, nextCursor? }
 *   resources.updateSpec(id, spec, { expectedGeneration?, labels? }) → Resource       (generation + 1)
 *   resources.updateStatus(id, { phase?, conditions?, outputs?, externalId?, observedGeneration?, secrets?, appliedSpec?, message? })
 *   resources.delete(id)  (marks deleted, frees the name; no provider call)
 *   resources.getSecrets(id) → Record<string,string>
 *   resources.events(id, filter?, engine?) → EngineEvent[]   (types: resource.created|spec_updated|phase_changed|condition_changed|deleted)
 *
 * Registry:
 *   const registry = new ProviderRegistry({ 'dns/*': 'powerdns', '*': 'sim' }).register(simProvider)
 *   registry.handler(kind) → KindHandler
 *
 * Workflow steps (inside a workflow; deps = { resources, registry }):
 *   provisionResource(ctx, deps, idOrResource, opts?) → Promise<Resource>       steps create:<id>, poll ready:<id>
 *   startResource(ctx, deps, id, opts?) → StartedResource; awaitResource(ctx, deps, started, opts?) → Resource
 *     (the two halves of provisionResource: start several, then await them, for parallel creation)
 *   updateResource(ctx, deps, id, opts?) → Promise<{ action: 'none'|'update'|'replace', changed, resource }>
 *   deleteResource(ctx, deps, id, opts?) → Promise<void>                        steps delete:<id>, poll gone:<id>
 *   observeResource(ctx, deps, id, checkName) → Promise<ObserveResult>          step observe:<id>:<checkName>
 *   opts: { timeoutMs?, pollIntervalMs?, retry?, callTimeoutMs?, stepSuffix? }
 *   Failures throw ProviderError (code provider.<reason>, details.reason e.g. 'NoValidHost'); the resource ends `failed`
 *   with a condition Ready=False reason=<reason>.
 *
 * Contract suite (for provider tests): runProviderContract(name, makeHarness, { describe, it, beforeAll, afterAll }, { kinds? })
 *   — see src/resources/contract.ts and docs/providers.md.
 *
 * Non-workflow helpers: planChange(handler, previous, next) → { changed, replaceFields }, observeNow(deps, id),
 * parseSpec(kind, spec), KINDS (schemas + replaceOnChange per kind), diffSpecs, ProviderError, reasonOf.
 */
export * from './types.js';
export * from './errors.js';
export * from './kinds.js';
export * from './store.js';
export * from './registry.js';
export * from './steps.js';
export { resourceMigrations } from './migrations.js';
export { resourceWorkflows, startResourceRun, assertUnowned, RESOURCE_QUEUE, RESOURCE_WORKFLOWS, type ResourceAction } from './lifecycle.js';
export { runProviderContract, assertClassified, ContractViolation, type ContractHarness, type KindSample, type TestApi } from './contract.js';
