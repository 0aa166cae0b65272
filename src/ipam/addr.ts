import { Address4, Address6 } from 'ip-address';
import { z } from 'zod';
import { ValidationError } from '../core/errors.js';

/**
 * Address arithmetic. Parsing and formatting use the `ip-address` library;
 * all arithmetic is BigInt so IPv6 /64s (2^64 addresses) work the same as
 * IPv4 /24s. Addresses are stored as 32 lower-case hex digits: text that
 * sorts in numeric order on both dialects, so "next free" is an index range
 * scan instead of a walk over every address.
 */
export type Family = 4 | 6;

export interface ParsedPrefix {
  family: Family;
  /** Network address (host bits zero). */
  network: bigint;
  length: number;
  /** Last address in the prefix. */
  last: bigint;
  /** Canonical text, e.g. `10.0.0.0/24`, `2001:db8::/64`. */
  cidr: string;
}

export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

export function toHex(v: bigint): string {
  return v.toString(16).padStart(32, '0');
}

export function fromHex(h: string): bigint {
  return BigInt('0x' + h);
}

/**
 * Canonical text of an address: dotted quad, or RFC 5952 for IPv6 (lower
 * case, no leading zeros, the longest run of two or more zero groups — the
 * first of equal runs — written `::`). Same output as ip-address's
 * `correctForm()` (addr.test.ts checks), without building its objects: this
 * runs once per allocated address.
 */
export function formatAddress(family: Family, v: bigint): string {
  if (family === 4) {
    const n = Number(v);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const s = v.toString(16).padStart(32, '0');
  const h: string[] = new Array<string>(8);
  let best = -1;
  let bestLen = 0;
  let run = -1;
  for (let i = 0; i < 8; i++) {
    let k = i * 4;
    while (k < i * 4 + 3 && s.charCodeAt(k) === 48) k++;
    const g = s.slice(k, i * 4 + 4);
    h[i] = g;
    if (g === '0') {
      if (run < 0) run = i;
      if (i - run + 1 > bestLen) {
        bestLen = i - run + 1;
        best = run;
      }
    } else run = -1;
  }
  if (bestLen < 2) return h.join(':');
  return `${h.slice(0, best).join(':')}::${h.slice(best + bestLen).join(':')}`;
}

export function formatPrefix(family: Family, network: bigint, length: number): string {
  return `${formatAddress(family, network)}/${length}`;
}

export function sizeOf(family: Family, length: number): bigint {
  return 1n << BigInt(bitsOf(family) - length);
}

function bad(field: string, code: string, message: string, value: unknown): never {
  throw new ValidationError(code, `${field}: ${message}`, { details: { field, value } });
}

/**
 * Parses an address. `expect` forces a family: an IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.1`) where IPv4 is expected is refused with a hint, never
 * silently converted.
 */
export function parseAddress(text: unknown, field: string, expect?: Family): { family: Family; value: bigint; text: string } {
  if (typeof text !== 'string' || text.trim() === '') bad(field, 'ipam.invalid_address', 'an IP address is required', text);
  const s = text.trim();
  if (s.includes('/')) bad(field, 'ipam.invalid_address', `"${s}" is a prefix; give a single address without /length`, s);
  let family: Family;
  let value: bigint;
  if (Address4.isValid(s)) {
    family = 4;
    value = new Address4(s).bigInt();
  } else if (Address6.isValid(s)) {
    const a = new Address6(s);
    if (a.isMapped4() && expect === 4) {
      bad(field, 'ipam.ipv4_mapped', `"${s}" is an IPv4-mapped IPv6 address where an IPv4 address is expected; write it as ${a.to4().correctForm()}`, s);
    }
    if (a.isMapped4()) bad(field, 'ipam.ipv4_mapped', `"${s}" is an IPv4-mapped IPv6 address; IPAM keeps IPv4 in IPv4 form, write ${a.to4().correctForm()}`, s);
    family = 6;
    value = a.bigInt();
  } else {
    bad(field, 'ipam.invalid_address', `"${s}" is not a valid IPv4 or IPv6 address`, s);
  }
  if (expect !== undefined && family !== expect) {
    bad(field, 'ipam.family_mismatch', `"${s}" is IPv${family} but an IPv${expect} address is expected`, s);
  }
  return { family, value, text: formatAddress(family, value) };
}

/** Parses `a.b.c.d/len` or `x::/len`. Host bits must be zero (`10.0.0.1/24` is refused, naming 10.0.0.0/24). */
export function parsePrefix(text: unknown, field: string, expect?: Family): ParsedPrefix {
  if (typeof text !== 'string' || !text.includes('/')) bad(field, 'ipam.invalid_prefix', `a prefix in CIDR form is required, e.g. 10.0.0.0/24 or 2001:db8::/64 (got ${JSON.stringify(text)})`, text);
  const [addrText, lenText, ...rest] = text.trim().split('/');
  if (rest.length > 0 || lenText === undefined) bad(field, 'ipam.invalid_prefix', `"${text}" is not in CIDR form`, text);
  if (!/^\d{1,3}$/.test(lenText)) bad(field, 'ipam.invalid_prefix_length', `prefix length "${lenText}" must be a whole number`, text);
  const { family, value } = parseAddress(addrText, field, expect);
  const length = Number(lenText);
  const bits = bitsOf(family);
  if (length > bits) bad(field, 'ipam.invalid_prefix_length', `prefix length /${length} is longer than the ${bits} bits of an IPv${family} address (use /0 to /${bits})`, text);
  const hostBits = BigInt(bits - length);
  const network = (value >> hostBits) << hostBits;
  if (network !== value) {
    bad(field, 'ipam.host_bits_set', `"${text}" has host bits set; the network is ${formatPrefix(family, network, length)}`, text);
  }
  return { family, network, length, last: network + (1n << hostBits) - 1n, cidr: formatPrefix(family, network, length) };
}

/** Aligns `v` up to the next multiple of `size` (a power of two). */
export function alignUp(v: bigint, size: bigint): bigint {
  const r = v % size;
  return r === 0n ? v : v + (size - r);
}

// ---------------------------------------------------------------- schemas
// Every address, CIDR and port that enters (API bodies, resource specs, stack
// documents, imports) is checked by these, once, where it enters.

const ADDRESS_CHARS = /^[0-9A-Fa-f:.]{1,45}$/;
const PREFIX_CHARS = /^[0-9A-Fa-f:.]{1,45}\/\d{1,3}$/;

/** The message of a ValidationError thrown by parseAddress/parsePrefix, without its field prefix. */
function reason(e: unknown): string {
  return (e as Error).message.replace(/^[^:]*: /, '');
}

/** An IP address (IPv4 dotted quad without leading zeros, or IPv6), in any family or in `family`. */
export function ipAddressSchema(family?: Family) {
  return z.string().superRefine((v, ctx) => {
    if (!ADDRESS_CHARS.test(v)) {
      ctx.addIssue({ code: 'custom', message: family === 6 ? 'must be an IPv6 address, e.g. 2001:db8::1' : 'must be an IP address, e.g. 10.0.0.1 or 2001:db8::1' });
      return;
    }
    try {
      checkOctets(v);
      parseAddress(v, 'address', family);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: reason(e) });
    }
  });
}

