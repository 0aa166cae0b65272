import { Allocations } from '../../allocation/reservations.js';
import type { AnyRoute, ApiDeps } from '../route.js';

export function isAllocationsApi(x: unknown): x is Allocations {
  return x instanceof Allocations;
}

/** Reservations and feasibility (src/allocation). */
export function allocationRoutes(_deps: ApiDeps, _alloc: Allocations): AnyRoute[] {
  return [];
}
