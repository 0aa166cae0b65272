/**
 * The next-free walk shared by address and VLAN allocators.
 *
 * Invariant kept by every allocator: every value below the pool's cursor is
 * taken or reserved. A walk therefore starts at the cursor and reads the
 * taken values at or above it from the sorted unique index in chunks; it
 * never scans the whole pool, so a /64 (2^64 addresses) costs the same as a
 * /24. A release moves the cursor back to the released value.
 */
export interface Range {
  start: bigint;
  end: bigint;
}

/** Sorts and merges ranges (adjacent ones too). */
export function mergeRanges(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1n) {
      if (r.end > last.end) last.end = r.end;
    } else out.push({ ...r });
  }
  return out;
}

export function sizeOfRanges(ranges: Range[], lo: bigint, hi: bigint): bigint {
  let n = 0n;
  for (const r of ranges) {
    const s = r.start < lo ? lo : r.start;
    const e = r.end > hi ? hi : r.end;
    if (e >= s) n += e - s + 1n;
  }
  return n;
}

export function inRanges(ranges: Range[], v: bigint): boolean {
  return ranges.some((r) => r.start <= v && v <= r.end);
}

export const WALK_CHUNK = 256;

export class FreeWalker {
  /** Next value to examine; every value in [start, c) has been examined. */
  c: bigint;
  private rows: bigint[] = [];
  private i = 0;
  private full = false;
  private fetched = false;
  private ri = 0;
  /** Values found free but given back (a bulk request that could not be met). */
  private spare: bigint[] = [];

  constructor(
    start: bigint,
    private readonly last: bigint,
    private readonly reserved: Range[],
    private readonly fetchTaken: (from: bigint, limit: number) => Promise<bigint[]>,
    /** Values taken earlier in this transaction but not yet visible to fetchTaken. */
    readonly taken: Set<bigint> = new Set(),
  ) {
    this.c = start;
  }

  private skipReserved(): void {
    while (this.ri < this.reserved.length && this.reserved[this.ri]!.end < this.c) this.ri++;
    while (this.ri < this.reserved.length && this.reserved[this.ri]!.start <= this.c) {
      if (this.reserved[this.ri]!.end >= this.c) this.c = this.reserved[this.ri]!.end + 1n;
      this.ri++;
    }
  }

  private async refill(): Promise<void> {
    this.rows = await this.fetchTaken(this.c, WALK_CHUNK);
    this.i = 0;
    this.full = this.rows.length === WALK_CHUNK;
    this.fetched = true;
  }

  private async nextFromWalk(): Promise<bigint | null> {
    for (;;) {
      this.skipReserved();
      if (this.c > this.last) return null;
      if (!this.fetched) await this.refill();
      while (this.i < this.rows.length && this.rows[this.i]! < this.c) this.i++;
      if (this.i === this.rows.length && this.full) {
        await this.refill();
        continue;
      }
      if (this.i < this.rows.length && this.rows[this.i] === this.c) {
        this.c++;
        continue;
      }
      const v = this.c;
      this.c++;
      if (this.taken.has(v)) continue;
      return v;
    }
  }

  /** Takes `n` free values, all or none. */
  async take(n: number): Promise<bigint[] | null> {
    const got: bigint[] = [];
    while (got.length < n && this.spare.length > 0) got.push(this.spare.shift()!);
    while (got.length < n) {
      const v = await this.nextFromWalk();
      if (v === null) {
        this.spare = [...got, ...this.spare].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        return null;
      }
      got.push(v);
    }
    for (const v of got) this.taken.add(v);
    return got;
  }

  /** Claims a specific value found free by the caller; removes it from the spare list. */
  claim(v: bigint): void {
    this.taken.add(v);
    this.spare = this.spare.filter((x) => x !== v);
  }

  /**
   * The cursor to store after the walk: moved on past the values the walk
   * already knows to be taken (the index rows it has read, this
   * transaction's own values) or reserved, without reading more. Every value
   * below it is taken or reserved; usually it is the next free value itself.
   */
  settled(): bigint {
    if (this.spare.length > 0) return this.cursor();
    for (;;) {
      this.skipReserved();
      if (this.c > this.last) return this.c;
      while (this.i < this.rows.length && this.rows[this.i]! < this.c) this.i++;
      if ((this.i < this.rows.length && this.rows[this.i] === this.c) || this.taken.has(this.c)) {
        this.c++;
        continue;
      }
      return this.c;
    }
  }

  /** The cursor to store: the lowest value not known to be taken or reserved. */
  cursor(): bigint {
    let c = this.c;
    for (const s of this.spare) if (s < c) c = s;
    return c;
  }
}
