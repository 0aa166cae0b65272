/** Allocation tables (migrations 0350). Only src/allocation reads or writes them. */
export interface AllocReservationTable {
  id: string;
  /** open → committed | aborted | expired; committed → released. */
  status: string;
  holder: string;
  idem_key: string | null;
  /** The request, JSON. */
  request: string;
  expires_at: number;
  created_at: number;
  updated_at: number;
  reason: string;
}

export interface AllocDnsNameTable {
  id: string;
  zone: string;
  name: string;
  holder: string;
  reservation_id: string | null;
  expires_at: number | null;
  created_at: number;
}

declare module '../store/schema.js' {
  interface Database {
    alloc_reservations: AllocReservationTable;
    alloc_dns_names: AllocDnsNameTable;
  }
}
