import type { AnyRoute, ApiDeps } from '../route.js';
import { ResourceStore } from '../../resources/store.js';
import { resourceRoutes } from './resources.js';

/**
 * Route modules of the other areas, plugged in when the composition root
 * hands their module in `deps.areas` (keys: resources, stacks, inventory,
 * ipam). An area that is absent simply has no routes.
 */
export function areaRoutes(deps: ApiDeps): AnyRoute[] {
  const areas = deps.areas ?? {};
  const out: AnyRoute[] = [];
  if (areas.resources instanceof ResourceStore) out.push(...resourceRoutes(deps, areas.resources));
  return out;
}
