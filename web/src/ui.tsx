import { useId, type ReactNode, type InputHTMLAttributes, type SelectHTMLAttributes, type TextareaHTMLAttributes } from 'react';
import { Problem } from './api/client';

export function ProblemBox({ error }: { error: unknown }) {
  if (!error) return null;
  if (error instanceof Problem) {
    return (
      <div role="alert" className="problem">
        <strong>{error.detail}</strong>
        {error.errors.length > 1 && (
          <ul>
            {error.errors.map((e) => (
              <li key={e.field}>
                <code>{e.field}</code>: {e.message}
              </li>
            ))}
          </ul>
        )}
        <div className="muted small">
          {error.code} · HTTP {error.status}
          {error.requestId ? ` · request ${error.requestId}` : ''}
        </div>
      </div>
    );
  }
  return (
    <div role="alert" className="problem">
      <strong>{error instanceof Error ? error.message : String(error)}</strong>
    </div>
  );
}

/** A labelled input; the problem's message for this field is shown under it and marks it invalid. */
export function Field({ label, name, error, hint, ...rest }: { label: string; name: string; error?: unknown; hint?: ReactNode } & InputHTMLAttributes<HTMLInputElement>) {
  const id = useId();
  const msg = error instanceof Problem ? error.fieldError(name) : undefined;
  return (
    <div className={`field${msg ? ' invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      <input id={id} name={name} aria-invalid={msg ? true : undefined} aria-describedby={msg || hint ? `${id}-msg` : undefined} {...rest} />
      {(msg || hint) && (
        <div id={`${id}-msg`} className={msg ? 'field-error' : 'muted small'}>
          {msg ?? hint}
        </div>
      )}
    </div>
  );
}

export function Select({ label, name, error, children, ...rest }: { label: string; name: string; error?: unknown; children: ReactNode } & SelectHTMLAttributes<HTMLSelectElement>) {
  const id = useId();
  const msg = error instanceof Problem ? error.fieldError(name) : undefined;
  return (
    <div className={`field${msg ? ' invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      <select id={id} name={name} aria-invalid={msg ? true : undefined} {...rest}>
        {children}
      </select>
      {msg && <div className="field-error">{msg}</div>}
    </div>
  );
}

export function TextArea({ label, name, error, ...rest }: { label: string; name: string; error?: unknown } & TextareaHTMLAttributes<HTMLTextAreaElement>) {
  const id = useId();
  const msg = error instanceof Problem ? error.fieldError(name) : undefined;
  return (
    <div className={`field${msg ? ' invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      <textarea id={id} name={name} aria-invalid={msg ? true : undefined} {...rest} />
      {msg && <div className="field-error">{msg}</div>}
    </div>
  );
}

export function Phase({ value }: { value: unknown }) {
  const v = typeof value === 'string' && value ? value : 'unknown';
  return <span className={`badge phase-${v.replace(/[^a-z_]/gi, '')}`}>{v}</span>;
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p className="muted" role="status">
      {what}…
    </p>
  );
}

export function Page({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  return (
    <section className="page" aria-labelledby="page-title">
      <header className="page-head">
        <h1 id="page-title">{title}</h1>
        {actions && <div className="actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

export function Bar({ label, used, total }: { label: string; used: number; total: number }) {
  const pct = total > 0 ? Math.round((used / total) * 100) : 0;
  return (
    <div className="bar-row">
      <div className="bar-label">
        <span>{label}</span>
        <span className="muted">
          {used.toLocaleString()} / {total.toLocaleString()} ({pct}%)
        </span>
      </div>
      <div className="bar" role="meter" aria-label={`${label}: ${pct}% used`} aria-valuenow={pct} aria-valuemin={0} aria-valuemax={100}>
        <div className={`bar-fill${pct >= 90 ? ' hot' : pct >= 70 ? ' warm' : ''}`} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function ago(ms: number | null | undefined): string {
  if (!ms) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return `${Math.max(0, s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

export function Json({ value }: { value: unknown }) {
  return <pre className="json">{JSON.stringify(value, null, 2)}</pre>;
}
