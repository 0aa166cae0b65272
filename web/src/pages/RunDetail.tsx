import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { raw } from '../api/client';
import { useEventStream } from '../api/sse';
import { Link } from '../app/router';
import { useSession } from '../app/session';
import { ago, duration, Json, Loading, Page, Phase, ProblemBox } from '../ui';

interface StepRow { seq: number; name: string; kind: string; status: string; attempts: number; startedAt: number; finishedAt?: number | null; error?: any; output?: any; logs: { at: number; message: string }[] }

export default function RunDetail({ params }: { params: Record<string, string> }) {
  const id = params.id!;
  const { can } = useSession();
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<number | null>(null);
  // a run's stream ends with the run; an action (retry, skip) starts it again, so the page follows a new stream
  const [epoch, setEpoch] = useState(0);
  const t = useQuery({ queryKey: ['timeline', id], queryFn: () => raw<{ run: any; steps: StepRow[] }>('GET', `/api/v1/runs/${encodeURIComponent(id)}/timeline`) });
  const { connected } = useEventStream(`/api/v1/runs/${encodeURIComponent(id)}/events/stream${epoch ? `?epoch=${epoch}` : ''}`, () => void t.refetch());
  const act = async (path: string, body?: unknown) => {
    setError(null);
    try {
      await raw('POST', `/api/v1/runs/${encodeURIComponent(id)}/${path}`, body);
      setEpoch((e) => e + 1);
      await t.refetch();
    } catch (e) {
      setError(e);
    }
  };
  if (t.isPending) return <Loading />;
  if (t.error) return <ProblemBox error={t.error} />;
  const run = t.data.run;
  const operate = can('runs:operate');
  const failed = run.status === 'failed';
  const live = ['pending', 'running', 'waiting'].includes(run.status);
  const waitingApproval = run.status === 'waiting' && /approv/i.test(run.progress?.message ?? '');
  return (
    <Page title={`Run ${run.labels?.stackName ?? run.workflow}`} actions={operate && (
      <>
        {failed && <button type="button" className="primary" onClick={() => void act('retry')}>Retry</button>}
        {live && <button type="button" onClick={() => void act('cancel', { reason: 'cancelled from the console' })}>Cancel</button>}
        {waitingApproval && <button type="button" onClick={() => void act('approve', { approved: true, comment: 'approved in the console' })}>Approve</button>}
      </>
    )}>
      <p>
        <Phase value={run.status} /> <code>{run.id}</code> · {run.workflow} · started {ago(run.startedAt ?? run.createdAt)} · {run.finishedAt && run.startedAt ? `took ${duration(run.finishedAt - run.startedAt)}` : run.progress?.message ?? ''}
        <span className="muted small"> · {connected ? 'live' : live ? 'connecting…' : 'finished'}</span>
      </p>
      {run.parentRunId && <p>Part of <Link to={`/runs/${run.parentRunId}`}>{run.parentRunId}</Link></p>}
      {run.error && <div className="problem" role="alert"><strong>{run.error.message ?? JSON.stringify(run.error)}</strong></div>}
      <ProblemBox error={error} />
      <section className="card">
        <h2>Steps</h2>
        <ol className="tree" aria-label="Step tree">
          {t.data.steps.map((s) => (
            <li key={s.seq} className={`step step-${s.status}`}>
              <button type="button" className="link" aria-expanded={open === s.seq} onClick={() => setOpen(open === s.seq ? null : s.seq)}>
                <Phase value={s.status} /> <span className="step-name">{s.name}</span>
              </button>
              <span className="muted small"> {s.kind !== 'step' ? `${s.kind} · ` : ''}{s.attempts} attempt{s.attempts === 1 ? '' : 's'} · {s.finishedAt ? duration(s.finishedAt - s.startedAt) : 'running'}</span>
              {s.error && <div className="field-error">{s.error.message ?? JSON.stringify(s.error)}</div>}
              {operate && s.status === 'failed' && failed && (
                <span className="step-actions">
                  <button type="button" onClick={() => void act('retry')}>Retry from this step</button>
                  <button type="button" onClick={() => void act('skip', { step: s.name, result: null })}>Skip this step</button>
                </span>
              )}
              {s.output?.runId && <div><Link to={`/runs/${s.output.runId}`}>child run {s.output.runId}</Link></div>}
              {open === s.seq && (
                <div className="step-detail">
                  <p className="muted small">started {new Date(s.startedAt).toLocaleTimeString()}{s.finishedAt ? `, finished ${new Date(s.finishedAt).toLocaleTimeString()}` : ''}</p>
                  {s.logs.length > 0 && <pre className="logs">{s.logs.map((l) => `${new Date(l.at).toLocaleTimeString()} ${l.message}`).join('\n')}</pre>}
                  {s.output !== undefined && <Json value={s.output} />}
                </div>
              )}
            </li>
          ))}
        </ol>
      </section>
    </Page>
  );
}
