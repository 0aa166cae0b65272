import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Address4, Address6 } from 'ip-address';
import { formatAddress } from './addr.js';

describe('formatAddress', () => {
  it('writes IPv4 as ip-address does', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }), (v) => {
      expect(formatAddress(4, v)).toBe(Address4.fromBigInt(v).correctForm());
    }), { numRuns: 2000 });
  });

  it('writes IPv6 in RFC 5952 form, as ip-address does (zero runs, ties, single zero groups)', () => {
    // groups drawn mostly from 0, so runs of zero groups of every length and position occur
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
    const addr = fc.array(group, { minLength: 8, maxLength: 8 }).map((gs) => gs.reduce((v, g) => (v << 16n) | BigInt(g), 0n));
    fc.assert(fc.property(addr, (v) => {
      expect(formatAddress(6, v)).toBe(Address6.fromBigInt(v).correctForm());
    }), { numRuns: 5000 });
    for (const v of [0n, 1n, (1n << 128n) - 1n, 0xffff_0a0b_0c0dn, 0x2001_0db8_0000_0000_0001_0000_0000_0001n]) {
      expect(formatAddress(6, v)).toBe(Address6.fromBigInt(v).correctForm());
    }
  });
});
