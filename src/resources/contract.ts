import { isInfraflowError } from '../core/errors.js';
import { RETRYABLE_REASONS, reasonOf } from './errors.js';
import { diffSpecs } from './kinds.js';
import type { KindHandler, Provider, ProviderCallContext, ReadResult } from './types.js';

/**
 * The provider contract suite: the behaviour docs/providers.md promises,
 * checked against any provider. Test-framework agnostic — pass your
 * framework's `describe`/`it`/`beforeAll`/`afterAll`:
 *
 *   runProviderContract('sim on sqlite', async () => harness, { describe, it, beforeAll, afterAll })
 *
 * For each kind sample it checks: create → read until ready → in-place update
 * (or a declared replace) → delete → read absent; the same idempotency key
 * twice gives one object; deleting an absent object succeeds; an invalid spec
 * is refused with InvalidSpec (not retryable); every error a call throws is
 * classified (a known reason and a retryable flag).
 */
export interface KindSample {
  kind: string;
  /** A valid spec (prerequisites already exist). */
  spec: Record<string, unknown>;
  /** A spec that differs only in fields updatable in place. */
  update?: Record<string, unknown>;
  /** A spec that changes a replace-on-change field. */
  replace?: Record<string, unknown>;
  /** A spec the kind must refuse. */
  invalid: unknown;
}

export interface ContractHarness {
  provider: Provider;
  /** Lets time pass between reads (a manual clock advances; a real backend sleeps). */
  tick(): Promise<void>;
  /** Samples to run; called once after setup. */
  samples(): Promise<KindSample[]>;
  /** Reads before giving up waiting for a state. Default 500. */
  maxReads?: number;
  /** Project used for calls. Default `contract`. */
  project?: string;
  cleanup?(): Promise<void>;
}

export interface TestApi {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>, timeout?: number): void;
  beforeAll(fn: () => Promise<void>, timeout?: number): void;
  afterAll(fn: () => Promise<void>, timeout?: number): void;
}

export class ContractViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContractViolation';
  }
}

function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new ContractViolation(message);
}

