import { z } from 'zod';
import { parseWith, parseYamlText } from '../../core/input.js';
import { Ipam } from '../../ipam/ipam.js';
import { AllocateAddressSchema, AllocatePrefixSchema, AllocateVlanSchema, CreatePrefixSchema, CreateVlanPoolSchema, PrefixKindSchema } from '../../ipam/schemas.js';
import { defineRoute, encodeCursor, decodeCursor, PageQuery, type AnyRoute, type ApiDeps } from '../route.js';

export function isIpamApi(x: unknown): x is Ipam {
  return x instanceof Ipam;
}

/** IPAM values as JSON: 128-bit counts (bigint) become decimal strings. */
export const json = <T>(v: T): T => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))) as T;

/**
 * IPAM: prefixes, addresses, floating IPs, VLAN/VNI pools and their
 * utilization. Reads for anyone holding ipam:read somewhere; creating and
 * importing pools needs ipam:write, allocating and releasing by hand needs
 * ipam:allocate (both system).
 */
export function ipamRoutes(_deps: ApiDeps, ipam: Ipam): AnyRoute[] {
  const tags = ['ipam'];
  const read = { scope: 'any', permission: 'ipam:read' } as const;
  const write = { scope: 'system', permission: 'ipam:write' } as const;
  const alloc = { scope: 'system', permission: 'ipam:allocate' } as const;
  const Id = z.object({ id: z.string().min(1).max(200) });
  const ImportDoc = z.strictObject({ prefixes: z.array(CreatePrefixSchema.strict()).max(10_000).default([]), vlanPools: z.array(CreateVlanPoolSchema.strict()).max(1000).default([]) });
  return [
    defineRoute({
      method: 'GET', url: '/ipam/prefixes', summary: 'List prefixes (filters: scope, parent, kind, holder)', tags, policy: read,
      schema: { querystring: z.object({ scope: z.string().max(64).optional(), parentId: z.string().max(200).optional(), kind: PrefixKindSchema.optional(), holder: z.string().max(256).optional() }) },
      handler: async ({ query }) => ({ items: json(await ipam.listPrefixes({ ...query })), nextCursor: null }),
    }),
    defineRoute({ method: 'GET', url: '/ipam/prefixes/:id', summary: 'Get a prefix', tags, policy: read, schema: { params: Id }, handler: async ({ params }) => json(await ipam.getPrefix(params.id)) }),
    defineRoute({ method: 'GET', url: '/ipam/prefixes/:id/utilization', summary: 'How much of a prefix is used', tags, policy: read, schema: { params: Id }, handler: async ({ params }) => json(await ipam.prefixUtilization(params.id)) }),
    defineRoute({
      method: 'GET', url: '/ipam/addresses', summary: 'List allocated addresses (filters: prefix, holder)', tags, policy: read,
      schema: { querystring: PageQuery.extend({ prefixId: z.string().max(200).optional(), holder: z.string().max(256).optional() }) },
      handler: async ({ query }) => {
        const rows = await ipam.listAddresses({ ...(query.prefixId ? { prefixId: query.prefixId } : {}), ...(query.holder ? { holder: query.holder } : {}), ...(decodeCursor(query.cursor) ? { after: decodeCursor(query.cursor) } : {}), limit: query.limit + 1 });
        const page = rows.slice(0, query.limit);
        return { items: json(page), nextCursor: encodeCursor(rows.length > query.limit ? page[page.length - 1]!.id : null) };
      },
    }),
    defineRoute({ method: 'GET', url: '/ipam/vlan-pools', summary: 'List VLAN/VNI pools', tags, policy: read, schema: { querystring: z.object({ scope: z.string().max(64).optional() }) }, handler: async ({ query }) => ({ items: json(await ipam.listVlanPools(query.scope ? { scope: query.scope } : {})), nextCursor: null }) }),
    defineRoute({ method: 'GET', url: '/ipam/vlan-pools/:id/utilization', summary: 'How much of a VLAN pool is used', tags, policy: read, schema: { params: Id }, handler: async ({ params }) => json(await ipam.vlanPoolUtilization(params.id)) }),
    defineRoute({ method: 'GET', url: '/ipam/vlans', summary: 'List VLAN allocations', tags, policy: read, schema: { querystring: z.object({ poolId: z.string().max(200).optional(), holder: z.string().max(256).optional() }) }, handler: async ({ query }) => ({ items: json(await ipam.listVlans({ ...query })), nextCursor: null }) }),
    defineRoute({ method: 'POST', url: '/ipam/prefixes', summary: 'Create a prefix (admin)', tags, policy: write, schema: { body: CreatePrefixSchema.strict() }, handler: async ({ body, reply }) => { reply.code(201); return json(await ipam.createPrefix(body)); } }),
    defineRoute({ method: 'DELETE', url: '/ipam/prefixes/:id', summary: 'Delete an empty prefix (admin)', tags, policy: write, schema: { params: Id }, handler: async ({ params }) => { await ipam.deletePrefix(params.id); return undefined; } }),
    defineRoute({ method: 'POST', url: '/ipam/vlan-pools', summary: 'Create a VLAN/VNI pool (admin)', tags, policy: write, schema: { body: CreateVlanPoolSchema.strict() }, handler: async ({ body, reply }) => { reply.code(201); return json(await ipam.createVlanPool(body)); } }),
    defineRoute({
      method: 'POST', url: '/ipam/import', summary: 'Import prefixes and VLAN pools from a YAML or JSON document { prefixes: [...], vlanPools: [...] } (admin)', tags, policy: write,
      schema: { body: z.strictObject({ document: z.string().min(1).max(5_000_000) }) },
      handler: async ({ body }) => {
        const raw = parseYamlText(body.document, { file: 'document', code: 'ipam.invalid_document' }).value;
        const doc = parseWith(ImportDoc, raw ?? {}, 'ipam.invalid_document', { prefix: ['document'], root: 'document' });
        const created = { prefixes: 0, vlanPools: 0, existing: 0 };
        for (const p of doc.prefixes) {
          if (await ipam.findPrefix(p.scope, p.cidr)) created.existing++;
          else {
            await ipam.createPrefix(p);
            created.prefixes++;
          }
        }
        const pools = await ipam.listVlanPools();
        for (const v of doc.vlanPools) {
          if (pools.some((x) => x.name === v.name)) created.existing++;
          else {
            await ipam.createVlanPool(v);
            created.vlanPools++;
          }
        }
        return created;
      },
    }),
    defineRoute({ method: 'POST', url: '/ipam/prefixes/allocate', summary: 'Carve a child prefix (admin)', tags, policy: alloc, schema: { body: AllocatePrefixSchema.strict() }, handler: async ({ body }) => json(await ipam.allocatePrefix({ ...body, parentId: await ipam.resolvePrefixRef(body.parentId) })) }),
    defineRoute({ method: 'POST', url: '/ipam/prefixes/:id/release', summary: 'Release an allocated child prefix (admin)', tags, policy: alloc, schema: { params: Id, body: z.strictObject({ holder: z.string().max(256).optional() }).nullish() }, handler: async ({ params, body }) => { await ipam.releasePrefix(params.id, body?.holder ? { holder: body.holder } : {}); return undefined; } }),
    defineRoute({ method: 'POST', url: '/ipam/addresses/allocate', summary: 'Allocate addresses, all or nothing (admin)', tags, policy: alloc, schema: { body: AllocateAddressSchema.strict() }, handler: async ({ body }) => ({ items: json(await ipam.allocateAddresses({ ...body, prefixId: await ipam.resolvePrefixRef(body.prefixId) })), nextCursor: null }) }),
    defineRoute({ method: 'POST', url: '/ipam/addresses/:id/release', summary: 'Release an address (admin)', tags, policy: alloc, schema: { params: Id, body: z.strictObject({ holder: z.string().max(256).optional() }).nullish() }, handler: async ({ params, body }) => json(await ipam.releaseAddress({ id: params.id, ...(body?.holder ? { holder: body.holder } : {}) })) }),
    defineRoute({ method: 'POST', url: '/ipam/vlans/allocate', summary: 'Allocate VLAN/VNI ids, all or nothing (admin)', tags, policy: alloc, schema: { body: AllocateVlanSchema.strict() }, handler: async ({ body }) => ({ items: json(await ipam.allocateVlans(body)), nextCursor: null }) }),
    defineRoute({ method: 'POST', url: '/ipam/vlans/:id/release', summary: 'Release a VLAN allocation (admin)', tags, policy: alloc, schema: { params: Id, body: z.strictObject({ holder: z.string().max(256).optional() }).nullish() }, handler: async ({ params, body }) => json(await ipam.releaseVlan({ id: params.id, ...(body?.holder ? { holder: body.holder } : {}) })) }),
  ];
}
