import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Iam } from '../../iam/service.js';
import type { Resource } from '../../resources/types.js';
import type { BackendCatalogue, CatalogueImage } from './catalogue.js';
import { Backend, badRequest, baseUrl, filterList, isoTime, L, notFound, OsError, osContext, osName, providerId, requirePerm, type OsContext } from './common.js';

/**
 * Glance (image v2): images are `compute/Image` resources; their data lives
 * in a local image store (a directory, one file per image plus its size and
 * checksums), uploaded and downloaded through `/v2/images/{id}/file`.
 */

interface ImageData { size: number; checksum: string; os_hash_algo: 'sha512'; os_hash_value: string }

export class ImageStore {
  constructor(readonly dir: string) {}
  private path(id: string) {
    if (!/^[0-9a-f-]{36}$/.test(id)) throw badRequest(`image id ${id} is not a UUID`);
    return join(this.dir, id);
  }
  async meta(id: string): Promise<ImageData | undefined> {
    try {
      return JSON.parse(await readFile(this.path(id) + '.json', 'utf8')) as ImageData;
    } catch {
      return undefined;
    }
  }
  async write(id: string, data: Readable): Promise<ImageData> {
    await mkdir(this.dir, { recursive: true });
    const md5 = createHash('md5');
    const sha = createHash('sha512');
    let size = 0;
    const tmp = `${this.path(id)}.part-${process.pid}-${Date.now()}`;
    await pipeline(data, new Transform({
      transform(chunk: Buffer, _enc, cb) {
        md5.update(chunk);
        sha.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    }), createWriteStream(tmp));
    await rename(tmp, this.path(id));
    const meta: ImageData = { size, checksum: md5.digest('hex'), os_hash_algo: 'sha512', os_hash_value: sha.digest('hex') };
    await writeFile(this.path(id) + '.json', JSON.stringify(meta));
    return meta;
  }
  async read(id: string): Promise<Readable | undefined> {
    try {
      await stat(this.path(id));
    } catch {
      return undefined;
    }
    return createReadStream(this.path(id));
  }
  async remove(id: string): Promise<void> {
    await rm(this.path(id), { force: true });
    await rm(this.path(id) + '.json', { force: true });
  }
}

const LOCAL = 'openstack.org/image-local';
const CORE = new Set(['name', 'disk_format', 'container_format', 'visibility', 'min_disk', 'min_ram', 'protected', 'tags', 'id', 'os_hidden']);
const FORMATS = ['qcow2', 'raw', 'iso', 'vmdk'] as const;

export const IMAGE_VERSIONS = ['2.15', '2.9', '2.7', '2.6', '2.5', '2.4', '2.3', '2.2', '2.1', '2.0'];

export function imageVersions(base: string) {
  return { versions: IMAGE_VERSIONS.map((v, i) => ({ id: `v${v}`, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href: `${base}/image/v2/` }] })) };
}

