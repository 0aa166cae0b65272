import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiDeps } from '../route.js';
import { ResourceStore } from '../../resources/store.js';
import { EMPTY_CATALOGUE, isSimLike, simCatalogue, type BackendCatalogue } from './catalogue.js';
import { Backend, baseUrl, OsError, sendError, type OsContext, type Service } from './common.js';
import { identityRoutes } from './identity.js';
import { computeRoutes } from './compute.js';
import { networkRoutes } from './network.js';
import { ImageStore, imageRoutes } from './image.js';
import { volumeRoutes } from './volume.js';

/**
 * The OpenStack-compatible façade, mounted under /openstack as its own
 * Fastify plugin: Keystone v3 at /openstack/identity, Nova v2.1 at
 * /openstack/compute/v2.1, Glance v2 at /openstack/image/v2, Neutron v2.0 at
 * /openstack/network/v2.0 and Cinder v3 at /openstack/volume/v3 (all
 * advertised in the Keystone catalogue). Each service answers errors in its
 * own shape. Everything is backed by Infraflow resources: a create, change or
 * delete is a durable resource run through whichever provider the kind is
 * routed to.
 *
 * Mounted by the API server when the composition root hands in the
 * resources area and an engine; `deps.areas.openstack` may set
 * `{ imageDir, catalogue }`.
 */
export const OPENSTACK_PREFIX = '/openstack';

export interface OpenStackOptions {
  /** Where uploaded image data is kept (default: a directory under the system's temp dir). */
  imageDir?: string;
  /** The backend's public flavors, images, zones and quotas (default: the simulator's, when present). */
  catalogue?: BackendCatalogue;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function canServeOpenStack(deps: ApiDeps): boolean {
  return !!deps.engine && deps.areas?.resources instanceof ResourceStore;
}

export async function registerOpenStack(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  if (!canServeOpenStack(deps)) return;
  const opts = (deps.areas?.openstack ?? {}) as OpenStackOptions;
  const backend = new Backend(deps.areas!.resources as ResourceStore, deps.engine!);
  const catalogue = opts.catalogue ?? (isSimLike(deps.areas?.sim) ? simCatalogue(deps.areas.sim) : EMPTY_CATALOGUE);
  const images = new ImageStore(opts.imageDir ?? join(tmpdir(), 'infraflow-openstack-images'));
  const iam = deps.iam;

  const service = (name: Service, prefix: string, routes: (scope: FastifyInstance) => void) => app.register(async (scope) => {
    scope.setErrorHandler((err, req, reply) => sendError(name, err, req, reply));
    scope.setNotFoundHandler((req, reply) => sendError(name, new OsError(404, `The resource could not be found: ${req.method} ${req.url.split('?')[0]}`), req, reply));
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(['application/json', 'application/openstack-images-v2.1-json-patch'], { parseAs: 'string' }, (_req, body, done) => {
      const text = String(body);
      if (!text.trim()) return done(null, undefined);
      try {
        done(null, JSON.parse(text));
      } catch {
        done(new OsError(400, 'Malformed request body: it is not valid JSON'), undefined);
      }
    });
    // image data streams straight to the image store
    scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    scope.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
      const text = String(body);
      try {
        done(null, text.trim() ? JSON.parse(text) : undefined);
      } catch {
        done(null, text);
      }
    });
    scope.addHook('onRequest', (req, reply, done) => {
      reply.header('x-openstack-request-id', `req-${req.id}`);
      done();
    });
    // every mutating call is audited, like the rest of the API
    scope.addHook('onResponse', (req, reply, done) => {
      if (!MUTATING.has(req.method) || req.url.endsWith('/auth/tokens')) return done();
      const ctx = (req as FastifyRequest & { osContext?: OsContext }).osContext;
      void iam.audit({
        actorId: ctx?.userId ?? null, actorName: ctx?.userName ?? null, tokenId: ctx?.principal.tokenId ?? null, action: `openstack:${name}`, method: req.method,
        route: `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`, target: null, project: ctx?.project ?? null,
        outcome: reply.statusCode >= 400 ? (reply.statusCode === 401 || reply.statusCode === 403 ? 'denied' : 'failed') : 'allowed', status: reply.statusCode, requestId: String(req.id), message: null,
      }).catch((err: unknown) => req.log.error({ err }, 'could not write the audit entry'));
      done();
    });
    routes(scope);
  }, { prefix: `${OPENSTACK_PREFIX}${prefix}` });

  await service('identity', '/identity', (s) => identityRoutes(s, iam));
  let network: ReturnType<typeof networkRoutes> | undefined;
  await service('network', '/network', (s) => {
    s.get('/', async (req, reply) => reply.code(200).send({ versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ rel: 'self', href: `${baseUrl(req)}/network/v2.0/` }] }] }));
    s.get('/v2.0', async (req) => ({ resources: ['networks', 'subnets', 'ports', 'routers', 'security-groups', 'security-group-rules', 'floatingips'].map((n) => ({ name: n.replace(/s$/, ''), collection: n, links: [{ rel: 'self', href: `${baseUrl(req)}/network/v2.0/${n}` }] })) }));
    network = networkRoutes(s, iam, backend);
  });
  await service('compute', '/compute', (s) => computeRoutes(s, iam, backend, catalogue, {
    subnetForServer: (...a) => network!.subnetForServer(...a),
    portRef: (...a) => network!.portRef(...a),
    securityGroupRef: (...a) => network!.securityGroupRef(...a),
  }));
  await service('image', '/image', (s) => imageRoutes(s, iam, backend, catalogue, images));
  await service('volume', '/volume', (s) => volumeRoutes(s, iam, backend, catalogue));
  app.get(OPENSTACK_PREFIX, async (req) => ({
    services: { identity: `${baseUrl(req)}/identity/v3`, compute: `${baseUrl(req)}/compute/v2.1`, image: `${baseUrl(req)}/image`, network: `${baseUrl(req)}/network`, volume: `${baseUrl(req)}/volume/v3` },
  }));
}