/** A prefix in CIDR form with host bits zero, e.g. 10.0.0.0/24 or 2001:db8::/64. */
export function cidrSchema(family?: Family) {
  return z.string().superRefine((v, ctx) => {
    if (!PREFIX_CHARS.test(v)) {
      ctx.addIssue({ code: 'custom', message: 'must be a prefix in CIDR form, e.g. 10.0.0.0/24 or 2001:db8::/64' });
      return;
    }
    try {
      checkOctets(v.slice(0, v.indexOf('/')));
      parsePrefix(v, 'cidr', family);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: reason(e) });
    }
  });
}

/** A TCP/UDP port; `allowZero` for ranges where 0 means "any". */
export function portSchema(allowZero = false) {
  return z.number().int('a port is a whole number').min(allowZero ? 0 : 1, allowZero ? 'a port is 0 to 65535' : 'a port is 1 to 65535').max(65535, 'a port is at most 65535');
}

/** IPv4 octets with leading zeros (`010.0.0.1`) are ambiguous (octal in some parsers): refused. */
function checkOctets(addr: string): void {
  if (addr.includes(':')) return;
  for (const o of addr.split('.')) {
    if (o.length > 1 && o.startsWith('0')) throw new ValidationError('ipam.invalid_address', `address: an IPv4 octet has a leading zero (${o}); write ${String(Number(o))}`);
  }
}

/**
 * Where an address stands in a prefix: a gateway or a host must be inside
 * it and, on IPv4 prefixes longer than /31 allows, neither the network nor the
 * broadcast address. Returns a problem or undefined.
 */
export function hostProblem(cidr: string, address: string): string | undefined {
  let p: ParsedPrefix;
  let a: { family: Family; value: bigint };
  try {
    p = parsePrefix(cidr, 'cidr');
    a = parseAddress(address, 'address', p.family);
  } catch (e) {
    return reason(e);
  }
  if (a.value < p.network || a.value > p.last) return `${formatAddress(p.family, a.value)} is outside ${p.cidr}`;
  if (p.family === 4 && p.length <= 30) {
    if (a.value === p.network) return `${formatAddress(4, a.value)} is the network address of ${p.cidr}`;
    if (a.value === p.last) return `${formatAddress(4, a.value)} is the broadcast address of ${p.cidr}`;
  }
  if (p.family === 6 && p.length < 127 && a.value === p.network) return `${formatAddress(6, a.value)} is the subnet-router anycast address of ${p.cidr}`;
  return undefined;
}
