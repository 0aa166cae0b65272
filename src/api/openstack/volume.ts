import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Iam } from '../../iam/service.js';
import type { Resource } from '../../resources/types.js';
import type { BackendCatalogue } from './catalogue.js';
import { Backend, badRequest, baseUrl, filterList, indexByProviderId, isoTime, L, notFound, OsError, osContext, osName, refOf, requirePerm, type OsContext } from './common.js';
import { resolveImageRef } from './image.js';

/**
 * Cinder (block storage v3): volumes are `storage/Volume` resources, empty or
 * made from an image; extend grows them in place; attach/detach changes
 * their `attachTo` in place (also through Nova's os-volume_attachments).
 */

export const VOLUME_MIN = [3, 0] as const;
export const VOLUME_MAX = [3, 59] as const;

export function volumeVersionDoc(base: string) {
  return {
    id: 'v3.0', status: 'CURRENT', version: VOLUME_MAX.join('.'), min_version: VOLUME_MIN.join('.'), updated: '2023-10-01T00:00:00Z',
    links: [{ rel: 'self', href: `${base}/volume/v3/` }], 'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.volume+json;version=3' }],
  };
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw badRequest(`Invalid input for field/attribute ${i.path.join('.') || 'body'}: ${i.message}`);
  }
  return r.data;
}

export function volumeStatus(r: Resource): string {
  const s = r.spec as { attachTo?: string };
  const o = r.status.outputs;
  switch (r.status.phase) {
    case 'pending':
    case 'creating':
      return 'creating';
    case 'ready':
      return s.attachTo ? 'in-use' : 'available';
    case 'updating':
      if ((o.sizeGb as number | undefined) !== undefined && (o.sizeGb as number) < (r.spec as { sizeGb: number }).sizeGb) return 'extending';
      if (s.attachTo && o.attachedTo !== s.attachTo) return 'attaching';
      if (!s.attachTo && o.attachedTo) return 'detaching';
      return s.attachTo ? 'in-use' : 'available';
    case 'deleting':
      return 'deleting';
    case 'failed':
      return 'error';
    default:
      return 'deleted';
  }
}

