import { describe, expect, it } from 'vitest';
import { GroupCommit, type Outcome } from './groupcommit.js';

describe('GroupCommit', () => {
  it('serves a lone request at once and batches what arrives while a key is busy, with one outcome per request', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gc = new GroupCommit<number, string>(async (key, reqs) => {
      batches.push(reqs);
      if (batches.length === 1) await gate;
      return reqs.map((r): Outcome<string> => (r < 0 ? { ok: false, error: new Error(`bad ${r}`) } : { ok: true, value: `${key}:${r}` }));
    });
    const first = gc.submit('a', 1);
    // the lone request is already being processed, synchronously from submit
    expect(batches).toEqual([[1]]);
    const later = [gc.submit('a', 2), gc.submit('a', -3), gc.submit('a', 4)];
    const other = gc.submit('b', 5);
    expect(batches).toEqual([[1], [5]]);
    release();
    expect(await first).toBe('a:1');
    const settled = await Promise.allSettled(later);
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message))).toEqual(['a:2', 'bad -3', 'a:4']);
    expect(await other).toBe('b:5');
    expect(batches).toEqual([[1], [5], [2, -3, 4]]);
    // idle again: the next request is lone
    expect(await gc.submit('a', 6)).toBe('a:6');
    expect(batches.at(-1)).toEqual([6]);
  });

  it('a batch whose transaction throws rejects every request in it, and the key serves again afterwards', async () => {
    let fail = true;
    const gc = new GroupCommit<number, number>(async (_k, reqs) => {
      await Promise.resolve();
      if (fail) throw new Error('database down');
      return reqs.map((r) => ({ ok: true as const, value: r * 2 }));
    });
    const all = [gc.submit('k', 1), gc.submit('k', 2), gc.submit('k', 3)];
    const settled = await Promise.allSettled(all);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
    fail = false;
    expect(await Promise.all([gc.submit('k', 4), gc.submit('k', 5)])).toEqual([8, 10]);
  });
});
