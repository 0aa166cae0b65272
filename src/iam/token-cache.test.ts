import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestStore, DIALECTS, type TestDb } from '../../test/support/dialects.js';
import { SecretBox } from '../core/secrets.js';
import { ManualClock } from '../core/clock.js';
import { Iam } from './service.js';

describe.each(DIALECTS)('token cache (%s)', (dialect) => {
  let t: TestDb;
  let iam: Iam;
  let clock: ManualClock;
  beforeEach(async () => {
    clock = new ManualClock(1_800_000_000_000);
    t = await openTestStore(dialect);
    iam = new Iam({ store: t.store, box: SecretBox.random(), clock, cacheTtlMs: 2000 });
    await iam.bootstrap({ adminPassword: 'admin-password-for-tests' });
  });
  afterEach(async () => t.cleanup());

  const apiToken = async () => (await iam.createApiToken((await iam.getUser('admin')).id, { name: 'ci' }));

  it('a revocation through this process takes effect at once, cache or not', async () => {
    const { token, info } = await apiToken();
    expect((await iam.authenticate(token))?.tokenId).toBe(info.id);
    expect((await iam.authenticate(token))?.tokenId).toBe(info.id); // cached
    await iam.revokeToken(info.id);
    expect(await iam.authenticate(token)).toBeNull();
  });

  it('a revocation by another process is seen within cacheTtlMs', async () => {
    const { token, info } = await apiToken();
    expect(await iam.authenticate(token)).not.toBeNull();
    const other = new Iam({ store: t.store, box: iam.box, clock, cacheTtlMs: 2000 });
    await other.revokeToken(info.id);
    expect(await iam.authenticate(token)).not.toBeNull(); // this process's cache, still within 2 s
    clock.advance(2001);
    expect(await iam.authenticate(token)).toBeNull();
  });

  it('concurrent requests with one token share one lookup', async () => {
    const { token } = await apiToken();
    const all = await Promise.all(Array.from({ length: 20 }, () => iam.authenticate(token)));
    expect(new Set(all).size).toBe(1); // the same principal object: one resolution
    expect(all[0]?.userName).toBe('admin');
  });

  it('a lookup under way when rights change is answered but not cached', async () => {
    const { token, info } = await apiToken();
    const pending = iam.authenticate(token);
    iam.invalidate(); // e.g. a role assignment changed while the lookup ran
    const first = await pending;
    expect(first?.tokenId).toBe(info.id);
    const again = await iam.authenticate(token);
    expect(again).not.toBe(first); // resolved anew, not served from a cache filled by the stale lookup
    expect(await iam.authenticate(token)).toBe(again); // and that one is cached
  });
});
