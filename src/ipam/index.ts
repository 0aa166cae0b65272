/**
 * IPAM: prefixes, addresses, floating IPs, VLAN and VNI pools.
 * Module API used by workflow steps, the HTTP API and the CLI.
 */
export { Ipam, toPrefix, toAddress, type IpamOptions } from './ipam.js';
export * from './schemas.js';
export { ipamMigrations } from './migrations.js';
export { parseAddress, parsePrefix, formatAddress, formatPrefix, toHex, fromHex, type Family, type ParsedPrefix } from './addr.js';
