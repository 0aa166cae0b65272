interface FieldChange { path: string; before?: unknown; after?: unknown; forcesReplacement?: boolean }
interface Change { address: string; kind: string; action: string; phase: string; reason?: string; changes?: FieldChange[]; replaceFields?: string[]; after?: Record<string, unknown> }
export interface Plan { summary: Record<string, number>; changes: Change[]; feasibility?: { ok: boolean; checks: { ok: boolean; message: string }[] } }

const SIGN: Record<string, string> = { create: '+', update: '~', replace: '±', delete: '−', noop: ' ' };
const show = (v: unknown) => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));

/** A plan as a readable diff: creates, updates with their nested field changes, replaces with the fields that force them. */
export function PlanView({ plan }: { plan: Plan }) {
  const changes = plan.changes.filter((c) => c.action !== 'noop');
  return (
    <div className="plan" data-testid="plan">
      <p>
        {Object.entries(plan.summary).filter(([, n]) => n).map(([a, n]) => <span key={a} className={`badge act-${a}`}>{n} to {a}</span>)}
        {!changes.length && <span className="muted">No changes.</span>}
      </p>
      {plan.feasibility && !plan.feasibility.ok && (
        <div className="problem" role="alert"><strong>Not feasible now:</strong><ul>{plan.feasibility.checks.filter((c) => !c.ok).map((c, i) => <li key={i}>{c.message}</li>)}</ul></div>
      )}
      <ul className="diff">
        {changes.map((c) => (
          <li key={c.address} className={`act-${c.action}`}>
            <code>{SIGN[c.action] ?? '?'} {c.address}</code> <span className="muted">{c.kind} · {c.action}{c.reason ? ` (${c.reason})` : ''}</span>
            {c.action === 'replace' && c.replaceFields?.length ? <div className="small">replaced because <code>{c.replaceFields.join(', ')}</code> cannot change in place</div> : null}
            {c.changes?.length ? (
              <ul>
                {c.changes.map((f) => (
                  <li key={f.path}><code>{f.path}</code>: <del>{show(f.before)}</del> → <ins>{show(f.after)}</ins>{f.forcesReplacement ? <strong> (forces replacement)</strong> : null}</li>
                ))}
              </ul>
            ) : null}
          </li>
        ))}
      </ul>
    </div>
  );
}
