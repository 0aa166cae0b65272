import { SimDatacenter } from '../../providers/sim/sim.js';
import type { AnyRoute, ApiDeps } from '../route.js';

export function isSimApi(x: unknown): x is SimDatacenter {
  return x instanceof SimDatacenter;
}

/** The simulated datacenter's controls (src/providers/sim/controls.ts). */
export function simRoutes(_deps: ApiDeps, _sim: SimDatacenter): AnyRoute[] {
  return [];
}
