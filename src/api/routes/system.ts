import { z } from 'zod';
import { sql } from 'kysely';
import { TransientError } from '../../core/errors.js';
import type { RunStatus } from '../../engine/types.js';
import { defineRoute, type AnyRoute, type ApiDeps } from '../route.js';
import { registry, runsByStatus } from '../metrics.js';

let draining = false;
/** Set when the process begins a graceful shutdown: /readyz answers 503 so load balancers stop sending. */
export function setDraining(v: boolean): void {
  draining = v;
}

export function systemRoutes(deps: ApiDeps): AnyRoute[] {
  return [
    defineRoute({
      method: 'GET', url: '/healthz', root: true, summary: 'Liveness: the process answers', tags: ['system'], policy: { scope: 'public' },
      schema: { response: { 200: z.object({ status: z.literal('ok') }) } },
      handler: () => ({ status: 'ok' as const }),
    }),
    defineRoute({
      method: 'GET', url: '/readyz', root: true, summary: 'Readiness: the database answers and the process is not draining', tags: ['system'], policy: { scope: 'public' },
      schema: { response: { 200: z.object({ status: z.literal('ready'), checks: z.record(z.string(), z.string()) }) } },
      handler: async () => {
        const checks: Record<string, string> = {};
        if (draining) throw new TransientError('api.draining', 'the server is shutting down; send requests to another instance');
        try {
          await sql`select 1`.execute(deps.store.db);
          checks.database = 'ok';
        } catch {
          throw new TransientError('api.database_unavailable', 'the database does not answer; check DATABASE_URL and that the database server is up');
        }
        for (const [name, check] of Object.entries(deps.readiness ?? {})) {
          try {
            await check();
            checks[name] = 'ok';
          } catch (e) {
            throw new TransientError('api.not_ready', `${name} is not ready: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        return { status: 'ready' as const, checks };
      },
    }),
    defineRoute({
      method: 'GET', url: '/metrics', root: true, summary: 'Prometheus metrics (HTTP, engine, allocation, provider)', tags: ['system'], policy: { scope: 'public' },
      schema: {},
      handler: async ({ reply }) => {
        if (deps.engine) {
          // sampled at scrape: runs per non-terminal status (terminal ones grow forever; count them from events instead)
          for (const status of ['pending', 'running', 'waiting', 'cancelling'] as RunStatus[]) {
            try {
              const runs = await deps.engine.list({ status, limit: 10_000 });
              runsByStatus.set({ status }, runs.length);
            } catch {
              /* the engine may be stopping */
            }
          }
        }
        reply.header('content-type', registry.contentType);
        return reply.send(await registry.metrics());
      },
    }),
  ];
}
