/**
 * The switch driver interface: what Infraflow needs from a top-of-rack
 * switch to give bare-metal servers their layer 2 (the role OpenStack's
 * networking-generic-switch plays for Ironic). Open vSwitch
 * (`src/providers/ovs`) is the reference implementation; NETCONF, gNMI or
 * SSH-CLI drivers for hardware switches implement the same three calls.
 *
 * Rules every driver keeps:
 * - `configure` changes each port in one atomic step on the switch (one
 *   OVSDB transaction, one NETCONF commit, or "remove the old VLAN, then add
 *   the new one" on a CLI), so a port is never on two VLANs — an interrupted
 *   call leaves each port either as it was or as asked, and calling again
 *   with the same changes finishes the move.
 * - `configure` is idempotent: applying a port's current configuration is a no-op.
 * - `describe` never changes the switch.
 * - Failures throw ProviderError (BackendUnavailable, Timeout, NotFound for an
 *   unknown port, InvalidSpec for a VLAN the switch refuses).
 */
export type PortMode = 'access' | 'trunk';

export interface PortState {
  port: string;
  mode: PortMode;
  /** Access VLAN, or the untagged (native) VLAN of a trunk. */
  vlan: number | null;
  /** Tagged VLANs of a trunk (empty for access). */
  vlans: number[];
  /** Tags Infraflow keeps on the port (owner), where the switch can hold them. */
  tags: Record<string, string>;
}

export interface PortChange {
  port: string;
  mode: PortMode;
  /** Access VLAN, or the native VLAN of a trunk (null: none). */
  vlan: number | null;
  vlans: number[];
  /** Tags to set; a tag with value null is removed. */
  tags?: Record<string, string | null>;
}

export interface SwitchDriver {
  /** Driver name (`ovs`, `netconf`…), for messages. */
  readonly driver: string;
  /** Current state of the named ports (every port when `ports` is empty); a port the switch does not have maps to undefined. */
  describe(ports: string[], signal?: AbortSignal): Promise<Map<string, PortState | undefined>>;
  /** Applies the changes, each port atomically. */
  configure(changes: PortChange[], signal?: AbortSignal): Promise<void>;
}
