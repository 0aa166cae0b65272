/**
 * The permission catalogue. Every API route declares one of these (or is
 * public / needs only a login). Built-in roles follow Keystone's
 * admin ⊃ member ⊃ reader; custom roles are any subset of this list.
 */
export const PERMISSIONS = {
  'projects:read': 'see a project and its members',
  'projects:write': 'create, update and delete projects (system)',
  'iam:read': 'list users, groups, roles and role assignments (system)',
  'iam:write': 'create and change users, groups, roles, role assignments; manage any token (system)',
  'audit:read': 'query the audit log (system)',
  'runs:read': 'list and inspect runs, their timelines and logs',
  'runs:operate': 'cancel, retry, skip a step of, approve or signal a run',
  'events:read': 'read and stream events',
  'resources:read': 'list and inspect resources',
  'resources:write': 'create, update and delete resources (including POST /servers)',
  'stacks:read': 'list stacks and their plans',
  'stacks:write': 'create, update and delete stack documents',
  'stacks:apply': 'plan, apply, destroy stacks',
  'inventory:read': 'list datacenters, servers, switches, utilization',
  'inventory:write': 'import and change inventory (system)',
  'ipam:read': 'list prefixes, addresses, VLANs, utilization',
  'ipam:write': 'import and change prefixes and pools (system)',
  'ipam:allocate': 'allocate and release addresses and VLANs by hand (system)',
  'allocations:read': 'list reservations and check whether a request could be met (feasibility)',
  'allocations:write': 'reserve, commit, abort and release allocations across servers, prefixes, addresses, VLANs and DNS names (system)',
  'sim:read': 'see the simulated datacenter: speed, seed, fault rules, quotas, hosts, objects',
  'sim:control': 'change the simulator\'s speed, seed, fault rules and quotas; inject drift (system)',
  'secrets:list': 'see which secrets exist (never their values)',
  'secrets:write': 'create, replace and delete secrets',
  'secrets:read': 'read secret values (audited)',
} as const;

export type Permission = keyof typeof PERMISSIONS;
export const ALL_PERMISSIONS = Object.keys(PERMISSIONS) as Permission[];

export function isPermission(p: string): p is Permission {
  return Object.prototype.hasOwnProperty.call(PERMISSIONS, p);
}

const READER: Permission[] = [
  'projects:read', 'runs:read', 'events:read', 'resources:read', 'stacks:read', 'inventory:read', 'ipam:read', 'allocations:read', 'sim:read', 'secrets:list',
];
const MEMBER: Permission[] = [...READER, 'runs:operate', 'resources:write', 'stacks:write', 'stacks:apply', 'secrets:write'];
const ADMIN: Permission[] = [...ALL_PERMISSIONS];

export const BUILTIN_ROLES: Record<string, { description: string; permissions: readonly Permission[] }> = {
  reader: { description: 'read everything in scope except secret values', permissions: READER },
  member: { description: 'reader, plus create, change and operate resources, stacks and runs', permissions: MEMBER },
  admin: { description: 'member, plus secret values, identity, audit and inventory/IPAM administration', permissions: ADMIN },
};

export function isBuiltinRole(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(BUILTIN_ROLES, name);
}

/** Scope value of a system-wide role assignment. */
export const SYSTEM_SCOPE = '*';
