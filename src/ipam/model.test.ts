import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DIALECTS, openTestStore, type TestDb } from '../../test/support/dialects.js';
import { Store } from '../store/store.js';
import { Ipam } from './ipam.js';
import { ipamMigrations } from './migrations.js';

/**
 * Model-based properties: random sequences of allocate / allocate-specific /
 * bulk / release against each allocator, compared step by step with a
 * simple sequential model (a set of taken values, lowest-free first). The
 * allocator must agree on every result and every error.
 */
const RUNS = { sqlite: 60, postgres: 15 } as const;

type Op =
  | { op: 'next' }
  | { op: 'bulk'; n: number }
  | { op: 'specific'; v: number; fallback: boolean }
  | { op: 'release'; v: number };

const opArb = (size: number): fc.Arbitrary<Op> => fc.oneof(
  { weight: 4, arbitrary: fc.constant<Op>({ op: 'next' }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 6 }).map((n): Op => ({ op: 'bulk', n })) },
  { weight: 2, arbitrary: fc.record({ v: fc.integer({ min: 0, max: size - 1 }), fallback: fc.boolean() }).map((r): Op => ({ op: 'specific', ...r })) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: size - 1 }).map((v): Op => ({ op: 'release', v })) },
);

/** The sequential model: values 0..size-1, some reserved, lowest free first. */
class PoolModel {
  taken = new Set<number>();
  constructor(readonly size: number, readonly reserved: Set<number>) {}
  free(): number[] {
    const out: number[] = [];
    for (let v = 0; v < this.size; v++) if (!this.taken.has(v) && !this.reserved.has(v)) out.push(v);
    return out;
  }
  apply(o: Op): { ok: number[] } | { err: string } {
    switch (o.op) {
      case 'next':
      case 'bulk': {
        const n = o.op === 'next' ? 1 : o.n;
        const f = this.free();
        if (f.length < n) return { err: 'exhausted' };
        const got = f.slice(0, n);
        got.forEach((v) => this.taken.add(v));
        return { ok: got };
      }
      case 'specific': {
        if (this.reserved.has(o.v) || this.taken.has(o.v)) {
          if (!o.fallback) return { err: this.reserved.has(o.v) ? 'reserved' : 'in_use' };
          return this.apply({ op: 'next' });
        }
        this.taken.add(o.v);
        return { ok: [o.v] };
      }
      case 'release':
        if (!this.taken.has(o.v)) return { err: 'not_allocated' };
        this.taken.delete(o.v);
        return { ok: [o.v] };
    }
  }
}

function kindOf(e: unknown): string {
  const code = (e as { code?: string }).code ?? String(e);
  const m = /(exhausted|reserved|in_use|not_allocated)$/.exec(code);
  if (!m) throw e;
  return m[1]!;
}

