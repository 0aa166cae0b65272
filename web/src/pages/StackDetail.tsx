import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { raw } from '../api/client';
import { useEventStream } from '../api/sse';
import { Link } from '../app/router';
import { useSession } from '../app/session';
import { ago, Json, Loading, Page, Phase, ProblemBox, TextArea } from '../ui';
import { RunTable } from './Overview';

export default function StackDetail({ params }: { params: Record<string, string> }) {
  const id = params.id!;
  const { can } = useSession();
  const [error, setError] = useState<unknown>(null);
  const [comment, setComment] = useState('');
  const [drift, setDrift] = useState<unknown>(null);
  const s = useQuery({ queryKey: ['stack', id], queryFn: () => raw<any>('GET', `/api/v1/stacks/${id}`) });
  const runs = useQuery({ queryKey: ['stack-runs', id], queryFn: () => raw<{ items: any[] }>('GET', `/api/v1/stacks/${id}/runs`) });
  const revisions = useQuery({ queryKey: ['stack-revisions', id], queryFn: () => raw<{ items: any[] }>('GET', `/api/v1/stacks/${id}/revisions`) });
  const resources = useQuery({ queryKey: ['stack-resources', id], queryFn: () => raw<{ items: any[] }>('GET', `/api/v1/stacks/${id}/resources`) });
  const lastRun = s.data?.lastRunId ?? s.data?.stack?.lastRunId;
  const tl = useQuery({ queryKey: ['timeline', lastRun], enabled: !!lastRun, queryFn: () => raw<{ run: any; steps: any[] }>('GET', `/api/v1/runs/${lastRun}/timeline`) });
  useEventStream(`/api/v1/stacks/${id}/events/stream`, () => {
    void s.refetch();
    void runs.refetch();
    void tl.refetch();
    void resources.refetch();
  });
  const act = async (path: string, body?: unknown) => {
    setError(null);
    try {
      const r = await raw('POST', `/api/v1/stacks/${id}/${path}`, body);
      if (path === 'observe') setDrift(r);
      await s.refetch();
    } catch (e) {
      setError(e);
    }
  };
  if (s.isPending) return <Loading />;
  if (s.error) return <ProblemBox error={s.error} />;
  const stack = s.data.stack ?? s.data;
  const run = tl.data?.run;
  const waiting = /waiting for approval of ([^/\s]+)\/([^:\s]+)/.exec(run?.progress?.message ?? '');
  return (
    <Page title={`Stack ${stack.name}`} actions={can('stacks:apply') && (
      <>
        <Link className="button" to={`/stacks/new?from=${stack.id}`}>Edit</Link>
        <button type="button" onClick={() => void act('observe')}>Check drift</button>
        {stack.status === 'failed' && <button type="button" onClick={() => void act('retry')}>Retry</button>}
        <button type="button" onClick={() => { if (confirm(`Destroy every resource of ${stack.name}?`)) void act('destroy'); }}>Destroy</button>
      </>
    )}>
      <p><Phase value={stack.status} /> revision {stack.appliedRevision ?? '—'} applied of {stack.revision} · drift {stack.drift} · updated {ago(stack.updatedAt)}</p>
      <ProblemBox error={error} />
      {waiting && (
        <section className="card approval" aria-labelledby="appr-h">
          <h2 id="appr-h">Approval needed</h2>
          <p>{run.progress.message}</p>
          <TextArea label="Comment" name="comment" rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
          <div className="actions">
            <button type="button" className="primary" onClick={() => void act('approve', { scope: waiting[1], step: waiting[2], approved: true, ...(comment ? { comment } : {}) })}>Approve</button>
            <button type="button" onClick={() => void act('approve', { scope: waiting[1], step: waiting[2], approved: false, ...(comment ? { comment } : {}) })}>Reject</button>
          </div>
        </section>
      )}
      {drift !== null && <section className="card"><h2>Drift report</h2><Json value={drift} /></section>}
      {tl.data && (
        <section className="card">
          <h2>Last run <Link to={`/runs/${run.id}`}>{run.id}</Link> <Phase value={run.status} /></h2>
          <p className="muted">{run.progress?.message}</p>
          <ol className="tree" aria-label="Apply steps">
            {tl.data.steps.map((st: any) => <li key={st.seq} className={`step step-${st.status}`}><Phase value={st.status} /> {st.name}{st.attempts > 1 ? ` (${st.attempts} attempts)` : ''}{st.error ? <div className="field-error">{st.error.message}</div> : null}</li>)}
          </ol>
        </section>
      )}
      <div className="grid two">
        <section className="card">
          <h2>Resources</h2>
          <ul>{(resources.data?.items ?? []).map((r: any) => <li key={r.address ?? r.id}>{r.resourceId || r.id ? <Link to={`/resources/${r.resourceId ?? r.id}`}>{r.address ?? r.name}</Link> : r.address} <span className="muted">{r.kind}</span> <Phase value={typeof r.status === 'string' ? r.status : r.status?.phase} /> <span className="muted small">phase {String(r.phase)}</span></li>)}</ul>
        </section>
        <section className="card">
          <h2>History</h2>
          <ul>{(revisions.data?.items ?? []).map((v: any) => <li key={v.revision}>revision {v.revision} · {v.createdBy ?? ''} · {ago(v.createdAt)}</li>)}</ul>
          <RunTable runs={runs.data?.items} />
        </section>
      </div>
    </Page>
  );
}
