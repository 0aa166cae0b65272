import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { DIALECTS } from './support/dialects.js';
import { makeHarness, type Harness } from './api-harness.js';

/**
 * The rate limit's key is the authenticated principal (a user, whatever
 * token they use), else the client address: a fresh random bearer string per
 * request gets no fresh budget, and several tokens of one user share one.
 * Failed token lookups are cached briefly, so repeating a bad token costs no
 * database lookup.
 */
describe.each(DIALECTS)('rate limit keys on %s', (dialect) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness(dialect, { server: { rateLimit: { max: 5, timeWindowMs: 60_000 } } });
  });
  afterAll(async () => h?.close());

  it('random bearer strings share their address\'s budget', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await h.req('GET', '/api/v1/auth/whoami', { token: `ifk_${randomBytes(24).toString('base64url')}` });
      codes.push(r.statusCode);
    }
    expect(codes.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(codes.slice(5)).toEqual([429, 429, 429]);
  });

  it('two tokens of one user share one budget', async () => {
    const u = await h.userWith('rl-two-tokens', null, {});
    const t2 = (await h.req('POST', '/api/v1/tokens', { token: u.token, body: { name: 'second' } })).json().token as string; // 1st request of this user
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await h.req('GET', '/api/v1/auth/whoami', { token: i % 2 ? t2 : u.token })).statusCode);
    expect(codes).toEqual([200, 200, 200, 200, 429, 429]);
  });

  it('a failed token lookup is cached: repeating a bad token costs one lookup', async () => {
    const bad = `ifk_${randomBytes(24).toString('base64url')}`;
    const before = h.iam.tokenLookups;
    expect(await h.iam.authenticate(bad)).toBeNull();
    expect(await h.iam.authenticate(bad)).toBeNull();
    expect(await h.iam.authenticate(bad)).toBeNull();
    expect(h.iam.tokenLookups - before).toBe(1);
  });
});

describe('health probes and the rate limit', () => {
  it('/healthz and /readyz are never rate-limited', async () => {
    const h = await makeHarness('sqlite', { server: { rateLimit: { max: 2, timeWindowMs: 60_000 } } });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) codes.push((await h.req('GET', '/healthz')).statusCode, (await h.req('GET', '/readyz')).statusCode);
      expect(codes.every((c) => c === 200)).toBe(true);
      // other routes still are
      const who: number[] = [];
      for (let i = 0; i < 3; i++) who.push((await h.req('GET', '/api/v1/auth/whoami')).statusCode);
      expect(who).toEqual([401, 401, 429]);
    } finally {
      await h.close();
    }
  });
});