export function imageRoutes(app: FastifyInstance, iam: Iam, backend: Backend, catalogue: BackendCatalogue, store: ImageStore): void {
  const ctxOf = (req: FastifyRequest) => osContext(iam, req);
  const idOf = (req: FastifyRequest) => (req.params as { id: string }).id;

  const view = async (r: Resource, ctx: OsContext) => {
    const s = r.spec as { name: string; diskFormat: string; minDiskGb: number; minRamMb: number; properties: Record<string, string>; visibility: string };
    const data = await store.meta(r.id);
    const local = r.labels[LOCAL] === '1';
    const status = r.status.phase === 'failed' ? 'killed' : r.status.phase === 'deleting' ? 'pending_delete'
      : local && !data ? 'queued' : r.status.phase === 'ready' ? 'active' : local ? 'saving' : 'importing';
    const props = JSON.parse(r.labels[L.props] ?? '{}') as Record<string, unknown>;
    return {
      ...s.properties, ...props, id: r.id, name: osName(r), status, visibility: s.visibility, protected: false, os_hidden: false,
      checksum: data?.checksum ?? null, os_hash_algo: data ? data.os_hash_algo : null, os_hash_value: data?.os_hash_value ?? null, size: data?.size ?? null, virtual_size: null,
      min_disk: s.minDiskGb, min_ram: s.minRamMb, disk_format: s.diskFormat, container_format: (props.container_format as string | undefined) ?? 'bare', owner: ctx.projectId,
      created_at: isoTime(r.createdAt), updated_at: isoTime(r.updatedAt), tags: (props.tags as string[] | undefined) ?? [],
      self: `/v2/images/${r.id}`, file: `/v2/images/${r.id}/file`, schema: '/v2/schemas/image',
    };
  };
  const catView = (i: CatalogueImage) => ({
    ...i.properties, id: i.id, name: i.name, status: 'active', visibility: 'public', protected: true, os_hidden: false, checksum: null, os_hash_algo: null, os_hash_value: null, size: null, virtual_size: null,
    min_disk: i.minDiskGb, min_ram: i.minRamMb, disk_format: i.diskFormat, container_format: 'bare', owner: null, created_at: '2024-01-01T00:00:00Z', updated_at: '2024-01-01T00:00:00Z', tags: [],
    self: `/v2/images/${i.id}`, file: `/v2/images/${i.id}/file`, schema: '/v2/schemas/image',
  });
  const must = async (ctx: OsContext, id: string) => {
    const r = await backend.find(ctx, 'compute/Image', id);
    if (!r) throw notFound('Image', id);
    return r;
  };

  app.get('/', async (req, reply) => reply.code(300).send(imageVersions(baseUrl(req))));
  app.get('/versions', async (req) => imageVersions(baseUrl(req)));

  app.get('/v2/images', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const own = [];
    for (const r of await backend.list(ctx, 'compute/Image')) own.push(await view(r, ctx));
    const all: Record<string, unknown>[] = [...(await catalogue.images()).map(catView), ...own];
    const q = { ...(req.query as Record<string, unknown>) };
    if (q.limit === undefined) q.limit = '1000';
    const { items, more } = filterList(all, q, { skip: ['member_status'] });
    return { images: items, first: '/v2/images', schema: '/v2/schemas/images', ...(more ? { next: `/v2/images?marker=${String(items[items.length - 1]!.id)}&limit=${String(q.limit)}` } : {}) };
  });
  app.get('/v2/images/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const cat = (await catalogue.images()).find((i) => i.id === idOf(req));
    if (cat) return catView(cat);
    return view(await must(ctx, idOf(req)), ctx);
  });
  app.post('/v2/images', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = z.record(z.string(), z.unknown()).safeParse(req.body ?? {});
    if (!b.success) throw badRequest('the body must be a JSON object of image properties');
    const body = b.data;
    const fmt = (body.disk_format as string | undefined) ?? 'qcow2';
    if (!(FORMATS as readonly string[]).includes(fmt)) throw badRequest(`Invalid disk format '${fmt}' for image: use one of ${FORMATS.join(', ')}`);
    const visibility = (body.visibility as string | undefined) ?? 'shared';
    if (!['public', 'private', 'shared', 'community'].includes(visibility)) throw badRequest(`Invalid visibility value: ${visibility}`);
    const properties = Object.fromEntries(Object.entries(body).filter(([k, v]) => !CORE.has(k) && typeof v === 'string')) as Record<string, string>;
    const name = typeof body.name === 'string' && body.name ? body.name : undefined;
    const r = await backend.create(ctx, 'compute/Image', name, {
      name: name ?? 'image', diskFormat: fmt, minDiskGb: Number(body.min_disk ?? 0), minRamMb: Number(body.min_ram ?? 0), properties,
      visibility: visibility === 'community' ? 'shared' : visibility,
    }, { [LOCAL]: '1', [L.props]: JSON.stringify({ container_format: body.container_format ?? 'bare', tags: Array.isArray(body.tags) ? body.tags : [] }) });
    reply.code(201);
    return view(r, ctx);
  });
  app.put('/v2/images/:id/file', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, idOf(req));
    if (await store.meta(r.id)) throw new OsError(409, 'Image status transition from active to saving is not allowed: the image already has data');
    const raw = req.body;
    const stream = raw && typeof (raw as Readable).pipe === 'function' ? (raw as Readable) : (await import('node:stream')).Readable.from([Buffer.isBuffer(raw) ? raw : Buffer.from(typeof raw === 'string' ? raw : JSON.stringify(raw ?? ''))]);
    await store.write(r.id, stream);
    return reply.code(204).send();
  });
  app.get('/v2/images/:id/file', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const r = await must(ctx, idOf(req));
    const data = await store.meta(r.id);
    const s = await store.read(r.id);
    if (!data || !s) return reply.code(204).send();
    return reply.header('content-type', 'application/octet-stream').header('content-md5', data.checksum).header('content-length', String(data.size)).send(s);
  });
  app.patch('/v2/images/:id', async (req) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, idOf(req));
    const ops = z.array(z.object({ op: z.enum(['add', 'replace', 'remove']), path: z.string(), value: z.unknown().optional() })).safeParse(req.body);
    if (!ops.success) throw badRequest('the body must be a JSON patch (application/openstack-images-v2.1-json-patch): [{"op": "replace", "path": "/name", "value": "…"}]');
    const spec = { ...(r.spec as Record<string, unknown>), properties: { ...((r.spec as { properties: Record<string, string> }).properties) } } as Record<string, unknown> & { properties: Record<string, string> };
    const labels = { ...r.labels };
    const extra = JSON.parse(labels[L.props] ?? '{}') as Record<string, unknown>;
    for (const op of ops.data) {
      const key = op.path.replace(/^\//, '');
      const set = op.op !== 'remove';
      if (key === 'name') labels[L.name] = String(op.value ?? '');
      else if (key === 'min_disk') spec.minDiskGb = Number(op.value ?? 0);
      else if (key === 'min_ram') spec.minRamMb = Number(op.value ?? 0);
      else if (key === 'visibility') spec.visibility = op.value === 'community' ? 'shared' : op.value;
      else if (key === 'tags') extra.tags = set ? op.value : [];
      else if (key === 'container_format') extra.container_format = op.value;
      else if (key === 'protected' || key === 'os_hidden') continue;
      else if (key === 'disk_format') throw new OsError(403, 'Attribute disk_format can be only replaced for a queued image.');
      else if (set) spec.properties[key] = String(op.value);
      else delete spec.properties[key];
    }
    labels[L.props] = JSON.stringify(extra);
    const next = await backend.update(r, spec, labels);
    return view(next, ctx);
  });
  app.delete('/v2/images/:id', async (req, reply) => {
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await must(ctx, idOf(req));
    const inUse = (await backend.list(ctx, 'compute/Server')).some((s) => providerId(r) && (s.spec as { image?: string }).image === providerId(r) && s.status.phase !== 'deleted');
    if (inUse) throw new OsError(409, `Image ${r.id} is in use by a server; delete the server first`);
    await backend.remove(r);
    await store.remove(r.id);
    return reply.code(204).send();
  });
  app.get('/v2/schemas/image', async () => ({ name: 'image', properties: {}, additionalProperties: { type: 'string' } }));
  app.get('/v2/schemas/images', async () => ({ name: 'images', properties: { images: { type: 'array' } } }));
}

/** The provider id an image reference resolves to (an image resource, or a catalogue image by id or name). */
export async function resolveImageRef(backend: Backend, catalogue: BackendCatalogue, ctx: OsContext, ref: string): Promise<{ providerId: string; resource?: Resource }> {
  const r = await backend.find(ctx, 'compute/Image', ref);
  if (r) return { providerId: providerId(r) ?? '', resource: r };
  const cat = (await catalogue.images()).find((i) => i.id === ref || i.name === ref);
  if (cat) return { providerId: cat.id };
  throw new OsError(400, `Image ${ref} could not be found.`);
}
