import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call } from '../api/client';
import { useEventStream } from '../api/sse';
import { useSession } from '../app/session';
import { Link } from '../app/router';
import { ago, Loading, Page, Phase, ProblemBox } from '../ui';

export default function Stacks() {
  const { project, can } = useSession();
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ['stacks', project], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/stacks', { params: { query: { project, limit: 200 } } })) });
  useEventStream(`/api/v1/projects/${encodeURIComponent(project)}/events/stream`, (e) => {
    if (e.type.startsWith('stack.') || e.type.startsWith('run.')) void qc.invalidateQueries({ queryKey: ['stacks', project] });
  });
  return (
    <Page title="Stacks" actions={can('stacks:apply') && <Link className="button primary" to="/stacks/new">New stack</Link>}>
      <ProblemBox error={q.error} />
      {q.isPending ? <Loading /> : !q.data?.items.length ? <p className="muted">No stacks in this project yet.</p> : (
        <table>
          <thead><tr><th scope="col">Stack</th><th scope="col">Status</th><th scope="col">Revision</th><th scope="col">Drift</th><th scope="col">Updated</th></tr></thead>
          <tbody>
            {q.data.items.map((s) => (
              <tr key={s.id}>
                <td><Link to={`/stacks/${s.id}`}>{s.name}</Link></td>
                <td><Phase value={s.status} /></td>
                <td>{s.appliedRevision ?? '—'} / {s.revision}</td>
                <td>{s.drift}</td>
                <td>{ago(s.updatedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
