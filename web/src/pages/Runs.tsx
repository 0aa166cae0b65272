import { useState } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call } from '../api/client';
import { useEventStream } from '../api/sse';
import { useSession } from '../app/session';
import { Page, ProblemBox } from '../ui';
import { RunTable } from './Overview';

export default function Runs() {
  const { project } = useSession();
  const qc = useQueryClient();
  const [status, setStatus] = useState('');
  const [workflow, setWorkflow] = useState('');
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const q = useQuery({
    queryKey: ['runs', project, 'list', status, workflow, cursor],
    queryFn: () => call<{ items: any[]; nextCursor: string | null }>(api.GET('/api/v1/runs', { params: { query: { project, limit: 50, ...(status ? { status } : {}), ...(workflow ? { workflow } : {}), ...(cursor ? { cursor } : {}) } } })),
  });
  useEventStream(`/api/v1/projects/${encodeURIComponent(project)}/events/stream`, (e) => {
    if (e.type.startsWith('run.')) void qc.invalidateQueries({ queryKey: ['runs', project] });
  });
  return (
    <Page title="Runs">
      <form className="filters" role="search" aria-label="Filter runs" onSubmit={(e) => e.preventDefault()}>
        <label>Status
          <select value={status} onChange={(e) => { setStatus(e.target.value); setCursors([]); }}>
            <option value="">any</option>
            {['pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'].map((s) => <option key={s}>{s}</option>)}
          </select>
        </label>
        <label>Workflow <input value={workflow} onChange={(e) => { setWorkflow(e.target.value); setCursors([]); }} placeholder="stacks.apply" /></label>
      </form>
      <ProblemBox error={q.error} />
      <RunTable runs={q.data?.items} />
      <div className="actions">
        <button type="button" disabled={!cursors.length} onClick={() => setCursors(cursors.slice(0, -1))}>Previous page</button>
        <button type="button" disabled={!q.data?.nextCursor} onClick={() => setCursors([...cursors, q.data!.nextCursor!])}>Next page</button>
      </div>
    </Page>
  );
}
