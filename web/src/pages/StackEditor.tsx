import { useEffect, useState } from 'react';
import { api, call, Problem } from '../api/client';
import { useSession } from '../app/session';
import { navigate, useLocation } from '../app/router';
import { Page, ProblemBox } from '../ui';
import { PlanView, type Plan } from './PlanView';

const TEMPLATE = (project: string) => `apiVersion: infraflow.dev/v1
kind: Stack
metadata:
  name: my-stack
  project: ${project}
spec:
  resources:
    net:
      kind: network/Network
      spec: { mtu: 1500 }
`;

/** Edit a stack document: planned as you type (errors at file:line), then applied. */
export default function StackEditor() {
  const { project } = useSession();
  const { search } = useLocation();
  const from = search.get('from');
  const [doc, setDoc] = useState(() => sessionStorage.getItem('infraflow.stackDraft') ?? TEMPLATE(project));
  const [plan, setPlan] = useState<Plan | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [applyError, setApplyError] = useState<unknown>(null);
  const [planning, setPlanning] = useState(false);
  useEffect(() => {
    if (!from) return;
    void call(api.GET('/api/v1/stacks/{id}/document', { params: { path: { id: from } } })).then((d: any) => {
      if (typeof d?.document === 'string') setDoc(d.document);
      else if (d?.source) setDoc(d.source);
    }).catch(() => undefined);
  }, [from]);
  useEffect(() => {
    sessionStorage.setItem('infraflow.stackDraft', doc);
    const t = setTimeout(async () => {
      setPlanning(true);
      try {
        const r = await call<{ plan: Plan }>(api.POST('/api/v1/stacks/plan', { body: { document: doc, file: 'stack.yaml', project } as any }));
        setPlan(r.plan);
        setError(null);
      } catch (e) {
        setError(e);
        setPlan(null);
      } finally {
        setPlanning(false);
      }
    }, 400);
    return () => clearTimeout(t);
  }, [doc, project]);
  const apply = async () => {
    setApplyError(null);
    try {
      const r = await call<{ stack: { id: string } }>(api.POST('/api/v1/stacks', { body: { document: doc, file: 'stack.yaml', project } as any }));
      sessionStorage.removeItem('infraflow.stackDraft');
      navigate(`/stacks/${r.stack.id}`);
    } catch (e) {
      setApplyError(e);
    }
  };
  const lines = error instanceof Problem ? [...error.detail.matchAll(/stack\.yaml:(\d+)/g)].map((m) => Number(m[1])) : [];
  return (
    <Page title="Edit a stack" actions={<button type="button" className="primary" disabled={!plan || planning} onClick={() => void apply()}>Apply</button>}>
      <div className="grid two editor">
        <div className="field">
          <label htmlFor="stack-doc">Stack document (YAML)</label>
          <textarea id="stack-doc" className={`code${error ? ' invalid-border' : ''}`} spellCheck={false} rows={28} value={doc} onChange={(e) => setDoc(e.target.value)} aria-invalid={error ? true : undefined} aria-describedby="stack-errors" />
          {lines.length > 0 && <p className="field-error">Problem at line {lines.join(', ')}</p>}
        </div>
        <div id="stack-errors" aria-live="polite">
          <h2>Plan {planning && <span className="muted small">(planning…)</span>}</h2>
          <ProblemBox error={error} />
          {plan && <PlanView plan={plan} />}
          <ProblemBox error={applyError} />
        </div>
      </div>
    </Page>
  );
}
