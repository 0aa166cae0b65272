/**
 * The backends a cluster order drives, as one port (the simulator implements
 * it in src/providers/sim/cluster.ts; real ones — a switch fabric, Kea,
 * an Agent-based installer on a hub — plug in behind the same calls).
 * Every mutating call takes an idempotency key: the same key twice has one
 * effect. DNS records, volumes and VMs are not here: they go through the
 * provider registry (kinds dns/Record, storage/Volume, compute/Server).
 */
export interface SwitchPortRef { switch: string; port: string }

export interface InstallAgent { serverId: string; serial: string; nodeSet: string; role: 'control-plane' | 'worker'; ip: string }

export interface InstallStatus {
  /** Per agent (server id): installing, installed, failed. */
  agents: Record<string, { state: 'installing' | 'installed' | 'failed'; reason?: string }>;
  controlPlaneReady: boolean;
  /** Workers that joined the cluster. */
  workersJoined: number;
  apiUrl: string;
  consoleUrl: string;
  /** Present once the control plane is up. */
  credentials?: { kubeconfig: string; adminUser: string; adminPassword: string };
}

export interface ValidationResult {
  ok: boolean;
  checks: { name: string; ok: boolean; message: string }[];
  /** Agents (server ids) that failed their node checks. */
  failedAgents: string[];
}

/** A backend's refusal: `retryable` decides whether the engine tries again; `answer` is what the backend said. */
export class BackendError extends Error {
  constructor(readonly op: string, message: string, readonly retryable: boolean, readonly answer: Record<string, unknown> = {}) {
    super(message);
    this.name = 'BackendError';
  }
}

export interface ClusterBackend {
  /** Puts switch ports on a VLAN (access mode). */
  bindPorts(req: { key: string; clusterId: string; vlan: number; ports: SwitchPortRef[] }): Promise<void>;
  /** Returns ports to their default VLAN. Unknown or unbound ports: success. */
  unbindPorts(req: { key: string; ports: SwitchPortRef[] }): Promise<void>;
  /** The L3 network: a DHCP scope with a gateway, served from the hub, with static leases. */
  createDhcpScope(req: { key: string; clusterId: string; hub: string; vlan: number; cidr: string; gateway: string; leases: { mac: string; ip: string; serverId: string }[] }): Promise<{ id: string }>;
  addLeases(req: { key: string; scopeId: string; leases: { mac: string; ip: string; serverId: string }[] }): Promise<void>;
  removeLeases(req: { key: string; scopeId: string; serverIds: string[] }): Promise<void>;
  deleteDhcpScope(req: { key: string; scopeId: string }): Promise<void>;
  /** Which agents have booted and reported their leased address. */
  reportedAgents(scopeId: string): Promise<{ reported: string[]; pending: string[] }>;
  startInstall(req: { key: string; clusterId: string; name: string; baseDomain: string; hub: string; releaseImage: string; apiVip: string; ingressVip: string; agents: InstallAgent[] }): Promise<{ id: string }>;
  installStatus(installId: string): Promise<InstallStatus>;
  addAgents(req: { key: string; installId: string; agents: InstallAgent[] }): Promise<void>;
  removeAgents(req: { key: string; installId: string; serverIds: string[] }): Promise<void>;
  validate(req: { key: string; installId: string }): Promise<ValidationResult>;
  uninstall(req: { key: string; installId: string }): Promise<void>;
  /** Wipes an agent's disks and resets its BMC settings (deprovisioning → cleaning → available). */
  cleanAgent(req: { key: string; serverId: string }): Promise<void>;
  /** Answers a Kubernetes API GET against a cluster with a bearer token (the simulated kube-apiserver). */
  kubeGet(apiUrl: string, token: string, path: string): Promise<{ status: number; body: unknown }>;
  /** What the backend still holds for a cluster (leak checks): bound ports, scopes, installs. */
  holdings(clusterId: string): Promise<{ ports: number; scopes: number; installs: number }>;
}
