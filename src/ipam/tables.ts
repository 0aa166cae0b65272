/** IPAM tables (migrations 0300). Only src/ipam reads or writes them. */
export interface IpamPrefixTable {
  id: string;
  scope: string;
  family: number;
  cidr: string;
  network_hex: string;
  last_hex: string;
  length: number;
  parent_id: string | null;
  /** container: holds child prefixes; network: hands out addresses; floating: floating IP pool. */
  kind: string;
  gateway: string | null;
  /** JSON [{ start, end, reason }] (hex), sorted, merged. */
  reserved: string;
  /** Next-free cursor (hex): every address below it is taken or reserved (network, floating) or covered by a child (container). */
  cursor_hex: string;
  /** Containers: bumped by every change to the children (under the row lock); see migration 0302. */
  child_seq: number;
  holder: string | null;
  reservation_id: string | null;
  expires_at: number | null;
  idem_key: string | null;
  description: string;
  labels: string;
  created_at: number;
}

export interface IpamAddressTable {
  id: string;
  prefix_id: string;
  family: number;
  address_hex: string;
  address: string;
  holder: string;
  /** Floating IP association (e.g. an instance id), null when unassociated. */
  target: string | null;
  reservation_id: string | null;
  expires_at: number | null;
  idem_key: string | null;
  created_at: number;
}

export interface IpamVlanPoolTable {
  id: string;
  name: string;
  scope: string;
  /** vlan (1..4094) or vni (1..16777215). */
  kind: string;
  min_id: number;
  max_id: number;
  /** JSON [[from, to]] reserved ids, sorted, merged. */
  reserved: string;
  cursor_id: number;
  created_at: number;
}

export interface IpamVlanAllocTable {
  id: string;
  pool_id: string;
  vid: number;
  holder: string;
  reservation_id: string | null;
  expires_at: number | null;
  idem_key: string | null;
  created_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    ipam_prefixes: IpamPrefixTable;
    ipam_addresses: IpamAddressTable;
    ipam_vlan_pools: IpamVlanPoolTable;
    ipam_vlan_allocs: IpamVlanAllocTable;
  }
}
