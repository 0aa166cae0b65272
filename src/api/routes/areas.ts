import type { AnyRoute, ApiDeps } from '../route.js';
import { ResourceStore } from '../../resources/store.js';
import { resourceRoutes } from './resources.js';
import { isStacksApi, stackRoutes } from './stacks.js';
import { serverRoutes } from './servers.js';
import { inventoryRoutes, isInventoryApi } from './inventory.js';
import { ipamRoutes, isIpamApi } from './ipam.js';
import { renderPlan } from '../../stacks/plan.js';
import { allocationRoutes, isAllocationsApi } from './allocations.js';
import { isSimApi, simRoutes } from './sim.js';
import { appRoutes, isAppsApi } from './apps.js';

/**
 * Route modules of the other areas, plugged in when the composition root
 * hands their module in `deps.areas` (keys: resources, stacks, inventory,
 * ipam, allocations, sim, apps; `renderPlan` optionally). An area that is absent has no routes.
 */
export function areaRoutes(deps: ApiDeps): AnyRoute[] {
  const areas = deps.areas ?? {};
  const out: AnyRoute[] = [];
  const resources = areas.resources instanceof ResourceStore ? areas.resources : undefined;
  if (resources) out.push(...resourceRoutes(deps, resources));
  if (isStacksApi(areas.stacks)) {
    out.push(...stackRoutes(deps, areas.stacks, typeof areas.renderPlan === 'function' ? (areas.renderPlan as (p: unknown) => string) : (p: unknown) => renderPlan(p as Parameters<typeof renderPlan>[0])));
    if (resources) out.push(...serverRoutes(deps, areas.stacks, resources));
  }
  if (isInventoryApi(areas.inventory)) out.push(...inventoryRoutes(deps, areas.inventory));
  if (isIpamApi(areas.ipam)) out.push(...ipamRoutes(deps, areas.ipam));
  if (isAllocationsApi(areas.allocations)) out.push(...allocationRoutes(deps, areas.allocations));
  if (isSimApi(areas.sim)) out.push(...simRoutes(deps, areas.sim));
  if (isAppsApi(areas.apps)) out.push(...appRoutes(deps, areas.apps));
  return out;
}
