import { z } from 'zod';
import { parseWith } from '../../core/input.js';
import { NotFoundError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import { Inventory } from '../../inventory/inventory.js';
import { exportInventory, importInventory } from '../../inventory/yaml.js';
import { AllocateServersSchema, ServerStateSchema, type ServerState } from '../../inventory/schemas.js';
import { defineRoute, encodeCursor, decodeCursor, PageQuery, type AnyRoute, type ApiDeps } from '../route.js';

export function isInventoryApi(x: unknown): x is Inventory {
  return x instanceof Inventory;
}

/**
 * Inventory: datacenters, racks, server types, bare-metal servers, switches,
 * hubs, hot pools. Shared catalogues: readable by anyone holding
 * inventory:read somewhere; import, lifecycle changes, allocation and
 * release need inventory:write on the system; BMC credentials need
 * secrets:read on the system (audited).
 */
export function inventoryRoutes(_deps: ApiDeps, inv: Inventory): AnyRoute[] {
  const tags = ['inventory'];
  const read = { scope: 'any', permission: 'inventory:read' } as const;
  const write = { scope: 'system', permission: 'inventory:write' } as const;
  const items = <T>(xs: T[]) => ({ items: redact(xs), nextCursor: null });
  const Id = z.object({ id: z.string().min(1).max(200) });
  return [
    defineRoute({ method: 'GET', url: '/inventory/datacenters', summary: 'List datacenters', tags, policy: read, schema: {}, handler: async () => items(await inv.listDatacenters()) }),
    defineRoute({ method: 'GET', url: '/inventory/racks', summary: 'List racks', tags, policy: read, schema: { querystring: z.object({ datacenter: z.string().max(64).optional() }) }, handler: async ({ query }) => items(await inv.listRacks(query.datacenter)) }),
    defineRoute({ method: 'GET', url: '/inventory/server-types', summary: 'List server types', tags, policy: read, schema: {}, handler: async () => items(await inv.listServerTypes()) }),
    defineRoute({
      method: 'GET', url: '/inventory/servers', summary: 'List bare-metal servers (filters: type, datacenter, state, holder)', tags, policy: read,
      schema: { querystring: PageQuery.extend({ type: z.string().max(64).optional(), datacenter: z.string().max(64).optional(), state: z.string().max(300).optional().describe('states separated by commas'), holder: z.string().max(256).optional() }) },
      handler: async ({ query }) => {
        const states = query.state?.split(',').filter(Boolean).map((s, i) => parseWith(ServerStateSchema, s, 'api.invalid_request', { root: 'state', prefix: ['state', i] })) as ServerState[] | undefined;
        const rows = await inv.listServers({
          ...(query.type ? { type: query.type } : {}), ...(query.datacenter ? { datacenter: query.datacenter } : {}), ...(states?.length ? { state: states } : {}),
          ...(query.holder ? { holder: query.holder } : {}), ...(decodeCursor(query.cursor) ? { after: decodeCursor(query.cursor) } : {}), limit: query.limit + 1,
        });
        const page = rows.slice(0, query.limit);
        return { items: redact(page), nextCursor: encodeCursor(rows.length > query.limit ? page[page.length - 1]!.id : null) };
      },
    }),
    defineRoute({ method: 'GET', url: '/inventory/servers/:id', summary: 'Get a bare-metal server', tags, policy: read, schema: { params: Id }, handler: async ({ params }) => redact(await inv.getServer(params.id)) }),
    defineRoute({ method: 'GET', url: '/inventory/servers/:id/history', summary: 'A server\'s lifecycle history', tags, policy: read, schema: { params: Id }, handler: async ({ params }) => items(await inv.serverHistory(params.id)) }),
    defineRoute({
      method: 'GET', url: '/inventory/servers/:id/bmc', summary: 'Reveal a server\'s BMC credentials (secrets:read on the system; audited)', tags, policy: { scope: 'system', permission: 'secrets:read' }, audit: 'always',
      schema: { params: Id },
      handler: async ({ params, reply, auditNote }) => {
        const c = await inv.getBmcCredentials(params.id);
        if (!c) throw new NotFoundError('inventory.bmc_not_found', `server ${params.id} has no BMC credentials`);
        auditNote(`revealed BMC credentials of ${params.id}`);
        reply.header('cache-control', 'no-store');
        return c;
      },
    }),
    defineRoute({ method: 'GET', url: '/inventory/switches', summary: 'List switches', tags, policy: read, schema: { querystring: z.object({ datacenter: z.string().max(64).optional() }) }, handler: async ({ query }) => items(await inv.listSwitches(query.datacenter)) }),
    defineRoute({ method: 'GET', url: '/inventory/switches/:id/ports', summary: 'A switch\'s ports and what is cabled to them', tags, policy: read, schema: { params: Id }, handler: async ({ params }) => items(await inv.listSwitchPorts(params.id)) }),
    defineRoute({ method: 'GET', url: '/inventory/hubs', summary: 'List hubs', tags, policy: read, schema: { querystring: z.object({ region: z.string().max(64).optional() }) }, handler: async ({ query }) => items(await inv.listHubs(query.region ? { region: query.region } : {})) }),
    defineRoute({ method: 'GET', url: '/inventory/hot-pools', summary: 'Hot pool policies', tags, policy: read, schema: {}, handler: async () => items(await inv.listHotPoolPolicies()) }),
    defineRoute({
      method: 'GET', url: '/inventory/utilization', summary: 'Servers by state for every server type and datacenter', tags, policy: read, schema: {},
      handler: async () => items(await inv.utilization()),
    }),
    defineRoute({
      method: 'GET', url: '/inventory/export', summary: 'The inventory as a YAML document (BMC passwords redacted)', tags, policy: read, schema: {},
      handler: async ({ reply }) => {
        reply.type('application/yaml');
        return reply.send(await exportInventory(inv, { includeSecrets: false }));
      },
    }),
    defineRoute({
      method: 'POST', url: '/inventory/import', summary: 'Import an inventory document (YAML): datacenters, racks, types, servers, switches, hubs', tags, policy: write,
      schema: { body: z.strictObject({ document: z.string().min(1).max(5_000_000), source: z.string().max(200).optional() }) },
      handler: async ({ body }) => importInventory(inv, body.document, body.source ? { source: body.source } : {}),
    }),
    defineRoute({
      method: 'POST', url: '/inventory/servers/:id/transition', summary: 'Move a server to another lifecycle state (admin)', tags, policy: write,
      schema: { params: Id, body: z.strictObject({ to: ServerStateSchema, reason: z.string().min(1).max(1024), from: ServerStateSchema.optional() }) },
      handler: async ({ params, body, principal }) => redact(await inv.transition({ serverId: params.id, to: body.to, reason: body.reason, actor: principal.userName, ...(body.from ? { from: body.from } : {}) })),
    }),
    defineRoute({
      method: 'POST', url: '/inventory/allocate', summary: 'Allocate servers by type, datacenter and labels, all or nothing (admin)', tags, policy: write,
      schema: { body: AllocateServersSchema.strict() },
      handler: async ({ body }) => items(await inv.allocateServers(body)),
    }),
    defineRoute({
      method: 'POST', url: '/inventory/release', summary: 'Release servers by id or holder (admin)', tags, policy: write,
      schema: { body: z.strictObject({ ids: z.array(z.string().min(1)).max(10_000).optional(), holder: z.string().min(1).max(256).optional(), reason: z.string().max(1024).optional() }) },
      handler: async ({ body, principal }) => items(await inv.releaseServers({ ...body, actor: principal.userName })),
    }),
  ];
}
