import { KINDS, diffSpecs } from '../../resources/kinds.js';
import type { DiffResult, KindHandler, Provider } from '../../resources/types.js';
import { BEHAVIOURS } from './behaviours.js';
import type { SimDatacenter } from './sim.js';

/** The simulator as a Provider: every kind, backed by a SimDatacenter. */
export class SimProvider implements Provider {
  readonly name: string;
  readonly sim: SimDatacenter;
  private handlers = new Map<string, KindHandler>();

  constructor(sim: SimDatacenter, name = 'sim') {
    this.sim = sim;
    this.name = name;
  }

  kinds(): string[] {
    return Object.keys(BEHAVIOURS);
  }

  handler(kind: string): KindHandler {
    const cached = this.handlers.get(kind);
    if (cached) return cached;
    const info = KINDS[kind];
    if (!info || !BEHAVIOURS[kind]) throw new Error(`the simulator does not implement ${kind}`);
    const sim = this.sim;
    const h: KindHandler = {
      kind,
      schema: info.schema,
      replaceOnChange: info.replaceOnChange,
      ...(info.validate ? { validate: (spec: unknown) => info.validate!(spec) } : {}),
      create: (spec, ctx) => sim.create(kind, spec, ctx),
      read: (id, ctx) => sim.read(kind, id, ctx),
      update: (id, spec, _previous, ctx) => sim.update(kind, id, spec, ctx),
      delete: (id, ctx) => sim.delete(kind, id, ctx),
      diff: (previous, next): DiffResult => {
        const d = diffSpecs(previous, next, info.replaceOnChange);
        // A volume grows in place but cannot shrink: shrinking is a replace.
        if (kind === 'storage/Volume' && Number(next.sizeGb) < Number(previous.sizeGb) && !d.replaceFields.includes('sizeGb')) d.replaceFields.push('sizeGb');
        return d;
      },
    };
    this.handlers.set(kind, h);
    return h;
  }
}