export function volumeRoutes(app: FastifyInstance, iam: Iam, backend: Backend, catalogue: BackendCatalogue): void {
  const ctxOf = async (req: FastifyRequest, reply: FastifyReply) => {
    const ctx = await osContext(iam, req);
    const p = (req.params as { project?: string }).project;
    if (p && p !== ctx.projectId) throw new OsError(403, `This token is scoped to project ${ctx.projectId}, not ${p}.`);
    const h = req.headers['openstack-api-version'];
    const m = typeof h === 'string' ? /volume\s+(\S+)/i.exec(h) : null;
    let v = VOLUME_MIN.join('.');
    if (m) {
      const asked = m[1] === 'latest' ? VOLUME_MAX.join('.') : m[1]!;
      const mm = /^3\.(\d+)$/.exec(asked);
      if (!mm || Number(mm[1]) > VOLUME_MAX[1]) throw new OsError(406, `Version ${asked} is not supported by the API. Minimum is 3.0 and maximum is ${VOLUME_MAX.join('.')}.`);
      v = asked;
    }
    reply.header('openstack-api-version', `volume ${v}`).header('vary', 'OpenStack-API-Version');
    return ctx;
  };
  const idOf = (req: FastifyRequest) => (req.params as { id: string }).id;
  const view = (r: Resource, ctx: OsContext, servers: Map<string, Resource>) => {
    const s = r.spec as { sizeGb: number; type: string; image?: string; attachTo?: string; bootable: boolean };
    const server = s.attachTo ? servers.get(s.attachTo) : undefined;
    const status = volumeStatus(r);
    return {
      id: r.id, name: osName(r) || null, status, size: s.sizeGb, availability_zone: 'nova', created_at: isoTime(r.createdAt), updated_at: isoTime(r.updatedAt),
      attachments: server && status === 'in-use' ? [{ server_id: server.id, attachment_id: r.id, volume_id: r.id, id: r.id, device: (r.status.outputs.device as string | undefined) ?? '/dev/vdb', host_name: null, attached_at: isoTime(r.updatedAt) }] : [],
      volume_type: s.type, bootable: String(s.bootable || !!s.image), encrypted: false, multiattach: false, description: r.labels[L.description] ?? null, metadata: {},
      links: [{ rel: 'self', href: `${ctx.base}/volume/v3/${ctx.projectId}/volumes/${r.id}` }], user_id: r.labels[L.user] ?? ctx.userId,
      snapshot_id: null, source_volid: null, consistencygroup_id: null, replication_status: null, migration_status: null, 'os-vol-tenant-attr:tenant_id': ctx.projectId,
      ...(r.labels[L.image] ? { volume_image_metadata: { image_id: r.labels[L.image] } } : {}),
    };
  };
  const servers = (ctx: OsContext) => indexByProviderId(backend, ctx, ['compute/Server']);
  const must = async (ctx: OsContext, id: string) => {
    const r = await backend.find(ctx, 'storage/Volume', id);
    if (!r) throw notFound('Volume', id);
    return r;
  };

  app.get('/', async (req, reply) => reply.code(300).send({ versions: [volumeVersionDoc(baseUrl(req))] }));
  app.get('/v3', async (req) => ({ versions: [volumeVersionDoc(baseUrl(req))] }));
  app.get('/v3/', async (req) => ({ versions: [volumeVersionDoc(baseUrl(req))] }));

  const listing = (detail: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const ctx = await ctxOf(req, reply);
    requirePerm(ctx, 'resources:read');
    const idx = await servers(ctx);
    const all = (await backend.list(ctx, 'storage/Volume')).map((r) => view(r, ctx, idx));
    const { items, more } = filterList(all as unknown as Record<string, unknown>[], req.query as Record<string, unknown>, { skip: ['all_tenants', 'with_count'] });
    const out = detail ? items : items.map((x) => ({ id: x.id, name: x.name, links: x.links }));
    return { volumes: out, ...(more ? { volumes_links: [{ rel: 'next', href: `${ctx.base}/volume/v3/${ctx.projectId}/volumes${detail ? '/detail' : ''}?marker=${String(items[items.length - 1]!.id)}` }] } : {}) };
  };
  app.get('/v3/:project/volumes', listing(false));
  app.get('/v3/:project/volumes/detail', listing(true));
  app.get('/v3/:project/volumes/:id', async (req, reply) => {
    const ctx = await ctxOf(req, reply);
    requirePerm(ctx, 'resources:read');
    return { volume: view(await must(ctx, idOf(req)), ctx, await servers(ctx)) };
  });
  app.post('/v3/:project/volumes', async (req, reply) => {
    const ctx = await ctxOf(req, reply);
    requirePerm(ctx, 'resources:write');
    const b = parse(z.object({ volume: z.object({ size: z.coerce.number().int().positive().optional(), name: z.string().max(255).nullable().optional(), description: z.string().nullable().optional(), imageRef: z.string().nullable().optional(), volume_type: z.string().nullable().optional(), availability_zone: z.string().nullable().optional(), metadata: z.record(z.string(), z.string()).optional(), source_volid: z.string().nullable().optional(), snapshot_id: z.string().nullable().optional() }).loose() }), req.body).volume;
    if (b.snapshot_id || b.source_volid) throw badRequest('Creating a volume from a snapshot or another volume is not supported here; give size (and imageRef to make it from an image)');
    if (!b.size) throw badRequest('Invalid input received: size is required');
    let image: { providerId: string; resource?: Resource } | undefined;
    if (b.imageRef) {
      image = await resolveImageRef(backend, catalogue, ctx, b.imageRef);
      if (image.resource) image.providerId = await refOf(backend, image.resource, 'image');
    }
    const r = await backend.create(ctx, 'storage/Volume', b.name ?? undefined, {
      sizeGb: b.size, ...(b.volume_type ? { type: b.volume_type } : {}), ...(image ? { image: image.providerId, bootable: true } : {}),
    }, { ...(b.description ? { [L.description]: b.description } : {}), ...(b.imageRef ? { [L.image]: b.imageRef } : {}) });
    reply.code(202);
    return { volume: view(r, ctx, new Map()) };
  });
  app.put('/v3/:project/volumes/:id', async (req, reply) => {
    const ctx = await ctxOf(req, reply);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, idOf(req));
    const b = parse(z.object({ volume: z.object({ name: z.string().max(255).nullable().optional(), description: z.string().nullable().optional() }).loose() }), req.body).volume;
    const labels = { ...r.labels, ...(b.name !== undefined ? { [L.name]: b.name ?? '' } : {}), ...(b.description !== undefined ? { [L.description]: b.description ?? '' } : {}) };
    return { volume: view(await backend.update(r, r.spec, labels), ctx, await servers(ctx)) };
  });
  app.delete('/v3/:project/volumes/:id', async (req, reply) => {
    const ctx = await ctxOf(req, reply);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, idOf(req));
    const st = volumeStatus(r);
    if (!['available', 'error'].includes(st)) throw badRequest(`Invalid volume: Volume status must be available or error, but current status is: ${st}.`);
    await backend.remove(r);
    return reply.code(202).send();
  });
  app.post('/v3/:project/volumes/:id/action', async (req, reply) => {
    const ctx = await ctxOf(req, reply);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, idOf(req));
    const b = (req.body ?? {}) as Record<string, unknown>;
    const action = Object.keys(b)[0];
    const st = volumeStatus(r);
    const spec = r.spec as { sizeGb: number; attachTo?: string };
    switch (action) {
      case 'os-extend': {
        const n = Number((b[action] as { new_size?: unknown } | null)?.new_size);
        if (!Number.isInteger(n) || n <= spec.sizeGb) throw badRequest(`Invalid input received: New size for extend must be greater than current size. (current: ${spec.sizeGb}, extended: ${String((b[action] as { new_size?: unknown } | null)?.new_size)}).`);
        if (st !== 'available' && st !== 'in-use') throw badRequest(`Invalid volume: Volume status must be available or in-use to extend, but current status is: ${st}.`);
        await backend.update(r, { ...r.spec, sizeGb: n });
        break;
      }
      case 'os-attach': {
        const a = (b[action] ?? {}) as { instance_uuid?: string };
        if (!a.instance_uuid) throw badRequest('os-attach needs instance_uuid');
        if (st !== 'available') throw badRequest(`Invalid volume: Volume status must be available to attach, but current status is: ${st}.`);
        const server = await backend.find(ctx, 'compute/Server', a.instance_uuid);
        if (!server) throw notFound('Instance', a.instance_uuid);
        await backend.update(r, { ...r.spec, attachTo: await refOf(backend, server, 'server') });
        break;
      }
      case 'os-detach': {
        if (!spec.attachTo) throw badRequest('Invalid volume: Unable to detach volume. Volume status must be \'in-use\' and attach_status must be \'attached\' to detach.');
        const next = { ...r.spec };
        delete next.attachTo;
        await backend.update(r, next);
        break;
      }
      case 'os-reserve':
      case 'os-unreserve':
      case 'os-begin_detaching':
      case 'os-roll_detaching':
        break;
      default:
        throw badRequest(`Action ${action ?? '(none)'} is not supported here; supported: os-extend, os-attach, os-detach`);
    }
    return reply.code(202).send();
  });
  app.get('/v3/:project/types', async (req, reply) => {
    await ctxOf(req, reply);
    return { volume_types: [{ id: 'standard', name: 'standard', description: null, is_public: true, extra_specs: {}, 'os-volume-type-access:is_public': true }] };
  });
  app.get('/v3/:project/limits', async (req, reply) => {
    const ctx = await ctxOf(req, reply);
    const q = await catalogue.quota(ctx.project);
    const vols = await backend.list(ctx, 'storage/Volume');
    return { limits: { rate: [], absolute: { maxTotalVolumeGigabytes: q.volumeGb, totalGigabytesUsed: vols.reduce((a, v) => a + (v.spec as { sizeGb: number }).sizeGb, 0), maxTotalVolumes: 1000, totalVolumesUsed: vols.length, maxTotalSnapshots: 0, totalSnapshotsUsed: 0, maxTotalBackups: 0, totalBackupsUsed: 0, maxTotalBackupGigabytes: 0, totalBackupGigabytesUsed: 0 } } };
  });
}
