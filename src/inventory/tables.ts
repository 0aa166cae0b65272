/** Inventory tables (migrations 0200). Only src/inventory reads or writes them. */
export interface InvDatacenterTable {
  id: string;
  region: string;
  description: string;
  labels: string;
  created_at: number;
}
export interface InvRackTable {
  id: string;
  datacenter_id: string;
  name: string;
  row: string | null;
  height_u: number;
  created_at: number;
}
export interface InvServerTypeTable {
  id: string;
  cpu_model: string;
  cpu_cores: number;
  ram_gb: number;
  disks: string;
  nics: string;
  gpus: string;
  labels: string;
  /** Serializes allocators of this type (row lock); bumped on each allocation. */
  alloc_seq: number;
  created_at: number;
}
export interface InvServerTable {
  id: string;
  serial: string;
  type_id: string;
  datacenter_id: string;
  rack_id: string | null;
  position: number | null;
  state: string;
  state_reason: string;
  state_changed_at: number;
  labels: string;
  bmc_address: string | null;
  /** Sealed (AES-256-GCM) JSON { username, password }; never plain text. */
  bmc_credentials: string | null;
  nics: string;
  failure_count: number;
  failure_reasons: string;
  holder: string | null;
  reservation_id: string | null;
  expires_at: number | null;
  idem_key: string | null;
  allocated_at: number | null;
  created_at: number;
  updated_at: number;
}
export interface InvServerEventTable {
  id: string;
  server_id: string;
  from_state: string | null;
  to_state: string;
  reason: string;
  actor: string;
  at: number;
}
export interface InvSwitchTable {
  id: string;
  datacenter_id: string;
  rack_id: string | null;
  name: string;
  model: string;
  mgmt_address: string | null;
  port_count: number;
  created_at: number;
}
export interface InvSwitchPortTable {
  switch_id: string;
  port: string;
  server_id: string | null;
  nic: string | null;
}
export interface InvHubTable {
  id: string;
  region: string;
  datacenter_id: string | null;
  capacity: number;
  used: number;
  labels: string;
  created_at: number;
}
export interface InvHotPoolTable {
  id: string;
  type_id: string;
  datacenter_id: string;
  min_ready: number;
  enabled: number;
  created_at: number;
}
export interface InvCapacityWaiterTable {
  run_id: string;
  type_id: string;
  datacenter_id: string;
  count: number;
  created_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    inv_datacenters: InvDatacenterTable;
    inv_racks: InvRackTable;
    inv_server_types: InvServerTypeTable;
    inv_servers: InvServerTable;
    inv_server_events: InvServerEventTable;
    inv_switches: InvSwitchTable;
    inv_switch_ports: InvSwitchPortTable;
    inv_hubs: InvHubTable;
    inv_hot_pools: InvHotPoolTable;
    inv_capacity_waiters: InvCapacityWaiterTable;
  }
}
