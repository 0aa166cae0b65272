import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call } from '../api/client';
import { useEventStream } from '../api/sse';
import { useSession } from '../app/session';
import { Link } from '../app/router';
import { ago, Bar, duration, Loading, Page, Phase, ProblemBox } from '../ui';

interface Run { id: string; workflow: string; status: string; project: string | null; createdAt: number; startedAt: number | null; finishedAt: number | null; progress: { stage?: string; message?: string; since?: number } | null; labels: Record<string, string> }

const STUCK_MS = 10 * 60_000;

export default function Overview() {
  const { project, can } = useSession();
  const qc = useQueryClient();
  const sim = useQuery({ queryKey: ['sim'], queryFn: () => call(api.GET('/api/v1/sim')), enabled: can('sim:read') });
  const util = useQuery({ queryKey: ['inv-util'], queryFn: () => call(api.GET('/api/v1/inventory/utilization')), enabled: can('inventory:read') });
  const prefixes = useQuery({ queryKey: ['prefixes-top'], queryFn: () => call(api.GET('/api/v1/ipam/prefixes', { params: { query: { limit: 20 } as any } })), enabled: can('ipam:read') });
  const vlans = useQuery({ queryKey: ['vlan-pools'], queryFn: () => call(api.GET('/api/v1/ipam/vlan-pools', { params: { query: { limit: 20 } as any } })), enabled: can('ipam:read') });
  const runs = useQuery({ queryKey: ['runs', project, 'recent'], queryFn: () => call<{ items: Run[] }>(api.GET('/api/v1/runs', { params: { query: { project, limit: 10 } } })) });
  const failed = useQuery({ queryKey: ['runs', project, 'failed'], queryFn: () => call<{ items: Run[] }>(api.GET('/api/v1/runs', { params: { query: { project, limit: 10, status: 'failed' } } })) });
  const active = useQuery({ queryKey: ['runs', project, 'active'], queryFn: () => call<{ items: Run[] }>(api.GET('/api/v1/runs', { params: { query: { project, limit: 50, status: 'running,pending,waiting' } } })) });
  useEventStream(`/api/v1/projects/${encodeURIComponent(project)}/events/stream`, (e) => {
    if (e.type.startsWith('run.')) void qc.invalidateQueries({ queryKey: ['runs', project] });
  });
  const hosts = (sim.data as any)?.hosts as { count: number; enabled: number; vcpuCapacity: number; usedVcpus: number; ramMb: number; usedRamMb: number } | undefined;
  const metal = (sim.data as any)?.metal as Record<string, { total: number; allocated: number }> | undefined;
  const byType = new Map<string, { total: number; used: number }>();
  for (const u of ((util.data as any)?.items ?? []) as { type: string; counts?: Record<string, number>; total?: number; available?: number }[]) {
    const counts = u.counts ?? {};
    const total = u.total ?? Object.values(counts).reduce((a, b) => a + b, 0);
    const avail = u.available ?? counts.available ?? 0;
    const cur = byType.get(u.type) ?? { total: 0, used: 0 };
    byType.set(u.type, { total: cur.total + total, used: cur.used + total - avail });
  }
  const stuck = (active.data?.items ?? []).filter((r) => r.progress?.since && Date.now() - r.progress.since > STUCK_MS);
  return (
    <Page title="Overview" actions={can('resources:write') ? <Link className="button primary" to="/vm/new">Create a VM</Link> : undefined}>
      <div className="grid">
        <section className="card" aria-labelledby="cap-h">
          <h2 id="cap-h">Hypervisors</h2>
          {sim.isPending && can('sim:read') ? <Loading /> : hosts ? (
            <>
              <Bar label={`vCPUs on ${hosts.enabled}/${hosts.count} hosts`} used={hosts.usedVcpus} total={hosts.vcpuCapacity} />
              <Bar label="Memory (GiB)" used={Math.round(hosts.usedRamMb / 1024)} total={Math.round(hosts.ramMb / 1024)} />
            </>
          ) : <p className="muted">No hypervisor data.</p>}
        </section>
        <section className="card" aria-labelledby="types-h">
          <h2 id="types-h">Server types</h2>
          {byType.size ? [...byType].map(([t, v]) => <Bar key={t} label={t} used={v.used} total={v.total} />)
            : metal ? Object.entries(metal).map(([t, v]) => <Bar key={t} label={t} used={v.allocated} total={v.total} />) : <p className="muted">No bare-metal inventory.</p>}
        </section>
        <section className="card" aria-labelledby="pools-h">
          <h2 id="pools-h">IP and VLAN pools</h2>
          {(((prefixes.data as any)?.items ?? []) as { id: string; cidr?: string; prefix?: string; utilization?: { used: number; total: number } }[]).slice(0, 6).map((p) => (
            <Bar key={p.id} label={p.cidr ?? p.prefix ?? p.id} used={p.utilization?.used ?? 0} total={p.utilization?.total ?? 0} />
          ))}
          {(((vlans.data as any)?.items ?? []) as { id: string; name: string; rangeStart?: number; rangeEnd?: number; used?: number }[]).slice(0, 4).map((v) => (
            <Bar key={v.id} label={`VLAN pool ${v.name}`} used={v.used ?? 0} total={(v.rangeEnd ?? 0) - (v.rangeStart ?? 0) + 1} />
          ))}
          {!((prefixes.data as any)?.items?.length || (vlans.data as any)?.items?.length) && <p className="muted">No prefixes or VLAN pools yet.</p>}
        </section>
      </div>
      <div className="grid two">
        <section className="card" aria-labelledby="recent-h">
          <h2 id="recent-h">Recent runs</h2>
          <ProblemBox error={runs.error} />
          <RunTable runs={runs.data?.items} />
        </section>
        <section className="card" aria-labelledby="fail-h">
          <h2 id="fail-h">Failures and stuck stages</h2>
          {stuck.length > 0 && (
            <ul className="stuck">
              {stuck.map((r) => (
                <li key={r.id}>
                  <Link to={`/runs/${r.id}`}>{r.workflow}</Link> stuck in {r.progress?.stage ?? 'a stage'} for {duration(Date.now() - r.progress!.since!)}
                </li>
              ))}
            </ul>
          )}
          <RunTable runs={failed.data?.items} empty="No failed runs." />
        </section>
      </div>
    </Page>
  );
}

export function RunTable({ runs, empty = 'No runs yet.' }: { runs: Run[] | undefined; empty?: string }) {
  if (!runs) return <Loading />;
  if (!runs.length) return <p className="muted">{empty}</p>;
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">Run</th>
          <th scope="col">Status</th>
          <th scope="col">Started</th>
          <th scope="col">Took</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id}>
            <td>
              <Link to={`/runs/${r.id}`}>{r.labels?.stackName ?? r.workflow}</Link>
              <div className="muted small">{r.workflow}</div>
            </td>
            <td>
              <Phase value={r.status} />
            </td>
            <td>{ago(r.startedAt ?? r.createdAt)}</td>
            <td>{r.finishedAt && r.startedAt ? duration(r.finishedAt - r.startedAt) : r.progress?.message ?? '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
