import { z } from 'zod';
import { ValidationError } from '../../core/errors.js';
import { ProviderError } from '../../resources/errors.js';
import { BEHAVIOURS } from './behaviours.js';
import { QuotaPatchSchema } from './catalogue.js';
import { FaultRule } from './faults.js';
import type { SimDatacenter } from './sim.js';

/**
 * Schemas of the simulator's controls, for the HTTP API and the CLI (one
 * schema: validation, types, OpenAPI), and one function that applies a drift
 * action. The API layer only validates and calls these.
 */
export const SpeedBody = z.strictObject({ speed: z.number().positive().max(1_000_000).describe('simulated time runs this many times faster than real time') });
export const SeedBody = z.strictObject({ seed: z.number().int().describe('seed of latency draws and fault decisions (credentials are random, never seeded)') });

/** Whether a fault rule's kind pattern (`*`, `compute/*`, `compute/Server`) can match a kind the simulator implements. */
export function kindPatternMatches(pattern: string): boolean {
  if (pattern === '*') return true;
  const kinds = Object.keys(BEHAVIOURS);
  if (pattern.endsWith('/*')) return kinds.some((k) => k.startsWith(pattern.slice(0, -1)));
  return kinds.includes(pattern);
}

/**
 * The whole fault configuration (PUT replaces it). A rule whose `kind`
 * matches nothing the simulator implements is refused (a typo would
 * otherwise turn the rule silently off).
 */
export const FaultsBody = z.strictObject({ rules: z.array(FaultRule).max(200).describe('tried in order; the first rule matching kind and op decides') }).superRefine((v, ctx) => {
  v.rules.forEach((r, i) => {
    if (!kindPatternMatches(r.kind)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'kind'], message: `"${r.kind}" matches no kind the simulator implements; use *, <area>/* or one of ${Object.keys(BEHAVIOURS).join(', ')}` });
  });
});
export type FaultsBody = z.infer<typeof FaultsBody>;

/** A partial quota: only the fields given change (`SimDatacenter.setQuota` merges it with the project's quota). */
export const QuotaBody = QuotaPatchSchema;
export type QuotaBody = z.infer<typeof QuotaBody>;

export const DriftAction = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('delete').describe('the object vanishes from the backend') }),
  z.strictObject({ action: z.literal('modify'), patch: z.record(z.string(), z.unknown()).describe('fields of the actual configuration to overwrite, e.g. { "rules": [] }') }),
  z.strictObject({ action: z.literal('power'), power: z.enum(['on', 'off']) }),
  z.strictObject({ action: z.literal('clusterHealth'), notReadyNodes: z.union([z.number().int().min(0), z.array(z.string().max(253)).max(1000)]).optional(), degradedOperators: z.array(z.string().max(253)).max(100).optional() }),
  z.strictObject({ action: z.literal('load'), requestsPerSecond: z.number().min(0).max(1e9) }),
]);
export type DriftAction = z.infer<typeof DriftAction>;

const POWERED = ['compute/Server', 'metal/Instance'];

/** Applies a drift or health action to a simulator object (by provider id). */
export async function applyDrift(sim: SimDatacenter, id: string, a: DriftAction): Promise<void> {
  const o = await sim.getObject(id);
  if (!o || o.phase === 'deleted') throw new ProviderError('NotFound', `object ${id} does not exist in the simulator`);
  switch (a.action) {
    case 'delete':
      return sim.driftDelete(id);
    case 'modify':
      await sim.driftModify(id, a.patch);
      return;
    case 'power':
      if (!POWERED.includes(o.kind)) throw new ValidationError('sim.no_power', `${id} is a ${o.kind}; only ${POWERED.join(' and ')} have power`, { details: { field: 'power' } });
      await sim.driftPower(id, a.power);
      return;
    case 'clusterHealth': {
      if (typeof a.notReadyNodes === 'number' && o.kind === 'container/Cluster') {
        const workers = ((o.state.nodes ?? []) as { role: string }[]).filter((n) => n.role === 'worker').length;
        if (a.notReadyNodes > workers) throw new ValidationError('sim.invalid_health', `notReadyNodes: cluster ${o.name} has ${workers} worker nodes, so at most ${workers} can be NotReady`, { details: { field: 'notReadyNodes' } });
      }
      await sim.setClusterHealth(id, { ...(a.notReadyNodes !== undefined ? { notReadyNodes: a.notReadyNodes } : {}), ...(a.degradedOperators ? { degradedOperators: a.degradedOperators } : {}) });
      return;
    }
    case 'load':
      return sim.setLoad(id, a.requestsPerSecond);
  }
}
