import { afterAll, beforeAll, describe, it } from 'vitest';
import { ManualClock } from '../src/core/clock.js';
import { SimDatacenter, SimProvider } from '../src/providers/sim/index.js';
import { runProviderContract } from '../src/resources/contract.js';
import { KIND_NAMES } from '../src/resources/kinds.js';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { simContractSamples } from './fixtures/sim-contract-samples.js';

for (const dialect of DIALECTS) {
  runProviderContract(`sim on ${dialect}`, async () => {
    const t: TestDb = await openTestStore(dialect);
    const clock = new ManualClock();
    const sim = await new SimDatacenter({ store: t.store, clock, config: { floatingPools: { public: '203.0.113.0/24', other: '198.51.100.0/24' } } }).init();
    return {
      provider: new SimProvider(sim),
      tick: async () => clock.advance(30_000),
      samples: () => simContractSamples(sim, clock),
      cleanup: () => t.cleanup(),
    };
  }, { describe, it, beforeAll, afterAll }, { kinds: KIND_NAMES.filter((k) => !k.startsWith('apps/')) }); // apps/* have their own provider (src/apps)
}
