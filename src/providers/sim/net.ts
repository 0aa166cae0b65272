import { Address4, Address6 } from 'ip-address';
import { ProviderError } from '../../resources/errors.js';

/** Small IP arithmetic for the simulator (IPv4 and IPv6, BigInt). */
export interface Cidr {
  family: 4 | 6;
  network: bigint;
  length: number;
  bits: number;
}

export function parseCidr(text: string): Cidr {
  try {
    if (text.includes(':')) {
      const a = new Address6(text);
      return { family: 6, network: a.startAddress().bigInt(), length: a.subnetMask, bits: 128 };
    }
    const a = new Address4(text);
    return { family: 4, network: a.startAddress().bigInt(), length: a.subnetMask, bits: 32 };
  } catch {
    throw new ProviderError('InvalidSpec', `"${text}" is not a valid CIDR`);
  }
}

export function parseIp(text: string): { family: 4 | 6; value: bigint } {
  try {
    if (text.includes(':')) return { family: 6, value: new Address6(text).bigInt() };
    return { family: 4, value: new Address4(text).bigInt() };
  } catch {
    throw new ProviderError('InvalidSpec', `"${text}" is not a valid IP address`);
  }
}

export function formatIp(family: 4 | 6, v: bigint): string {
  return family === 4 ? Address4.fromBigInt(v).correctForm() : Address6.fromBigInt(v).correctForm();
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.family, c.network)}/${c.length}`;
}

export function size(c: Cidr): bigint {
  return 1n << BigInt(c.bits - c.length);
}

export function contains(c: Cidr, ip: bigint): boolean {
  return ip >= c.network && ip < c.network + size(c);
}

/** First and last usable host (IPv4 skips network and broadcast). */
export function hostRange(c: Cidr): [bigint, bigint] {
  const n = size(c);
  if (c.family === 4 && n > 2n) return [c.network + 1n, c.network + n - 2n];
  return [c.network + (n > 1n ? 1n : 0n), c.network + n - 1n];
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.network < b.network + size(b) && b.network < a.network + size(a);
}

/** A deterministic MAC in the locally administered range from a string. */
export function macFrom(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  const b = [0xfa, 0x16, 0x3e, (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}
