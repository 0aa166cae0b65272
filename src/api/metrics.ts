import client from 'prom-client';

/**
 * Prometheus metrics. Everything registers on prom-client's default
 * registry, so any area can add its own metrics (allocation, provider
 * calls…) with prom-client and they show up on /metrics.
 */
export const registry = client.register;

function once<T>(name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

let defaultsStarted = false;
export function startDefaultMetrics(): void {
  if (defaultsStarted) return;
  defaultsStarted = true;
  if (!registry.getSingleMetric('process_cpu_user_seconds_total')) client.collectDefaultMetrics({ register: registry });
}

export const httpRequests = once('infraflow_http_requests_total', () => new client.Counter({
  name: 'infraflow_http_requests_total', help: 'HTTP requests by method, route and status', labelNames: ['method', 'route', 'status'] as const,
}));

export const httpDuration = once('infraflow_http_request_duration_seconds', () => new client.Histogram({
  name: 'infraflow_http_request_duration_seconds', help: 'HTTP request duration by method and route', labelNames: ['method', 'route'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
}));

export const authDenials = once('infraflow_authz_denied_total', () => new client.Counter({
  name: 'infraflow_authz_denied_total', help: 'Requests refused by the policy (401, 403, or 404 for a hidden project)', labelNames: ['reason'] as const,
}));

export const sseClients = once('infraflow_sse_clients', () => new client.Gauge({ name: 'infraflow_sse_clients', help: 'Open server-sent event streams' }));

export const engineEvents = once('infraflow_engine_events_total', () => new client.Counter({
  name: 'infraflow_engine_events_total', help: 'Engine events committed while this process ran, by type (run.succeeded, step.failed, resource.phase_changed…)', labelNames: ['type'] as const,
}));

export const runsByStatus = once('infraflow_runs', () => new client.Gauge({
  name: 'infraflow_runs', help: 'Runs by status (sampled at scrape, capped at 10000 per status)', labelNames: ['status'] as const,
}));
