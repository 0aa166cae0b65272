import type { Permission } from './permissions.js';

/**
 * The one policy function. Every API route declares a `RoutePolicy`; the API
 * resolves the route's target project (if any) and calls `authorize`. Nothing
 * else decides access.
 *
 * Semantics (Keystone-like):
 * - a system role assignment grants its permissions on the system and on
 *   every project; a project assignment grants them on that project only;
 * - an API token may narrow its user's rights to one project and/or a subset
 *   of permissions, never widen them;
 * - a caller who cannot see a project at all gets `hidden` (the API answers
 *   404, as if the object did not exist); a caller who can see it but lacks
 *   the permission gets `forbidden` (403).
 */
export interface Principal {
  userId: string;
  userName: string;
  tokenId: string;
  tokenKind: 'session' | 'api';
  /** Permissions from system-scope assignments. */
  system: ReadonlySet<Permission>;
  /** Permissions per project from project-scope assignments. */
  projects: ReadonlyMap<string, ReadonlySet<Permission>>;
  /** The token is limited to this project. */
  tokenProject: string | null;
  /** The token is limited to these permissions. */
  tokenPermissions: ReadonlySet<Permission> | null;
}

export type RoutePolicy =
  | { scope: 'public' }
  | { scope: 'authenticated' }
  | { scope: 'system'; permission: Permission }
  /** The permission on the route's project (resolved per request). */
  | { scope: 'project'; permission: Permission }
  /** The permission on the system or on at least one project (reads of shared catalogues such as inventory). */
  | { scope: 'any'; permission: Permission };

export type Decision = { allow: true } | { allow: false; reason: 'unauthenticated' | 'forbidden' | 'hidden' };

/**
 * `project`: for project-scope policies, the project the object belongs to;
 * `null` means a system-owned object (only system scope grants it);
 * `undefined` means no project given (a list across the caller's projects).
 */
export function authorize(principal: Principal | null, policy: RoutePolicy, project?: string | null): Decision {
  if (policy.scope === 'public') return { allow: true };
  if (!principal) return { allow: false, reason: 'unauthenticated' };
  if (policy.scope === 'authenticated') return { allow: true };
  const perm = policy.permission;
  if (principal.tokenPermissions && !principal.tokenPermissions.has(perm)) {
    return { allow: false, reason: policy.scope === 'project' && project !== undefined && !canSee(principal, project) ? 'hidden' : 'forbidden' };
  }
  switch (policy.scope) {
    case 'system':
      return principal.tokenProject === null && principal.system.has(perm) ? { allow: true } : { allow: false, reason: 'forbidden' };
    case 'any':
      return visibleProjects(principal, perm) === 'all' || (visibleProjects(principal, perm) as string[]).length > 0 ? { allow: true } : { allow: false, reason: 'forbidden' };
    case 'project': {
      if (project === undefined) {
        // a list across projects: allowed when the permission is held somewhere; the handler filters
        const vis = visibleProjects(principal, perm);
        return vis === 'all' || vis.length > 0 ? { allow: true } : { allow: false, reason: 'forbidden' };
      }
      if (can(principal, perm, project)) return { allow: true };
      return { allow: false, reason: canSee(principal, project) ? 'forbidden' : 'hidden' };
    }
  }
}

/** Whether the principal holds `perm` on `project` (`null`: a system-owned object). */
export function can(principal: Principal, perm: Permission, project: string | null): boolean {
  if (principal.tokenPermissions && !principal.tokenPermissions.has(perm)) return false;
  if (principal.tokenProject !== null && principal.tokenProject !== project) return false;
  if (principal.system.has(perm)) return true;
  if (project === null) return false;
  return principal.projects.get(project)?.has(perm) ?? false;
}

/** Whether the principal may know that `project` (and its objects) exist. */
export function canSee(principal: Principal, project: string | null): boolean {
  if (principal.tokenProject !== null && principal.tokenProject !== project) return false;
  if (principal.system.size > 0) return true;
  if (project === null) return false;
  return (principal.projects.get(project)?.size ?? 0) > 0;
}

/** The projects where the principal holds `perm`: 'all' for system holders. */
export function visibleProjects(principal: Principal, perm: Permission): 'all' | string[] {
  if (principal.tokenPermissions && !principal.tokenPermissions.has(perm)) return [];
  if (principal.tokenProject !== null) {
    return principal.system.has(perm) || principal.projects.get(principal.tokenProject)?.has(perm) ? [principal.tokenProject] : [];
  }
  if (principal.system.has(perm)) return 'all';
  return [...principal.projects].filter(([, perms]) => perms.has(perm)).map(([p]) => p).sort();
}
