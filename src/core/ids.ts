import { randomBytes } from 'node:crypto';

/**
 * Prefixed, time-sortable ids: `<prefix>_<ts36><rand>`; e.g. `run_0lx3k2a9c8f1e2d3c4b5`.
 * The timestamp part is 10 base-36 chars (sorts lexically until year 5188),
 * followed by 12 hex characters of randomness. Monotonic within a process.
 */
let lastTs = 0;
let counter = 0;

export function newId(prefix: string, now: number = Date.now()): string {
  if (now <= lastTs) {
    counter++;
    now = lastTs;
  } else {
    lastTs = now;
    counter = 0;
  }
  const ts = now.toString(36).padStart(10, '0');
  const seq = counter.toString(36).padStart(3, '0');
  return `${prefix}_${ts}${seq}${randomHex10()}`;
}

// Random bytes drawn 4 KiB at a time: one randomBytes call per id was a tenth
// of an allocation's CPU. Ten hex characters (5 bytes) per id, as before.
const POOL = 4096;
let pool: Buffer = Buffer.alloc(POOL);
let at = POOL;

function randomHex10(): string {
  if (at + 5 > POOL) {
    pool = randomBytes(POOL);
    at = 0;
  }
  const out = pool.toString('hex', at, at + 5);
  at += 5;
  return out;
}

const ID_RE = /^[a-z][a-z0-9]*_[0-9a-z]{13,}$/;

export function isId(value: string, prefix?: string): boolean {
  return ID_RE.test(value) && (prefix === undefined || value.startsWith(prefix + '_'));
}