/** Asserts an error a provider threw is classified: a known reason and a boolean retryable flag. */
export function assertClassified(e: unknown, what: string): void {
  const reason = reasonOf(e);
  check(reason !== undefined, `${what}: threw an unclassified error (no provider reason): ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  check(isInfraflowError(e) && typeof e.retryable === 'boolean', `${what}: the error has no retryable flag`);
  check(reason in RETRYABLE_REASONS, `${what}: unknown reason ${reason}`);
}

let counter = 0;

export function runProviderContract(name: string, makeHarness: () => Promise<ContractHarness>, t: TestApi, opts: { kinds?: string[] } = {}): void {
  t.describe(`provider contract: ${name}`, () => {
    let h: ContractHarness;
    let samples: KindSample[] = [];
    const run = `c${Date.now().toString(36)}${(counter++).toString(36)}`;
    const ctx = (key: string, resourceName = key): ProviderCallContext => ({ idempotencyKey: `${run}:${key}`, project: h.project ?? 'contract', resourceId: `res_${run}_${key}`, resourceName });
    const rctx = () => ({ project: h.project ?? 'contract', resourceId: 'res_read', resourceName: 'read' });

    async function until(handler: KindHandler, id: string, states: ReadResult['state'][], what: string): Promise<ReadResult> {
      let r: ReadResult | undefined;
      for (let i = 0; i < (h.maxReads ?? 500); i++) {
        try {
          r = await handler.read(id, rctx());
        } catch (e) {
          assertClassified(e, `${what}: read`);
          if (!(isInfraflowError(e) && e.retryable)) throw e;
        }
        if (r && states.includes(r.state)) return r;
        check(!r || r.state !== 'failed' || states.includes('failed'), `${what}: reached failed (${r?.failureReason}: ${r?.message}) while waiting for ${states.join('/')}`);
        await h.tick();
      }
      throw new ContractViolation(`${what}: still ${r?.state} after ${h.maxReads ?? 500} reads, expected ${states.join('/')}`);
    }

    async function settleCall<T>(fn: () => Promise<T>, what: string): Promise<T> {
      // Retryable errors are retried (as the engine would); others must be classified.
      for (let i = 0; i < 20; i++) {
        try {
          return await fn();
        } catch (e) {
          assertClassified(e, what);
          if (!(isInfraflowError(e) && e.retryable)) throw e;
          await h.tick();
        }
      }
      throw new ContractViolation(`${what}: still failing with retryable errors after 20 tries`);
    }

    t.beforeAll(async () => {
      h = await makeHarness();
      samples = await h.samples();
    }, 600_000);
    t.afterAll(async () => {
      await h?.cleanup?.();
    }, 120_000);

    t.it('declares a handler with a schema for every kind it lists', async () => {
      for (const kind of h.provider.kinds()) {
        const handler = h.provider.handler(kind);
        check(handler.kind === kind, `handler(${kind}).kind is ${handler.kind}`);
        check(typeof handler.schema?.safeParse === 'function', `${kind}: no schema`);
        check(Array.isArray(handler.replaceOnChange), `${kind}: replaceOnChange must be a list`);
      }
      const missing = samples.filter((s) => !h.provider.kinds().includes(s.kind));
      check(missing.length === 0, `samples for kinds the provider does not list: ${missing.map((s) => s.kind).join(', ')}`);
    });

    t.it('reads an id it never issued as absent, and deleting it succeeds', async () => {
      for (const kind of h.provider.kinds()) {
        const handler = h.provider.handler(kind);
        const r = await handler.read('never-issued-0000', rctx());
        check(r.state === 'absent', `${kind}: read of an unknown id gave ${r.state}, expected absent`);
        const d = await handler.delete('never-issued-0000', ctx(`absent-${kind}`));
        check(d.done === true, `${kind}: delete of an absent object must succeed with done=true`);
      }
    });

    t.it('has a sample for every kind', async () => {
      const sampled = new Set(samples.map((s) => s.kind));
      const unsampled = h.provider.kinds().filter((k) => !sampled.has(k));
      check(unsampled.length === 0, `no contract sample for: ${unsampled.join(', ')}`);
    });

    async function lifecycle(s: KindSample): Promise<void> {
      {
        const handler = h.provider.handler(s.kind);
        const label = s.kind;
        // invalid spec → InvalidSpec, not retryable, nothing created
        let refused: unknown;
        try {
          const parsed = handler.schema.safeParse(s.invalid);
          if (parsed.success) handler.validate?.(parsed.data);
          await handler.create(parsed.success ? parsed.data : s.invalid, ctx(`${label}-invalid`));
        } catch (e) {
          refused = e;
        }
        check(refused !== undefined, `${label}: an invalid spec was accepted`);
        const reason = reasonOf(refused);
        check(reason === 'InvalidSpec' || (isInfraflowError(refused) && refused.code.endsWith('invalid_spec')), `${label}: invalid spec gave ${reason ?? (refused as Error).message}, expected InvalidSpec`);
        check(!(isInfraflowError(refused) && refused.retryable), `${label}: InvalidSpec must not be retryable`);

        // create, twice with the same key → one object
        const spec = handler.schema.parse(s.spec) as Record<string, unknown>;
        handler.validate?.(spec);
        const c1 = await settleCall(() => handler.create(spec, ctx(`${label}-create`, 'contract-obj')), `${label}: create`);
        check(typeof c1.externalId === 'string' && c1.externalId.length > 0, `${label}: create returned no externalId`);
        const c2 = await settleCall(() => handler.create(spec, ctx(`${label}-create`, 'contract-obj')), `${label}: create again`);
        check(c2.externalId === c1.externalId, `${label}: the same idempotency key made two objects (${c1.externalId}, ${c2.externalId})`);
        const ready = await until(handler, c1.externalId, ['ready'], `${label}: create`);
        check(typeof ready.outputs === 'object' && ready.outputs !== null, `${label}: ready without outputs`);

        // declared replace: a change of a replace-on-change field is reported by diff
        if (s.replace) {
          const next = handler.schema.parse(s.replace) as Record<string, unknown>;
          const d = handler.diff ? handler.diff(spec, next) : diffSpecs(spec, next, handler.replaceOnChange);
          check(d.replaceFields.length > 0, `${label}: changing ${d.changed.join(', ') || '(nothing)'} should be declared as a replace`);
        }

        // in-place update
        if (s.update && handler.update) {
          const next = handler.schema.parse(s.update) as Record<string, unknown>;
          const d = handler.diff ? handler.diff(spec, next) : diffSpecs(spec, next, handler.replaceOnChange);
          check(d.changed.length > 0 && d.replaceFields.length === 0, `${label}: the update sample must change only in-place fields (changed ${d.changed.join(', ')}, replace ${d.replaceFields.join(', ')})`);
          await settleCall(() => handler.update!(c1.externalId, next, spec, ctx(`${label}-update`)), `${label}: update`);
          await settleCall(() => handler.update!(c1.externalId, next, spec, ctx(`${label}-update`)), `${label}: update again (same key)`);
          const after = await until(handler, c1.externalId, ['ready'], `${label}: update`);
          if (after.observed) {
            for (const f of d.changed) check(JSON.stringify(after.observed[f]) === JSON.stringify(next[f]), `${label}: after update, observed.${f} is ${JSON.stringify(after.observed[f])}, expected ${JSON.stringify(next[f])}`);
          }
        }

        // delete → absent; delete again → done
        await settleCall(() => handler.delete(c1.externalId, ctx(`${label}-delete`)), `${label}: delete`);
        await until(handler, c1.externalId, ['absent'], `${label}: delete`);
        const again = await handler.delete(c1.externalId, ctx(`${label}-delete-again`));
        check(again.done === true, `${label}: deleting an already deleted object must succeed with done=true`);
      }
    }

    if (opts.kinds) {
      for (const kind of opts.kinds) {
        t.it(`${kind}: create, idempotent create, read until ready, update or declared replace, delete, read absent; invalid spec refused`, async () => {
          const s = samples.find((x) => x.kind === kind);
          check(s, `no contract sample for ${kind}`);
          await lifecycle(s);
        }, 600_000);
      }
    } else {
      t.it('every kind: full lifecycle, idempotent create, invalid spec, declared replace', async () => {
        for (const s of samples) await lifecycle(s);
      }, 600_000);
    }
  });
}