describe.each(DIALECTS)('allocator models on %s', (dialect) => {
  let t: TestDb;
  let ipam: Ipam;
  /**
   * A second allocator as another process would be: on PostgreSQL its own
   * connection pool, hence its own fast-path hints (fast.ts keeps them per
   * store), which this one's allocations and releases make stale; SQLite
   * serves one process, so there it shares the store (and the hints).
   */
  let other: Ipam;
  let otherStore: Store | undefined;
  let n = 0;
  beforeAll(async () => {
    t = await openTestStore(dialect, { migrations: ipamMigrations });
    ipam = new Ipam({ store: t.store });
    if (dialect === 'postgres') otherStore = Store.open({ url: t.store.url, poolSize: 2 });
    other = new Ipam({ store: otherStore ?? t.store });
  });
  afterAll(async () => {
    await otherStore?.close();
    await t?.cleanup();
  });

  it('addresses agree with the model (IPv4 /27 with gateway and DHCP range)', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb(32), { minLength: 1, maxLength: 60 }), async (ops) => {
      const scope = `m${n++}`;
      // 10.0.0.0/27: network .0, broadcast .31, gateway .1, DHCP .20-.23
      const p = await ipam.createPrefix({ cidr: '10.0.0.0/27', scope, gateway: '10.0.0.1', dhcpRange: { start: '10.0.0.20', end: '10.0.0.23' } });
      const model = new PoolModel(32, new Set([0, 31, 1, 20, 21, 22, 23]));
      const addr = (v: number) => `10.0.0.${v}`;
      for (const o of ops) {
        const expected = model.apply(o);
        let actual: { ok: number[] } | { err: string };
        try {
          if (o.op === 'release') {
            await ipam.releaseAddress({ prefixId: p.id, address: addr(o.v) });
            actual = { ok: [o.v] };
          } else {
            const got = await ipam.allocateAddresses({
              prefixId: p.id, holder: 'm', ...(o.op === 'bulk' ? { count: o.n } : {}), ...(o.op === 'specific' ? { address: addr(o.v), fallback: o.fallback } : {}),
            });
            actual = { ok: got.map((a) => Number(a.address.split('.')[3])) };
          }
        } catch (e) {
          actual = { err: kindOf(e) };
        }
        expect(actual, JSON.stringify(o)).toEqual(expected);
      }
      const rows = await ipam.listAddresses({ prefixId: p.id });
      expect(rows.map((r) => Number(r.address.split('.')[3])).sort((a, b) => a - b)).toEqual([...model.taken].sort((a, b) => a - b));
    }), { numRuns: RUNS[dialect] });
  });

  it('IPv6 addresses agree with the model at the far end of a /64', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb(16), { minLength: 1, maxLength: 40 }), async (ops) => {
      const scope = `m${n++}`;
      // a /124 at the top of a /64's address space: values 0..15 map to 2001:db8::ffff:ffff:ffff:fff0 + v
      const p = await ipam.createPrefix({ cidr: '2001:db8:0:0:ffff:ffff:ffff:fff0/124', scope, reserved: [{ start: '2001:db8::ffff:ffff:ffff:fff5' }] });
      const model = new PoolModel(16, new Set([0, 5]));
      const addr = (v: number) => `2001:db8::ffff:ffff:ffff:fff${v.toString(16)}`;
      for (const o of ops) {
        const expected = model.apply(o);
        let actual: { ok: number[] } | { err: string };
        try {
          if (o.op === 'release') {
            await ipam.releaseAddress({ prefixId: p.id, address: addr(o.v) });
            actual = { ok: [o.v] };
          } else {
            const got = await ipam.allocateAddresses({
              prefixId: p.id, holder: 'm', ...(o.op === 'bulk' ? { count: o.n } : {}), ...(o.op === 'specific' ? { address: addr(o.v), fallback: o.fallback } : {}),
            });
            actual = { ok: got.map((a) => Number.parseInt(a.address.slice(-1), 16)) };
          }
        } catch (e) {
          actual = { err: kindOf(e) };
        }
        expect(actual, JSON.stringify(o)).toEqual(expected);
      }
    }), { numRuns: Math.ceil(RUNS[dialect] / 2) });
  });

  it('VLANs agree with the model', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb(20), { minLength: 1, maxLength: 60 }), async (ops) => {
      const name = `m${n++}`;
      // ids 100..119, reserved 103 and 110-112; model value v = id - 100
      const pool = await ipam.createVlanPool({ name, scope: 'dc1', min: 100, max: 119, reserved: [103, [110, 112]] });
      const model = new PoolModel(20, new Set([3, 10, 11, 12]));
      for (const o of ops) {
        const expected = model.apply(o);
        let actual: { ok: number[] } | { err: string };
        try {
          if (o.op === 'release') {
            await ipam.releaseVlan({ poolId: pool.id, vlan: 100 + o.v });
            actual = { ok: [o.v] };
          } else {
            const got = await ipam.allocateVlans({
              poolId: pool.id, holder: 'm', ...(o.op === 'bulk' ? { count: o.n } : {}), ...(o.op === 'specific' ? { vlan: 100 + o.v, fallback: o.fallback } : {}),
            });
            actual = { ok: got.map((a) => a.vlan - 100) };
          }
        } catch (e) {
          actual = { err: kindOf(e) };
        }
        expect(actual, JSON.stringify(o)).toEqual(expected);
      }
    }), { numRuns: RUNS[dialect] });
  });

  // Stale hints (another process allocated or released) must only cost a miss, never a wrong answer.
  it('addresses and VLANs agree with the model when two allocators share the pools', async () => {
    const both = [ipam, other];
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(opArb(20), fc.nat(1)), { minLength: 1, maxLength: 60 }), async (ops) => {
      const scope = `m${n++}`;
      // 10.0.0.0/27 with a DHCP range, values 0..19 used; and a VLAN pool 100..119
      const p = await ipam.createPrefix({ cidr: '10.0.0.0/27', scope, reserved: [{ start: '10.0.0.6', end: '10.0.0.7' }] });
      const pool = await ipam.createVlanPool({ name: scope, scope: 'dc1', min: 100, max: 119, reserved: [[106, 107]] });
      const addrModel = new PoolModel(32, new Set([0, 31, 6, 7]));
      const vlanModel = new PoolModel(20, new Set([6, 7]));
      const addr = (v: number) => `10.0.0.${v}`;
      for (const [o, who] of ops) {
        const a = both[who]!;
        for (const kind of ['address', 'vlan'] as const) {
          const expected = (kind === 'address' ? addrModel : vlanModel).apply(o);
          let actual: { ok: number[] } | { err: string };
          try {
            if (kind === 'address') {
              if (o.op === 'release') {
                await a.releaseAddress({ prefixId: p.id, address: addr(o.v) });
                actual = { ok: [o.v] };
              } else {
                const got = await a.allocateAddresses({ prefixId: p.id, holder: 'm', ...(o.op === 'bulk' ? { count: o.n } : {}), ...(o.op === 'specific' ? { address: addr(o.v), fallback: o.fallback } : {}) });
                actual = { ok: got.map((x) => Number(x.address.split('.')[3])) };
              }
            } else if (o.op === 'release') {
              await a.releaseVlan({ poolId: pool.id, vlan: 100 + o.v });
              actual = { ok: [o.v] };
            } else {
              const got = await a.allocateVlans({ poolId: pool.id, holder: 'm', ...(o.op === 'bulk' ? { count: o.n } : {}), ...(o.op === 'specific' ? { vlan: 100 + o.v, fallback: o.fallback } : {}) });
              actual = { ok: got.map((x) => x.vlan - 100) };
            }
          } catch (e) {
            actual = { err: kindOf(e) };
          }
          expect(actual, `${kind} by allocator ${who}: ${JSON.stringify(o)}`).toEqual(expected);
        }
      }
    }), { numRuns: RUNS[dialect] });
  });

  it.each([1, 2])('child prefixes agree with a first-fit model (%i allocators)', async (allocators) => {
    const both = [ipam, other].slice(0, allocators);
    let turn = 0;
    const next = () => both[turn++ % both.length]!;
    type POp = { op: 'carve'; len: number } | { op: 'release'; i: number };
    const pop: fc.Arbitrary<POp> = fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 25, max: 30 }).map((len): POp => ({ op: 'carve', len })) },
      { weight: 1, arbitrary: fc.nat(20).map((i): POp => ({ op: 'release', i })) },
    );
    await fc.assert(fc.asyncProperty(fc.array(pop, { minLength: 1, maxLength: 40 }), async (ops) => {
      const scope = `m${n++}`;
      const c = await ipam.createPrefix({ cidr: '10.9.0.0/24', scope, kind: 'container', reserved: [{ start: '10.9.0.64', end: '10.9.0.67' }] });
      // model: blocks as [start, end] offsets in the /24
      const blocks: { s: number; e: number; id?: string }[] = [];
      const reserved = { s: 64, e: 67 };
      for (const o of ops) {
        if (o.op === 'carve') {
          const size = 2 ** (32 - o.len);
          let want: number | null = null;
          for (let s = 0; s + size <= 256; s += size) {
            const e = s + size - 1;
            const clash = [...blocks, reserved].some((b) => b.s <= e && b.e >= s);
            if (!clash) {
              want = s;
              break;
            }
          }
          try {
            const got = await next().allocatePrefix({ parentId: c.id, length: o.len, holder: 'm' });
            expect(want, `carve /${o.len}`).not.toBeNull();
            expect(got.cidr).toBe(`10.9.0.${want}/${o.len}`);
            blocks.push({ s: want!, e: want! + size - 1, id: got.id });
          } catch (e) {
            if ((e as { code?: string }).code !== 'ipam.prefix_exhausted') throw e;
            expect(want, `carve /${o.len} exhausted`).toBeNull();
          }
        } else if (blocks.length > 0) {
          const [b] = blocks.splice(o.i % blocks.length, 1);
          await next().releasePrefix(b!.id!);
        }
      }
    }), { numRuns: RUNS[dialect] });
  });
});
