import { generateKeyPairSync, randomBytes, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Iam } from '../../iam/service.js';
import type { Resource } from '../../resources/types.js';
import type { BackendCatalogue, CatalogueFlavor } from './catalogue.js';
import {
  Backend, badRequest, baseUrl, conflict, failureError, failureOf, indexByProviderId, isoTime, L, notFound, OsError, osContext, osName, providerId, refOf, requirePerm, type OsContext,
} from './common.js';
import type { NetworkApi } from './network.js';

/**
 * Nova (compute v2.1) on Infraflow resources: flavors, servers (every
 * create, action and delete is a durable resource run), keypairs, volume
 * attachments, limits and availability zones, with microversion negotiation.
 */

export const COMPUTE_MIN = [2, 1] as const;
export const COMPUTE_MAX = [2, 60] as const;
export const COMPUTE_VERSION = `${COMPUTE_MAX[0]}.${COMPUTE_MAX[1]}`;

type Version = readonly [number, number];
const atLeast = (v: Version, major: number, minor: number) => v[0] > major || (v[0] === major && v[1] >= minor);

/** The microversion asked for (OpenStack-API-Version: compute X.Y, or the legacy header); 406 outside the range. */
export function computeVersion(req: FastifyRequest): Version {
  const h = req.headers['openstack-api-version'];
  const legacy = req.headers['x-openstack-nova-api-version'];
  let asked: string | undefined;
  for (const v of (Array.isArray(h) ? h : h ? [h] : []).flatMap((x) => x.split(','))) {
    const m = /^\s*compute\s+(\S+)\s*$/i.exec(v);
    if (m) asked = m[1];
  }
  if (!asked && typeof legacy === 'string') asked = legacy.trim();
  if (!asked) return COMPUTE_MIN;
  if (asked === 'latest') return COMPUTE_MAX;
  const m = /^(\d+)\.(\d+)$/.exec(asked);
  if (!m) throw new OsError(400, `Invalid API version request string ${asked}: use MAJOR.MINOR, e.g. 2.1`);
  const v: Version = [Number(m[1]), Number(m[2])];
  if (!atLeast(v, ...COMPUTE_MIN) || atLeast(v, COMPUTE_MAX[0], COMPUTE_MAX[1] + 1)) {
    throw new OsError(406, `Version ${asked} is not supported by the API. Minimum is ${COMPUTE_MIN.join('.')} and maximum is ${COMPUTE_VERSION}.`);
  }
  return v;
}

export function computeVersionDoc(base: string) {
  return {
    id: 'v2.1', status: 'CURRENT', version: COMPUTE_VERSION, min_version: COMPUTE_MIN.join('.'), updated: '2013-07-23T11:33:21Z',
    links: [{ rel: 'self', href: `${base}/compute/v2.1/` }, { rel: 'describedby', type: 'text/html', href: 'http://docs.openstack.org/' }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
  };
}

function body<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw badRequest(`Invalid input for field/attribute ${i.path.join('.') || 'body'}. Value: ${JSON.stringify((i as { input?: unknown }).input ?? null)}. ${i.message}`);
  }
  return r.data;
}

const ServerCreate = z.object({
  server: z.object({
    name: z.string().min(1).max(255),
    flavorRef: z.union([z.string(), z.number()]).transform(String),
    imageRef: z.string().optional(),
    networks: z.union([z.literal('auto'), z.literal('none'), z.array(z.object({ uuid: z.string().optional(), port: z.string().optional(), fixed_ip: z.string().optional(), tag: z.string().optional() }))]).optional(),
    security_groups: z.array(z.object({ name: z.string() })).optional(),
    key_name: z.string().optional(),
    user_data: z.string().optional(),
    metadata: z.record(z.string(), z.string()).optional(),
    availability_zone: z.string().optional(),
    block_device_mapping_v2: z.array(z.object({
      boot_index: z.union([z.number(), z.string()]).nullable().optional(), uuid: z.string().optional(), source_type: z.string().optional(), destination_type: z.string().optional(),
      volume_size: z.union([z.number(), z.string()]).optional(), delete_on_termination: z.boolean().optional(), volume_type: z.string().optional(),
    })).optional(),
    min_count: z.number().optional(), max_count: z.number().optional(),
    config_drive: z.unknown().optional(), description: z.string().nullable().optional(), adminPass: z.string().optional(), tags: z.array(z.string()).optional(),
  }).loose(),
  'os:scheduler_hints': z.unknown().optional(),
  'OS-SCH-HNT:scheduler_hints': z.unknown().optional(),
});

/** Everything a page of server views needs, loaded once per request. */
interface ServerIndex {
  flavors: Map<string, { id: string; name: string; vcpus: number; ramMb: number; diskGb: number; extraSpecs: Record<string, string> }>;
  images: Map<string, string>;
  networks: Map<string, Resource>;
  groups: Map<string, Resource>;
  fips: Resource[];
  volumes: Resource[];
  keypairNames?: Map<string, string>;
}

