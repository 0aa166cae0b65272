import { z } from 'zod';
import { QuotaSchema } from './catalogue.js';
import { FaultConfig } from './faults.js';
import type { SimDatacenter } from './sim.js';

/**
 * Schemas of the simulator's controls, for the HTTP API and the CLI (one
 * schema: validation, types, OpenAPI), and one function that applies a drift
 * action. The API layer only validates and calls these.
 */
export const SpeedBody = z.object({ speed: z.number().positive().max(1_000_000).describe('simulated time runs this many times faster than real time') });
export const SeedBody = z.object({ seed: z.number().int() });
export const FaultsBody = FaultConfig;
export const QuotaBody = QuotaSchema.partial();

export const DriftAction = z.discriminatedUnion('action', [
  z.object({ action: z.literal('delete').describe('the object vanishes from the backend') }),
  z.object({ action: z.literal('modify'), patch: z.record(z.string(), z.unknown()).describe('fields of the actual configuration to overwrite, e.g. { "rules": [] }') }),
  z.object({ action: z.literal('power'), power: z.enum(['on', 'off']) }),
  z.object({ action: z.literal('clusterHealth'), notReadyNodes: z.union([z.number().int().min(0), z.array(z.string())]).optional(), degradedOperators: z.array(z.string()).optional() }),
  z.object({ action: z.literal('load'), requestsPerSecond: z.number().min(0) }),
]);
export type DriftAction = z.infer<typeof DriftAction>;

/** Applies a drift or health action to a simulator object (by provider id). */
export async function applyDrift(sim: SimDatacenter, id: string, a: DriftAction): Promise<void> {
  switch (a.action) {
    case 'delete':
      return sim.driftDelete(id);
    case 'modify':
      await sim.driftModify(id, a.patch);
      return;
    case 'power':
      await sim.driftPower(id, a.power);
      return;
    case 'clusterHealth':
      await sim.setClusterHealth(id, { ...(a.notReadyNodes !== undefined ? { notReadyNodes: a.notReadyNodes } : {}), ...(a.degradedOperators ? { degradedOperators: a.degradedOperators } : {}) });
      return;
    case 'load':
      return sim.setLoad(id, a.requestsPerSecond);
  }
}
