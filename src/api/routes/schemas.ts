import { z } from 'zod';
import { ALL_PERMISSIONS } from '../../iam/permissions.js';
import { NAME_HINT, NAME_RE } from '../../iam/service.js';
import { displayTextSchema } from '../../core/names.js';

/** Response and request schemas of the identity API (one source: validation, types, OpenAPI). */
export const Name = z.string().min(1).max(64).regex(NAME_RE, NAME_HINT).describe('an identity name: lower-case letters, digits, ".", "_", "-", "@"');
/** A token's name: display text (docs/api.md, "Names and labels"). */
export const TokenName = displayTextSchema(100, 1);
/** Descriptions and display names: display text. */
export const Description = displayTextSchema(1000).nullable().optional();
export const PermissionName = z.enum(ALL_PERMISSIONS as [string, ...string[]]);

export const UserOut = z.object({
  id: z.string(), name: z.string(), displayName: z.string().nullable(), email: z.string().nullable(), disabled: z.boolean(), hasPassword: z.boolean(),
  revision: z.number(), createdAt: z.number(), updatedAt: z.number(),
}).meta({ id: 'User' });
export const GroupOut = z.object({ id: z.string(), name: z.string(), description: z.string().nullable(), revision: z.number(), createdAt: z.number(), updatedAt: z.number() }).meta({ id: 'Group' });
export const RoleOut = z.object({ id: z.string(), name: z.string(), description: z.string().nullable(), permissions: z.array(z.string()), builtin: z.boolean(), revision: z.number(), createdAt: z.number(), updatedAt: z.number() }).meta({ id: 'Role' });
export const ProjectOut = z.object({ id: z.string(), name: z.string(), description: z.string().nullable(), revision: z.number(), createdAt: z.number(), updatedAt: z.number() }).meta({ id: 'Project' });
export const AssignmentOut = z.object({ id: z.string(), role: z.string(), user: z.string().nullable(), group: z.string().nullable(), project: z.string().nullable(), system: z.boolean(), createdAt: z.number() }).meta({ id: 'RoleAssignment' });
export const TokenOut = z.object({
  id: z.string(), kind: z.enum(['session', 'api']), userId: z.string(), name: z.string().nullable(), project: z.string().nullable(), permissions: z.array(z.string()).nullable(),
  expiresAt: z.number(), revokedAt: z.number().nullable(), lastUsedAt: z.number().nullable(), createdAt: z.number(),
}).meta({ id: 'Token' });
export const AuditOut = z.object({
  id: z.string(), at: z.number(), actorId: z.string().nullable(), actorName: z.string().nullable(), tokenId: z.string().nullable(), action: z.string(), method: z.string(), route: z.string(),
  target: z.string().nullable(), project: z.string().nullable(), outcome: z.enum(['allowed', 'denied', 'failed']), status: z.number(), requestId: z.string().nullable(), message: z.string().nullable(),
}).meta({ id: 'AuditEntry' });
export const SecretOut = z.object({ id: z.string(), project: z.string(), name: z.string(), description: z.string().nullable(), owner: z.string().nullable(), revision: z.number(), createdAt: z.number(), updatedAt: z.number() }).meta({ id: 'Secret' });

export const Password = z.string().min(1).max(1024);
