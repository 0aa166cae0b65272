import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ValidationError } from '../../core/errors.js';
import { redact } from '../../core/secrets.js';
import { RESERVE_WORKFLOW, ReserveWhenAvailableInput } from '../../allocation/wait.js';
import { runView } from './runs.js';
import { json as ipamJson } from './ipam.js';
import { Allocations } from '../../allocation/reservations.js';
import { FeasibilityRequestSchema, ReservationStatusSchema, ReserveSchema } from '../../allocation/schemas.js';
import { decodeCursor, defineRoute, encodeCursor, ID_PARAM, PageQuery, type AnyRoute, type ApiDeps } from '../route.js';

export function isAllocationsApi(x: unknown): x is Allocations {
  return x instanceof Allocations;
}

/** IPAM's JSON (bigints as strings), BMC credentials and other secret-looking fields redacted. */
const json = <T>(v: T): T => redact(ipamJson(v));

/**
 * Reservations and feasibility (src/allocation): the all-or-nothing front
 * door across servers, prefixes, addresses, floating IPs, VLANs and DNS
 * names. Asking whether a request could be met and reading reservations
 * needs allocations:read anywhere; reserving, committing, aborting and
 * releasing needs allocations:write on the system (orders normally do this
 * from their workflows; these routes are for operators and external
 * orchestrators).
 */
export function allocationRoutes(deps: ApiDeps, alloc: Allocations): AnyRoute[] {
  const tags = ['allocations'];
  const read = { scope: 'any', permission: 'allocations:read' } as const;
  const write = { scope: 'system', permission: 'allocations:write' } as const;
  const Reason = z.strictObject({ reason: z.string().min(1).max(1024).optional() }).nullish();
  return [
    defineRoute({
      method: 'POST', url: '/allocations/feasibility', tags, policy: read,
      summary: 'Could this request be met now? One reason per shortfall; allocates nothing (advisory: a reservation is the guarantee)',
      schema: { body: FeasibilityRequestSchema },
      handler: async ({ body }) => alloc.feasibility(body),
    }),
    defineRoute({
      method: 'GET', url: '/allocations/reservations', summary: 'List reservations, newest first (filters: holder, status)', tags, policy: read,
      schema: { querystring: PageQuery.extend({ holder: z.string().max(256).optional(), status: ReservationStatusSchema.optional() }) },
      handler: async ({ query }) => {
        const after = decodeCursor(query.cursor);
        const rows = await alloc.list({ ...(query.holder ? { holder: query.holder } : {}), ...(query.status ? { status: query.status } : {}), ...(after ? { after } : {}), limit: query.limit + 1 });
        const page = rows.slice(0, query.limit);
        return { items: page, nextCursor: encodeCursor(rows.length > query.limit ? page[page.length - 1]!.id : null) };
      },
    }),
    defineRoute({
      method: 'GET', url: '/allocations/reservations/:id', summary: 'A reservation with everything it holds', tags, policy: read,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => json(await alloc.get(params.id)),
    }),
    defineRoute({
      method: 'POST', url: '/allocations/reservations', tags, policy: write,
      summary: 'Reserve everything requested for ttlMs, or nothing (409 names the item that cannot be met); `key` makes a retry return the same reservation. With `waitTimeoutMs`: 202 with a run that reserves as soon as the request can be met (its output names the reservation)',
      schema: { body: ReserveSchema.extend({ waitTimeoutMs: ReserveWhenAvailableInput.shape.waitTimeoutMs.optional() }) },
      handler: async ({ body, reply, auditNote }) => {
        const { waitTimeoutMs, ...request } = body;
        if (waitTimeoutMs !== undefined) {
          if (!deps.engine) throw new ValidationError('allocation.wait_unavailable', 'waitTimeoutMs: waiting needs the workflow engine, which this server does not run; reserve without it');
          await alloc.feasibility(request).then((f) => {
            const never = f.shortfalls.find((x) => x.code);
            if (never) throw new ValidationError('allocation.unmeetable', `${never.path}: ${never.reason}; waiting would not help`, { details: { field: never.path, code: never.code } });
          });
          const run = await deps.engine.start(RESERVE_WORKFLOW, { ...request, waitTimeoutMs }, { ...(request.key ? { id: `run_rsv${createHash('sha256').update(request.key).digest('hex').slice(0, 24)}` } : {}), labels: { holder: request.holder.slice(0, 200) } });
          auditNote(`waiting up to ${waitTimeoutMs} ms to reserve for ${request.holder}: run ${run.id}`);
          reply.code(202);
          return { run: runView(run) };
        }
        const r = await alloc.reserve(request);
        auditNote(`reservation ${r.id} for ${r.holder}`);
        reply.code(201);
        return json(r);
      },
    }),
    defineRoute({
      method: 'POST', url: '/allocations/reservations/:id/commit', summary: 'Make a reservation permanent (refused once it expired or was aborted)', tags, policy: write,
      schema: { params: ID_PARAM },
      handler: async ({ params }) => json(await alloc.commit(params.id)),
    }),
    defineRoute({
      method: 'POST', url: '/allocations/reservations/:id/abort', summary: 'Release everything an open reservation holds', tags, policy: write,
      schema: { params: ID_PARAM, body: Reason },
      handler: async ({ params, body }) => json(await alloc.abort(params.id, body?.reason ?? 'aborted')),
    }),
    defineRoute({
      method: 'POST', url: '/allocations/reservations/:id/release', summary: 'Release everything a committed (or open) reservation holds', tags, policy: write,
      schema: { params: ID_PARAM, body: Reason },
      handler: async ({ params, body }) => json(await alloc.release(params.id, body?.reason ?? 'released')),
    }),
  ];
}