export function serverStatus(r: Resource): { status: string; vmState: string; taskState: string | null; powerState: number } {
  const out = r.status.outputs;
  const off = out.status === 'SHUTOFF';
  switch (r.status.phase) {
    case 'pending':
    case 'creating': {
      const stage = r.status.conditions.find((c) => c.type === 'Provisioned' && c.status !== 'True')?.reason;
      const task = stage === 'Scheduling' ? 'scheduling' : stage === 'Networking' ? 'networking' : stage === 'BlockDeviceMapping' ? 'block_device_mapping' : 'spawning';
      return { status: 'BUILD', vmState: 'building', taskState: task, powerState: 0 };
    }
    case 'ready':
      return off ? { status: 'SHUTOFF', vmState: 'stopped', taskState: null, powerState: 4 } : { status: 'ACTIVE', vmState: 'active', taskState: null, powerState: 1 };
    case 'updating': {
      const want = (r.spec as { power?: string }).power;
      if (want === 'off' && !off) return { status: 'ACTIVE', vmState: 'active', taskState: 'powering-off', powerState: 1 };
      if (want === 'on' && off) return { status: 'SHUTOFF', vmState: 'stopped', taskState: 'powering-on', powerState: 4 };
      return off ? { status: 'SHUTOFF', vmState: 'stopped', taskState: 'updating', powerState: 4 } : { status: 'ACTIVE', vmState: 'active', taskState: 'updating', powerState: 1 };
    }
    case 'deleting':
      return { status: off ? 'SHUTOFF' : 'ACTIVE', vmState: off ? 'stopped' : 'active', taskState: 'deleting', powerState: off ? 4 : 1 };
    case 'failed':
      return { status: 'ERROR', vmState: 'error', taskState: null, powerState: 0 };
    default:
      return { status: 'DELETED', vmState: 'deleted', taskState: null, powerState: 0 };
  }
}

function flavorView(f: { id: string; name: string; vcpus: number; ramMb: number; diskGb: number; extraSpecs: Record<string, string> }, base: string, v: Version, isPublic = true) {
  return {
    id: f.id, name: f.name, ram: f.ramMb, vcpus: f.vcpus, disk: f.diskGb, swap: 0, 'OS-FLV-EXT-DATA:ephemeral': 0, 'OS-FLV-DISABLED:disabled': false,
    rxtx_factor: 1.0, 'os-flavor-access:is_public': isPublic,
    links: [{ rel: 'self', href: `${base}/compute/v2.1/flavors/${f.id}` }, { rel: 'bookmark', href: `${base}/compute/flavors/${f.id}` }],
    ...(atLeast(v, 2, 55) ? { description: null } : {}),
    ...(atLeast(v, 2, 61) ? { extra_specs: f.extraSpecs } : {}),
  };
}

function sshRsaPublic(n: Buffer, e: Buffer, comment: string): string {
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (b.length >>> (24 - 8 * i)) & 255)), b]);
  const mpint = (b: Buffer) => str(b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
  return `ssh-rsa ${Buffer.concat([str(Buffer.from('ssh-rsa')), mpint(e), mpint(n)]).toString('base64')} ${comment}`;
}

/** OpenSSH MD5 fingerprint (what nova shows). */
export function fingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? '', 'base64');
  return createHash('md5').update(blob).digest('hex').match(/../g)!.join(':');
}

