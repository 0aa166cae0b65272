import type { AnyRoute, ApiDeps } from '../route.js';
import { ResourceStore } from '../../resources/store.js';
import { resourceRoutes } from './resources.js';
import { isStacksApi, stackRoutes } from './stacks.js';
import { serverRoutes } from './servers.js';
import { Servers, isServersApi, type ServerStacks } from '../../servers/index.js';
import { inventoryRoutes, isInventoryApi } from './inventory.js';
import { ipamRoutes, isIpamApi } from './ipam.js';
import { renderPlan } from '../../stacks/plan.js';
import { allocationRoutes, isAllocationsApi } from './allocations.js';
import { isSimApi, simRoutes } from './sim.js';
import { fulfillmentRoutes, isFulfillmentApi } from './fulfillment.js';
import { gitopsRoutes, isGitopsApi } from './gitops.js';
import { appRoutes, isAppsApi } from './apps.js';

/**
 * Route modules of the other areas, plugged in when the composition root
 * hands their module in `deps.areas` (keys: resources, stacks, inventory,
 * ipam, allocations, sim, servers, fulfillment, gitops, apps; `renderPlan` optionally). An area that is absent has no routes.
 */
export function areaRoutes(deps: ApiDeps): AnyRoute[] {
  const areas = deps.areas ?? {};
  const out: AnyRoute[] = [];
  const resources = areas.resources instanceof ResourceStore ? areas.resources : undefined;
  if (resources) out.push(...resourceRoutes(deps, resources));
  if (isStacksApi(areas.stacks)) {
    out.push(...stackRoutes(deps, areas.stacks, typeof areas.renderPlan === 'function' ? (areas.renderPlan as (p: unknown) => string) : (p: unknown) => renderPlan(p as Parameters<typeof renderPlan>[0])));
    // the single-VM path: the composition root hands its module in; harnesses without one get one on the same engine
    const servers = isServersApi(areas.servers) ? areas.servers : resources && deps.engine ? new Servers({ store: deps.store, engine: deps.engine, stacks: areas.stacks as unknown as ServerStacks, resources }) : undefined;
    if (servers) out.push(...serverRoutes(deps, servers));
  }
  if (isInventoryApi(areas.inventory)) out.push(...inventoryRoutes(deps, areas.inventory));
  if (isIpamApi(areas.ipam)) out.push(...ipamRoutes(deps, areas.ipam));
  if (isAllocationsApi(areas.allocations)) out.push(...allocationRoutes(deps, areas.allocations));
  if (isSimApi(areas.sim)) out.push(...simRoutes(deps, areas.sim));
  if (isFulfillmentApi(areas.fulfillment)) out.push(...fulfillmentRoutes(deps, areas.fulfillment));
  if (isGitopsApi(areas.gitops)) out.push(...gitopsRoutes(deps, areas.gitops));
  if (isAppsApi(areas.apps)) out.push(...appRoutes(deps, areas.apps));
  return out;
}
