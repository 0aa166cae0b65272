import { afterEach, describe, expect, it } from 'vitest';
import { DIALECTS, openTestStore, type TestDb } from './support/dialects.js';
import { advanceUntil, call, makeNetwork, makeSim } from './fixtures/sim-helpers.js';
import { parseSpec } from '../src/resources/kinds.js';

/**
 * Security-group rules that name a remote group ("5432 from the web group"),
 * in the schema and enforced by the simulated datacenter: the group must
 * exist, cannot be deleted while a rule names it, and traffic is allowed
 * from its members only.
 */
describe.each(DIALECTS)('security groups with remote groups on %s', (dialect) => {
  let t: TestDb;
  afterEach(async () => t?.cleanup());

  it('allows 5432 from the web group only, and keeps the group while a rule names it', async () => {
    t = await openTestStore(dialect);
    const { sim, clock } = await makeSim(t.store);
    const { subnet } = await makeNetwork(sim, clock);
    const web = await sim.create('network/SecurityGroup', { rules: [{ protocol: 'tcp', portMin: 80, portMax: 80 }] }, call('web-sg'));
    await advanceUntil(sim, clock, 'network/SecurityGroup', web.externalId);
    const db = await sim.create('network/SecurityGroup', { rules: [{ protocol: 'tcp', portMin: 5432, portMax: 5432, remoteGroup: web.externalId }] }, call('db-sg'));
    await advanceUntil(sim, clock, 'network/SecurityGroup', db.externalId);
    const server = async (key: string, groups: string[]) => {
      const c = await sim.create('compute/Server', { flavor: 'SCS-2V-4-20s', image: 'ubuntu-24.04', networks: [{ subnet }], securityGroups: groups }, call(key));
      await advanceUntil(sim, clock, 'compute/Server', c.externalId);
      return c.externalId;
    };
    const app = await server('app-1', [web.externalId]);
    const dbVm = await server('db-1', [db.externalId]);
    const other = await server('other-1', []);
    expect((await sim.allows(app, dbVm, { port: 5432 })).allowed).toBe(true);
    const denied = await sim.allows(other, dbVm, { port: 5432 });
    expect(denied.allowed).toBe(false);
    expect(denied.reason).toContain('no ingress rule');
    expect((await sim.allows(app, dbVm, { port: 22 })).allowed).toBe(false);
    expect((await sim.allows(dbVm, app, { port: 80 })).allowed).toBe(true);
    // the remote group must exist; it cannot go while a rule names it
    await expect(sim.create('network/SecurityGroup', { rules: [{ remoteGroup: 'sg-does-not-exist' }] }, call('bad-sg'))).rejects.toThrow(/remoteGroup/);
    await expect(sim.delete('network/SecurityGroup', web.externalId, call('del-web'))).rejects.toThrow(/remote group of rules in/);
  });

  it('the schema takes remoteGroup or remoteCidr, not both', () => {
    expect(() => parseSpec('network/SecurityGroup', { rules: [{ remoteGroup: 'sg-1', remoteCidr: '10.0.0.0/8' }] })).toThrow(/not both/);
    expect(parseSpec('network/SecurityGroup', { rules: [{ remoteGroup: 'sg-1', portMin: 5432 }] })).toMatchObject({ rules: [{ remoteGroup: 'sg-1' }] });
  });
});