export function computeRoutes(app: FastifyInstance, iam: Iam, backend: Backend, catalogue: BackendCatalogue, network: NetworkApi): void {
  const ctxOf = (req: FastifyRequest) => osContext(iam, req);
  const ver = (req: FastifyRequest, reply: FastifyReply): Version => {
    const v = computeVersion(req);
    reply.header('openstack-api-version', `compute ${v.join('.')}`).header('x-openstack-nova-api-version', v.join('.')).header('vary', 'OpenStack-API-Version, X-OpenStack-Nova-API-Version');
    return v;
  };

  app.get('/', async (req, reply) => reply.code(200).send({ versions: [computeVersionDoc(baseUrl(req))] }));
  app.get('/v2.1', async (req, reply) => {
    ver(req, reply);
    return { version: computeVersionDoc(baseUrl(req)) };
  });
  app.get('/v2.1/', async (req, reply) => {
    ver(req, reply);
    return { version: computeVersionDoc(baseUrl(req)) };
  });

  // ------------------------------------------------------------------ flavors
  const allFlavors = async (ctx: OsContext) => {
    const own = (await backend.list(ctx, 'compute/Flavor')).filter((r) => r.status.phase !== 'failed').map((r) => {
      const s = r.spec as { name: string; vcpus: number; ramMb: number; diskGb: number; extraSpecs: Record<string, string>; public: boolean };
      return { id: r.id, name: osName(r), vcpus: s.vcpus, ramMb: s.ramMb, diskGb: s.diskGb, extraSpecs: s.extraSpecs, providerId: providerId(r) ?? s.name, isPublic: s.public, resource: r as Resource | undefined };
    });
    const cat = (await catalogue.flavors()).map((f) => ({ ...f, providerId: f.id, isPublic: true, resource: undefined as Resource | undefined }));
    return [...cat, ...own];
  };
  const findFlavor = async (ctx: OsContext, id: string) => (await allFlavors(ctx)).find((f) => f.id === id);
  const flavorList = (detail: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    const q = req.query as Record<string, string>;
    let items = await allFlavors(ctx);
    if (q.minRam) items = items.filter((f) => f.ramMb >= Number(q.minRam));
    if (q.minDisk) items = items.filter((f) => f.diskGb >= Number(q.minDisk));
    if (q.marker) items = items.slice(items.findIndex((f) => f.id === q.marker) + 1);
    if (q.limit) items = items.slice(0, Number(q.limit));
    return { flavors: items.map((f) => detail ? flavorView(f, ctx.base, v, f.isPublic) : { id: f.id, name: f.name, links: flavorView(f, ctx.base, v).links, ...(atLeast(v, 2, 55) ? { description: null } : {}) }) };
  };
  app.get('/v2.1/flavors', flavorList(false));
  app.get('/v2.1/flavors/detail', flavorList(true));
  app.get('/v2.1/flavors/:id', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    const id = (req.params as { id: string }).id;
    const f = await findFlavor(ctx, id);
    if (!f) throw notFound('Flavor', id);
    return { flavor: flavorView(f, ctx.base, v, f.isPublic) };
  });
  app.get('/v2.1/flavors/:id/os-extra_specs', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    const id = (req.params as { id: string }).id;
    const f = await findFlavor(ctx, id);
    if (!f) throw notFound('Flavor', id);
    return { extra_specs: f.extraSpecs };
  });
  app.post('/v2.1/flavors/:id/os-extra_specs', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const id = (req.params as { id: string }).id;
    const r = await backend.find(ctx, 'compute/Flavor', id);
    if (!r) throw notFound('Flavor', id);
    const extra = body(z.object({ extra_specs: z.record(z.string().min(1).max(255), z.string().max(255)) }), req.body).extra_specs;
    const spec = r.spec as { extraSpecs: Record<string, string> };
    await backend.update(r, { ...r.spec, extraSpecs: { ...spec.extraSpecs, ...extra } });
    return { extra_specs: { ...spec.extraSpecs, ...extra } };
  });
  app.post('/v2.1/flavors', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = body(z.object({ flavor: z.object({ name: z.string().min(1).max(255), ram: z.coerce.number().int().positive(), vcpus: z.coerce.number().int().positive(), disk: z.coerce.number().int().min(0).default(0), id: z.string().nullable().optional(), 'os-flavor-access:is_public': z.boolean().optional() }).loose() }), req.body).flavor;
    if ((await allFlavors(ctx)).some((f) => f.name === b.name)) throw conflict(`Flavor with name ${b.name} already exists.`);
    const r = await backend.create(ctx, 'compute/Flavor', b.name, { name: b.name, vcpus: b.vcpus, ramMb: b.ram, diskGb: b.disk, public: b['os-flavor-access:is_public'] ?? true });
    const done = await backend.settle(r.id, 60_000);
    if (done.status.phase === 'failed') {
      await backend.remove(done);
      throw failureError(done);
    }
    const s = done.spec as { vcpus: number; ramMb: number; diskGb: number; extraSpecs: Record<string, string>; public: boolean };
    return { flavor: flavorView({ id: r.id, name: b.name, vcpus: s.vcpus, ramMb: s.ramMb, diskGb: s.diskGb, extraSpecs: s.extraSpecs }, ctx.base, v, s.public) };
  });
  app.delete('/v2.1/flavors/:id', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const id = (req.params as { id: string }).id;
    const r = await backend.find(ctx, 'compute/Flavor', id);
    if (!r) throw notFound('Flavor', id);
    await backend.remove(r);
    return reply.code(202).send();
  });

  // ------------------------------------------------------------------ keypairs
  const keypairView = (r: Resource, v: Version, withKey = true) => {
    const s = r.spec as { name: string; publicKey: string };
    return { name: s.name, public_key: s.publicKey, fingerprint: fingerprint(s.publicKey), ...(atLeast(v, 2, 2) ? { type: 'ssh' } : {}), ...(withKey ? { user_id: r.labels[L.user] ?? null, created_at: isoTime(r.createdAt), deleted: false, deleted_at: null, updated_at: null, id: 0 } : {}) };
  };
  const findKeypair = async (ctx: OsContext, name: string) => (await backend.list(ctx, 'compute/Keypair', { [L.name]: name }))[0];
  app.get('/v2.1/os-keypairs', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const items = (await backend.list(ctx, 'compute/Keypair')).filter((r) => r.status.phase !== 'failed');
    return { keypairs: items.map((r) => ({ keypair: keypairView(r, v, false) })), keypairs_links: [] };
  });
  app.get('/v2.1/os-keypairs/:name', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const name = (req.params as { name: string }).name;
    const r = await findKeypair(ctx, name);
    if (!r) throw notFound('Keypair', name);
    return { keypair: keypairView(r, v) };
  });
  app.post('/v2.1/os-keypairs', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = body(z.object({ keypair: z.object({ name: z.string().min(1).max(255).regex(/^[A-Za-z0-9 _.@-]+$/, 'Keypair name contains unsafe characters'), public_key: z.string().optional(), type: z.string().optional() }) }), req.body).keypair;
    if (await findKeypair(ctx, b.name)) throw conflict(`Key pair '${b.name}' already exists.`);
    let publicKey = b.public_key?.trim();
    let privateKey: string | undefined;
    if (!publicKey) {
      const kp = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const jwk = kp.publicKey.export({ format: 'jwk' });
      publicKey = sshRsaPublic(Buffer.from(jwk.n!, 'base64url'), Buffer.from(jwk.e!, 'base64url'), `Generated-by-Infraflow`);
      privateKey = kp.privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();
    }
    const r = await backend.create(ctx, 'compute/Keypair', b.name, { name: b.name, publicKey });
    const done = await backend.settle(r.id, 60_000);
    if (done.status.phase === 'failed') {
      await backend.remove(done);
      throw failureError(done);
    }
    return { keypair: { ...keypairView(done, v), ...(privateKey ? { private_key: privateKey } : {}) } };
  });
  app.delete('/v2.1/os-keypairs/:name', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const name = (req.params as { name: string }).name;
    const r = await findKeypair(ctx, name);
    if (!r) throw notFound('Keypair', name);
    await backend.remove(r);
    await backend.settle(r.id, 30_000, { gone: true });
    return reply.code(202).send();
  });

  // ------------------------------------------------------------------ servers
  const loadIndex = async (ctx: OsContext): Promise<ServerIndex> => {
    const flavors = new Map<string, ServerIndex['flavors'] extends Map<string, infer V> ? V : never>();
    for (const f of await allFlavors(ctx)) {
      flavors.set(f.providerId, f);
      flavors.set(f.name, f);
    }
    const images = new Map<string, string>();
    for (const i of await catalogue.images()) {
      images.set(i.id, i.id);
      images.set(i.name, i.id);
    }
    for (const r of await backend.list(ctx, 'compute/Image')) {
      const pid = providerId(r);
      if (pid) images.set(pid, r.id);
    }
    const [networks, groups] = await Promise.all([indexByProviderId(backend, ctx, ['network/Network']), indexByProviderId(backend, ctx, ['network/SecurityGroup'])]);
    const [fips, volumes] = await Promise.all([backend.list(ctx, 'network/FloatingIP'), backend.list(ctx, 'storage/Volume')]);
    return { flavors, images, networks, groups, fips, volumes };
  };

  const serverView = (r: Resource, ix: ServerIndex, ctx: OsContext, v: Version) => {
    const s = r.spec as { flavor: string; image?: string; keypair?: string; metadata: Record<string, string>; availabilityZone?: string; securityGroups: string[]; bootVolume?: { volume?: string; sizeGb?: number } };
    const out = r.status.outputs;
    const st = serverStatus(r);
    const pid = providerId(r);
    const addresses: Record<string, unknown[]> = {};
    for (const nic of (out.addresses ?? []) as { network?: string; ip: string; mac?: string }[]) {
      const net = nic.network ? ix.networks.get(nic.network) : undefined;
      const key = net ? osName(net) : nic.network ?? 'private';
      (addresses[key] ??= []).push({ addr: nic.ip, version: nic.ip.includes(':') ? 6 : 4, 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': nic.mac ?? null });
      for (const f of ix.fips) {
        const fo = f.status.outputs;
        if (pid && fo.address && (fo.server === pid || (fo.fixedIp === nic.ip && fo.server === pid) || (fo.fixedIp === nic.ip && fo.port && f.labels[L.port]))) {
          if (fo.fixedIp && fo.fixedIp !== nic.ip) continue;
          (addresses[key] ??= []).push({ addr: fo.address, version: 4, 'OS-EXT-IPS:type': 'floating', 'OS-EXT-IPS-MAC:mac_addr': nic.mac ?? null });
        }
      }
    }
    const flavor = ix.flavors.get(s.flavor);
    const flavorRef = atLeast(v, 2, 47)
      ? { vcpus: flavor?.vcpus ?? 0, ram: flavor?.ramMb ?? 0, disk: flavor?.diskGb ?? 0, ephemeral: 0, swap: 0, original_name: flavor?.name ?? s.flavor, extra_specs: flavor?.extraSpecs ?? {} }
      : { id: flavor?.id ?? s.flavor, links: [{ rel: 'bookmark', href: `${ctx.base}/compute/flavors/${flavor?.id ?? s.flavor}` }] };
    const imageId = s.image ? ix.images.get(s.image) ?? s.image : undefined;
    const attached = ix.volumes.filter((vol) => pid && (vol.spec as { attachTo?: string }).attachTo === pid);
    const f = r.status.phase === 'failed' ? failureOf(r) : undefined;
    return {
      id: r.id, name: osName(r), status: st.status, tenant_id: ctx.projectId, user_id: r.labels[L.user] ?? ctx.userId, metadata: s.metadata ?? {},
      hostId: out.host ? createHash('sha224').update(`${ctx.projectId}${String(out.host)}`).digest('hex') : '',
      image: imageId ? { id: imageId, links: [{ rel: 'bookmark', href: `${ctx.base}/compute/images/${imageId}` }] } : '',
      flavor: flavorRef, created: isoTime(r.createdAt), updated: isoTime(r.updatedAt), addresses,
      accessIPv4: '', accessIPv6: '', links: [{ rel: 'self', href: `${ctx.base}/compute/v2.1/servers/${r.id}` }, { rel: 'bookmark', href: `${ctx.base}/compute/servers/${r.id}` }],
      'OS-DCF:diskConfig': 'MANUAL', progress: st.status === 'BUILD' ? 0 : 100, 'OS-EXT-AZ:availability_zone': s.availabilityZone ?? (typeof out.zone === 'string' ? out.zone : 'nova'),
      config_drive: '', key_name: s.keypair ? (ix.keypairNames?.get(s.keypair) ?? s.keypair) : null,
      'OS-SRV-USG:launched_at': st.status === 'BUILD' ? null : isoTime(r.createdAt), 'OS-SRV-USG:terminated_at': null,
      'OS-EXT-STS:task_state': st.taskState, 'OS-EXT-STS:vm_state': st.vmState, 'OS-EXT-STS:power_state': st.powerState,
      security_groups: s.securityGroups.map((g) => ({ name: ix.groups.get(g) ? osName(ix.groups.get(g)!) : g })),
      'os-extended-volumes:volumes_attached': attached.map((vol) => ({ id: vol.id, ...(atLeast(v, 2, 3) ? { delete_on_termination: false } : {}) })),
      ...(atLeast(v, 2, 3) ? { 'OS-EXT-SRV-ATTR:hostname': osName(r).toLowerCase().replace(/[^a-z0-9-]/g, '-'), 'OS-EXT-SRV-ATTR:reservation_id': `r-${r.id.slice(0, 8)}`, 'OS-EXT-SRV-ATTR:launch_index': 0, 'OS-EXT-SRV-ATTR:root_device_name': '/dev/vda' } : {}),
      ...(atLeast(v, 2, 9) ? { locked: false } : {}),
      ...(atLeast(v, 2, 19) ? { description: null } : {}),
      ...(atLeast(v, 2, 26) ? { tags: [] } : {}),
      ...(f ? { fault: { code: f.reason === 'NoValidHost' ? 500 : f.reason === 'InvalidSpec' ? 400 : 500, message: f.reason === 'NoValidHost' ? `No valid host was found. ${f.message}` : f.message, created: isoTime(r.updatedAt), details: f.reason } } : {}),
    };
  };

  const withKeypairs = async (ctx: OsContext, ix: ServerIndex): Promise<ServerIndex> => {
    const names = new Map<string, string>();
    for (const k of await backend.list(ctx, 'compute/Keypair')) {
      const pid = providerId(k);
      if (pid) names.set(pid, (k.spec as { name: string }).name);
    }
    return Object.assign(ix, { keypairNames: names });
  };

  const getServer = async (ctx: OsContext, id: string) => {
    const r = await backend.find(ctx, 'compute/Server', id);
    if (!r) throw notFound('Instance', id);
    return r;
  };

  const serverList = (detail: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const q = req.query as Record<string, string | string[]>;
    const one = (k: string) => (Array.isArray(q[k]) ? (q[k] as string[])[0] : q[k] as string | undefined);
    let items = await backend.list(ctx, 'compute/Server');
    const ix = await withKeypairs(ctx, await loadIndex(ctx));
    let views = items.map((r) => ({ r, view: serverView(r, ix, ctx, v) }));
    const name = one('name');
    if (name) {
      let re: RegExp;
      try {
        re = new RegExp(name);
      } catch {
        throw badRequest(`name: ${name} is not a valid regular expression`);
      }
      views = views.filter((x) => re.test(x.view.name));
    }
    const status = one('status');
    if (status) views = views.filter((x) => x.view.status === status.toUpperCase());
    const flavor = one('flavor');
    if (flavor) views = views.filter((x) => (x.view.flavor as { id?: string; original_name?: string }).id === flavor || (x.view.flavor as { original_name?: string }).original_name === flavor);
    const image = one('image');
    if (image) views = views.filter((x) => typeof x.view.image === 'object' && x.view.image.id === image);
    const ip = one('ip');
    if (ip) views = views.filter((x) => Object.values(x.view.addresses).flat().some((a) => new RegExp(ip).test((a as { addr: string }).addr)));
    const since = one('changes-since');
    if (since) views = views.filter((x) => x.r.updatedAt >= Date.parse(since));
    const marker = one('marker');
    if (marker) {
      const i = views.findIndex((x) => x.r.id === marker);
      if (i < 0) throw badRequest(`marker [${marker}] not found`);
      views = views.slice(i + 1);
    }
    const limit = Number(one('limit') ?? 1000);
    const more = views.length > limit;
    views = views.slice(0, limit);
    items = views.map((x) => x.r);
    const servers = views.map((x) => detail ? x.view : { id: x.view.id, name: x.view.name, links: x.view.links });
    return { servers, ...(more ? { servers_links: [{ rel: 'next', href: `${ctx.base}/compute/v2.1/servers${detail ? '/detail' : ''}?limit=${limit}&marker=${items[items.length - 1]!.id}` }] } : {}) };
  };
  app.get('/v2.1/servers', serverList(false));
  app.get('/v2.1/servers/detail', serverList(true));
  app.get('/v2.1/servers/:id', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    return { server: serverView(r, await withKeypairs(ctx, await loadIndex(ctx)), ctx, v) };
  });
  app.get('/v2.1/servers/:id/ips', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    return { addresses: serverView(r, await withKeypairs(ctx, await loadIndex(ctx)), ctx, v).addresses };
  });

  app.post('/v2.1/servers', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const b = body(ServerCreate, req.body).server;
    if ((b.max_count ?? 1) > 1 || (b.min_count ?? 1) > 1) throw badRequest('min_count/max_count above 1: create servers one at a time');
    // flavor
    const flavor = await findFlavor(ctx, b.flavorRef) ?? (await allFlavors(ctx)).find((f) => f.name === b.flavorRef);
    if (!flavor) throw badRequest(`Flavor ${b.flavorRef} could not be found.`);
    const flavorRef = flavor.resource ? await refOf(backend, flavor.resource, 'flavor') : flavor.providerId;
    // image / boot volume
    let image: string | undefined;
    const resolveImage = async (ref: string) => {
      const res = await backend.find(ctx, 'compute/Image', ref);
      if (res) return refOf(backend, res, 'image');
      const cat = (await catalogue.images()).find((i) => i.id === ref || i.name === ref);
      if (cat) return cat.id;
      throw badRequest(`Image ${ref} could not be found.`);
    };
    if (b.imageRef) image = await resolveImage(b.imageRef);
    let bootVolume: Record<string, unknown> | undefined;
    const boot = b.block_device_mapping_v2?.find((d) => String(d.boot_index ?? '') === '0');
    if (boot) {
      if (boot.source_type === 'image' && boot.uuid) {
        image = await resolveImage(boot.uuid);
        if (boot.destination_type === 'volume') {
          const size = Number(boot.volume_size);
          if (!(size > 0)) throw badRequest('block_device_mapping_v2: volume_size is required to boot from a new volume made from an image');
          bootVolume = { sizeGb: size, deleteOnTermination: boot.delete_on_termination ?? false, ...(boot.volume_type ? { type: boot.volume_type } : {}) };
        }
      } else if (boot.source_type === 'volume' && boot.uuid) {
        const vol = await backend.find(ctx, 'storage/Volume', boot.uuid);
        if (!vol) throw badRequest(`Volume ${boot.uuid} could not be found.`);
        bootVolume = { volume: await refOf(backend, vol, 'volume'), deleteOnTermination: boot.delete_on_termination ?? false };
      } else {
        throw badRequest(`block_device_mapping_v2: source_type ${boot.source_type ?? '(none)'} for the boot device is not supported; use image or volume`);
      }
    }
    if (!image && !bootVolume) throw badRequest('Block Device Mapping is Invalid: You specified more local devices than the limit allows or no image: give imageRef or a boot volume');
    // networks
    const nets: Record<string, unknown>[] = [];
    const requested = b.networks === undefined || b.networks === 'auto' ? 'auto' : b.networks;
    if (requested === 'none') throw badRequest('networks "none": a server needs at least one network here');
    const list = requested === 'auto' ? [] : requested;
    if (requested === 'auto') {
      const candidates = (await backend.list(ctx, 'network/Network')).filter((n) => !(n.spec as { external?: boolean }).external && n.status.phase === 'ready');
      if (candidates.length !== 1) throw new OsError(409, candidates.length === 0 ? 'Unable to automatically allocate a network for project: create a network and subnet, or pass networks' : 'Multiple possible networks found, use a Network ID to be more specific.');
      list.push({ uuid: candidates[0]!.id });
    }
    for (const [i, n] of list.entries()) {
      if (n.port) {
        nets.push({ port: await network.portRef(ctx, n.port) });
      } else if (n.uuid) {
        const subnet = await network.subnetForServer(ctx, n.uuid, n.fixed_ip);
        nets.push({ subnet, ...(n.fixed_ip ? { fixedIp: n.fixed_ip } : {}) });
      } else throw badRequest(`networks[${i}]: give a uuid (network id) or a port`);
    }
    // security groups
    const groups: string[] = [];
    const wantedGroups = b.security_groups?.length ? b.security_groups.map((g) => g.name) : ['default'];
    for (const g of wantedGroups) groups.push(await network.securityGroupRef(ctx, g));
    let keypair: string | undefined;
    if (b.key_name) {
      const kp = await findKeypair(ctx, b.key_name);
      if (!kp) throw badRequest(`Invalid key_name provided.`);
      keypair = await refOf(backend, kp, 'keypair');
    }
    let userData: string | undefined;
    if (b.user_data) {
      const raw = Buffer.from(b.user_data, 'base64');
      if (raw.toString('base64').replace(/=+$/, '') !== b.user_data.replace(/\s/g, '').replace(/=+$/, '')) throw badRequest('Invalid input for field/attribute user_data: not base64');
      userData = raw.toString('utf8');
    }
    if (b.availability_zone) {
      const zones = await catalogue.zones();
      const zone = b.availability_zone.split(':')[0]!;
      if (zone && !zones.includes(zone)) throw badRequest(`The requested availability zone is not available: ${zone}; use one of ${zones.join(', ')}`);
    }
    const spec = {
      flavor: flavorRef, ...(image ? { image } : {}), ...(bootVolume ? { bootVolume } : {}), networks: nets, securityGroups: groups,
      ...(keypair ? { keypair } : {}), ...(userData !== undefined ? { userData } : {}), metadata: b.metadata ?? {},
      ...(b.availability_zone?.split(':')[0] ? { availabilityZone: b.availability_zone.split(':')[0] } : {}),
    };
    const r = await backend.create(ctx, 'compute/Server', b.name, spec);
    reply.code(202);
    const adminPass = b.adminPass ?? randomBytes(9).toString('base64url');
    void v;
    return {
      server: {
        id: r.id, links: [{ rel: 'self', href: `${ctx.base}/compute/v2.1/servers/${r.id}` }, { rel: 'bookmark', href: `${ctx.base}/compute/servers/${r.id}` }],
        'OS-DCF:diskConfig': 'MANUAL', security_groups: wantedGroups.map((name) => ({ name })), adminPass,
      },
    };
  });

  app.put('/v2.1/servers/:id', async (req, reply) => {
    const v = ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    const b = body(z.object({ server: z.object({ name: z.string().min(1).max(255).optional(), description: z.string().nullable().optional() }).loose() }), req.body).server;
    const next = b.name !== undefined && b.name !== osName(r) ? await backend.update(r, r.spec, { ...r.labels, [L.name]: b.name }) : r;
    return { server: serverView(next, await withKeypairs(ctx, await loadIndex(ctx)), ctx, v) };
  });

  app.delete('/v2.1/servers/:id', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    await backend.remove(r);
    // as in Neutron: the server's ports go with it, and floating IPs on them are disassociated (not deleted)
    const pid = providerId(r);
    if (pid) {
      for (const f of await backend.list(ctx, 'network/FloatingIP')) {
        const s = f.spec as { server?: string };
        if (s.server !== pid) continue;
        const spec = { ...f.spec };
        delete spec.server;
        const labels = { ...f.labels };
        delete labels[L.port];
        await backend.update(f, spec, labels);
      }
    }
    return reply.code(204).send();
  });

  app.post('/v2.1/servers/:id/action', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    const b = (req.body ?? {}) as Record<string, unknown>;
    const action = Object.keys(b)[0];
    const st = serverStatus(r);
    const power = async (want: 'on' | 'off', name: string, mustBe: string) => {
      if (st.status !== mustBe || st.taskState) throw conflict(`Cannot '${name}' instance ${r.id} while it is in vm_state ${st.vmState}${st.taskState ? ` (task_state ${st.taskState})` : ''}`);
      await backend.update(r, { ...r.spec, power: want });
    };
    switch (action) {
      case 'os-stop':
        await power('off', 'stop', 'ACTIVE');
        break;
      case 'os-start':
        await power('on', 'start', 'SHUTOFF');
        break;
      case 'reboot': {
        // a reboot is a power cycle: off, then on, as two queued runs of the same resource
        if (st.status !== 'ACTIVE' || st.taskState) throw conflict(`Cannot 'reboot' instance ${r.id} while it is in vm_state ${st.vmState}`);
        const off = await backend.update(r, { ...r.spec, power: 'off' });
        const settled = await backend.settle(off.id, 60_000);
        await backend.update(settled, { ...settled.spec, power: 'on' });
        break;
      }
      default:
        throw badRequest(`Action ${action ?? '(none)'} is not supported by this service; supported: os-start, os-stop, reboot`);
    }
    return reply.code(202).send();
  });

  // metadata (in place: metadata is not a replace-on-change field)
  const setMeta = async (ctx: OsContext, r: Resource, meta: Record<string, string>) => {
    await backend.update(r, { ...r.spec, metadata: meta });
    return meta;
  };
  app.get('/v2.1/servers/:id/metadata', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    return { metadata: (r.spec as { metadata?: Record<string, string> }).metadata ?? {} };
  });
  const MetaBody = z.object({ metadata: z.record(z.string().min(1).max(255), z.string().max(255)) });
  app.post('/v2.1/servers/:id/metadata', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    const m = body(MetaBody, req.body).metadata;
    return { metadata: await setMeta(ctx, r, { ...((r.spec as { metadata?: Record<string, string> }).metadata ?? {}), ...m }) };
  });
  app.put('/v2.1/servers/:id/metadata', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    return { metadata: await setMeta(ctx, r, body(MetaBody, req.body).metadata) };
  });
  app.get('/v2.1/servers/:id/metadata/:key', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const p = req.params as { id: string; key: string };
    const r = await getServer(ctx, p.id);
    const meta = (r.spec as { metadata?: Record<string, string> }).metadata ?? {};
    if (!(p.key in meta)) throw notFound('Metadata item', p.key);
    return { meta: { [p.key]: meta[p.key] } };
  });
  app.put('/v2.1/servers/:id/metadata/:key', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const p = req.params as { id: string; key: string };
    const r = await getServer(ctx, p.id);
    const m = body(z.object({ meta: z.record(z.string(), z.string().max(255)) }), req.body).meta;
    if (Object.keys(m).length !== 1 || !(p.key in m)) throw badRequest('Request body and URI mismatch: meta must hold exactly the key in the URL');
    await setMeta(ctx, r, { ...((r.spec as { metadata?: Record<string, string> }).metadata ?? {}), ...m });
    return { meta: m };
  });
  app.delete('/v2.1/servers/:id/metadata/:key', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const p = req.params as { id: string; key: string };
    const r = await getServer(ctx, p.id);
    const meta = { ...((r.spec as { metadata?: Record<string, string> }).metadata ?? {}) };
    if (!(p.key in meta)) throw notFound('Metadata item', p.key);
    delete meta[p.key];
    await setMeta(ctx, r, meta);
    return reply.code(204).send();
  });

  // ------------------------------------------------------------------ volume attachments
  const attachmentView = (serverId: string, vol: Resource) => ({ id: vol.id, volumeId: vol.id, serverId, device: (vol.status.outputs.device as string | undefined) ?? '/dev/vdb' });
  app.get('/v2.1/servers/:id/os-volume_attachments', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    const pid = providerId(r);
    const vols = (await backend.list(ctx, 'storage/Volume')).filter((x) => pid && (x.spec as { attachTo?: string }).attachTo === pid);
    return { volumeAttachments: vols.map((x) => attachmentView(r.id, x)) };
  });
  app.get('/v2.1/servers/:id/os-volume_attachments/:vid', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:read');
    const p = req.params as { id: string; vid: string };
    const r = await getServer(ctx, p.id);
    const vol = await backend.find(ctx, 'storage/Volume', p.vid);
    if (!vol || !providerId(r) || (vol.spec as { attachTo?: string }).attachTo !== providerId(r)) throw notFound('Volume attachment', p.vid);
    return { volumeAttachment: attachmentView(r.id, vol) };
  });
  app.post('/v2.1/servers/:id/os-volume_attachments', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const r = await getServer(ctx, (req.params as { id: string }).id);
    const b = body(z.object({ volumeAttachment: z.object({ volumeId: z.string(), device: z.string().nullable().optional() }).loose() }), req.body).volumeAttachment;
    const vol = await backend.find(ctx, 'storage/Volume', b.volumeId);
    if (!vol) throw notFound('Volume', b.volumeId);
    if ((vol.spec as { attachTo?: string }).attachTo) throw badRequest(`Invalid volume: volume ${vol.id} is already attached (status in-use)`);
    const pid = await refOf(backend, r, 'server');
    await backend.update(vol, { ...vol.spec, attachTo: pid });
    return { volumeAttachment: attachmentView(r.id, vol) };
  });
  app.delete('/v2.1/servers/:id/os-volume_attachments/:vid', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    requirePerm(ctx, 'resources:write');
    const p = req.params as { id: string; vid: string };
    const r = await getServer(ctx, p.id);
    const vol = await backend.find(ctx, 'storage/Volume', p.vid);
    if (!vol || !providerId(r) || (vol.spec as { attachTo?: string }).attachTo !== providerId(r)) throw notFound('Volume attachment', p.vid);
    const spec = { ...vol.spec };
    delete spec.attachTo;
    await backend.update(vol, spec);
    return reply.code(202).send();
  });

  // ------------------------------------------------------------------ limits, zones
  app.get('/v2.1/limits', async (req, reply) => {
    ver(req, reply);
    const ctx = await ctxOf(req);
    const q = await catalogue.quota(ctx.project);
    const servers = await backend.list(ctx, 'compute/Server');
    const flavors = new Map<string, CatalogueFlavor>();
    for (const f of await allFlavors(ctx)) {
      flavors.set(f.providerId, f);
      flavors.set(f.name, f);
    }
    let cores = 0;
    let ram = 0;
    for (const s of servers) {
      const f = flavors.get((s.spec as { flavor: string }).flavor);
      cores += f?.vcpus ?? 0;
      ram += f?.ramMb ?? 0;
    }
    const fips = await backend.list(ctx, 'network/FloatingIP');
    const groups = await backend.list(ctx, 'network/SecurityGroup');
    return {
      limits: {
        rate: [],
        absolute: {
          maxTotalInstances: q.instances, totalInstancesUsed: servers.length, maxTotalCores: q.cores, totalCoresUsed: cores, maxTotalRAMSize: q.ramMb, totalRAMUsed: ram,
          maxTotalFloatingIps: q.floatingIps, totalFloatingIpsUsed: fips.length, maxSecurityGroups: 100, totalSecurityGroupsUsed: groups.length, maxSecurityGroupRules: 100,
          maxServerMeta: 128, maxImageMeta: 128, maxPersonality: 5, maxPersonalitySize: 10240, maxTotalKeypairs: 100, maxServerGroups: 10, maxServerGroupMembers: 10, totalServerGroupsUsed: 0,
        },
      },
    };
  });
  const zones = async (req: FastifyRequest, reply: FastifyReply) => {
    ver(req, reply);
    await ctxOf(req);
    return { availabilityZoneInfo: (await catalogue.zones()).map((z) => ({ zoneName: z, zoneState: { available: true }, hosts: null })) };
  };
  app.get('/v2.1/os-availability-zone', zones);
  app.get('/v2.1/os-availability-zone/detail', zones);
}

