import type { AnyRoute, ApiDeps } from '../route.js';

/** Route modules of the other areas (resources, inventory, IPAM, stacks, servers), added as those areas land. */
export function areaRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
