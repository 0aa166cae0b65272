import { useQuery } from '@tanstack/react-query';
import { api, call, raw } from '../api/client';
import { useEventStream } from '../api/sse';
import { ago, Json, Loading, Page, Phase, ProblemBox } from '../ui';
import { RunTable } from './Overview';

export default function ResourceDetail({ params }: { params: Record<string, string> }) {
  const id = params.id!;
  const r = useQuery({ queryKey: ['resource', id], queryFn: () => raw('GET', `/api/v1/resources/${encodeURIComponent(id)}`) });
  const events = useQuery({ queryKey: ['resource-events', id], queryFn: () => raw<{ items: any[] }>('GET', `/api/v1/resources/${encodeURIComponent(id)}/events?limit=100`) });
  const runs = useQuery({ queryKey: ['resource-runs', id, r.data?.project], enabled: !!r.data, queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/runs', { params: { query: { project: r.data.project, labels: r.data.labels?.['infraflow.dev/stack'] ? `stack=${r.data.labels['infraflow.dev/stack']}` : `resource=${id}`, limit: 20 } } })) });
  useEventStream(`/api/v1/resources/${encodeURIComponent(id)}/events/stream`, () => {
    void r.refetch();
    void events.refetch();
    void runs.refetch();
  });
  if (r.isPending) return <Loading />;
  if (r.error) return <ProblemBox error={r.error} />;
  const res = r.data;
  return (
    <Page title={`${res.kind} ${res.name}`}>
      <p><Phase value={res.status.phase} /> {res.status.message} <span className="muted">· project {res.project} · generation {res.generation}</span></p>
      <div className="grid two">
        <section className="card"><h2>Spec</h2><Json value={res.spec} /></section>
        <section className="card"><h2>Outputs</h2><Json value={res.status.outputs} /></section>
      </div>
      <section className="card">
        <h2>Conditions</h2>
        <table>
          <thead><tr><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Reason</th><th scope="col">Message</th><th scope="col">Since</th></tr></thead>
          <tbody>{(res.status.conditions ?? []).map((c: any) => <tr key={c.type}><td>{c.type}</td><td>{c.status}</td><td>{c.reason}</td><td>{c.message}</td><td>{ago(c.lastTransitionTime)}</td></tr>)}</tbody>
        </table>
      </section>
      <div className="grid two">
        <section className="card">
          <h2>Events</h2>
          <ul className="events">{(events.data?.items ?? []).slice(-50).reverse().map((e: any) => <li key={e.seq}><span className="muted small">{new Date(e.at).toLocaleTimeString()}</span> <code>{e.type}</code> {e.data?.phase ?? e.data?.message ?? ''}</li>)}</ul>
        </section>
        <section className="card"><h2>Runs</h2><RunTable runs={runs.data?.items} /></section>
      </div>
    </Page>
  );
}
