import { useState, type FormEvent, type ReactNode } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call, raw } from '../api/client';
import { Link } from '../app/router';
import { ago, Field, Loading, Page, ProblemBox, Select } from '../ui';

const TABS = [['users', 'Users'], ['groups', 'Groups'], ['roles', 'Roles'], ['projects', 'Projects'], ['assignments', 'Role assignments'], ['tokens', 'Tokens'], ['audit', 'Audit log']] as const;

export default function Identity({ params }: { params: Record<string, string> }) {
  const tab = params.tab ?? 'users';
  return (
    <Page title="Identity">
      <nav aria-label="Identity sections" className="tabs">
        {TABS.map(([k, label]) => <Link key={k} to={`/identity/${k}`} aria-current={tab === k ? 'page' : undefined}>{label}</Link>)}
      </nav>
      {tab === 'users' && <Users />}
      {tab === 'groups' && <Groups />}
      {tab === 'roles' && <Roles />}
      {tab === 'projects' && <Projects />}
      {tab === 'assignments' && <Assignments />}
      {tab === 'tokens' && <Tokens />}
      {tab === 'audit' && <Audit />}
    </Page>
  );
}

/** A create form that shows the problem and highlights the field it names. */
function CreateForm({ title, onSubmit, children }: { title: string; onSubmit: () => Promise<void>; children: (error: unknown) => ReactNode }) {
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState('');
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setDone('');
    try {
      await onSubmit();
      setDone('Saved.');
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form className="card inline-form" onSubmit={submit} aria-label={title}>
      <h2>{title}</h2>
      {children(error)}
      <ProblemBox error={error} />
      <button type="submit" className="primary">{title}</button>
      {done && <span role="status" className="muted"> {done}</span>}
    </form>
  );
}

function useList<T = any>(key: string, path: string) {
  return useQuery({ queryKey: ['iam', key], queryFn: () => raw<{ items: T[] }>('GET', path) });
}

function Users() {
  const qc = useQueryClient();
  const users = useList('users', '/api/v1/users?limit=500');
  const groups = useList('groups', '/api/v1/groups?limit=500');
  const [f, setF] = useState({ name: '', displayName: '', email: '', password: '' });
  const [sel, setSel] = useState('');
  const [group, setGroup] = useState('');
  const memberOf = useQuery({ queryKey: ['iam', 'memberships', sel], enabled: !!sel, queryFn: async () => {
    const out: string[] = [];
    for (const g of groups.data?.items ?? []) {
      const m = await raw<{ items: { id: string }[] }>('GET', `/api/v1/groups/${g.id}/members`);
      if (m.items.some((u) => u.id === sel)) out.push(g.name);
    }
    return out;
  } });
  const [addErr, setAddErr] = useState<unknown>(null);
  return (
    <div className="grid two">
      <section className="card">
        <h2>Users</h2>
        {users.isPending ? <Loading /> : (
          <table>
            <thead><tr><th scope="col">Name</th><th scope="col">Display name</th><th scope="col">Sign-in</th><th scope="col"><span className="visually-hidden">Select</span></th></tr></thead>
            <tbody>{users.data?.items.map((u) => <tr key={u.id}><td>{u.name}</td><td>{u.displayName ?? ''}</td><td>{u.disabled ? 'disabled' : u.hasPassword ? 'password' : 'identity provider'}</td><td><button type="button" onClick={() => setSel(u.id)} aria-pressed={sel === u.id}>Groups…</button></td></tr>)}</tbody>
          </table>
        )}
        {sel && (
          <div className="subcard">
            <h3>Groups of {users.data?.items.find((u) => u.id === sel)?.name}</h3>
            <p>{memberOf.data?.length ? memberOf.data.join(', ') : 'none'}</p>
            <form onSubmit={async (e) => { e.preventDefault(); setAddErr(null); try { await raw('PUT', `/api/v1/groups/${group}/members/${sel}`); await memberOf.refetch(); } catch (err) { setAddErr(err); } }}>
              <Select label="Add to group" name="group" value={group} onChange={(e) => setGroup(e.target.value)}>
                <option value="">choose…</option>
                {groups.data?.items.map((g) => <option key={g.id} value={g.id}>{g.name}</option>)}
              </Select>
              <button type="submit" disabled={!group}>Add to group</button>
              <ProblemBox error={addErr} />
            </form>
          </div>
        )}
      </section>
      <CreateForm title="Create user" onSubmit={async () => {
        await call(api.POST('/api/v1/users', { body: { name: f.name, ...(f.displayName ? { displayName: f.displayName } : {}), ...(f.email ? { email: f.email } : {}), ...(f.password ? { password: f.password } : {}) } }));
        setF({ name: '', displayName: '', email: '', password: '' });
        await qc.invalidateQueries({ queryKey: ['iam', 'users'] });
      }}>
        {(error) => (
          <>
            <Field label="User name" name="name" value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} error={error} required />
            <Field label="Display name" name="displayName" value={f.displayName} onChange={(e) => setF({ ...f, displayName: e.target.value })} error={error} />
            <Field label="E-mail" name="email" type="email" value={f.email} onChange={(e) => setF({ ...f, email: e.target.value })} error={error} />
            <Field label="Password (empty: sign-in through the identity provider only)" name="password" type="password" autoComplete="new-password" value={f.password} onChange={(e) => setF({ ...f, password: e.target.value })} error={error} />
          </>
        )}
      </CreateForm>
    </div>
  );
}

function Groups() {
  const qc = useQueryClient();
  const groups = useList('groups', '/api/v1/groups?limit=500');
  const assignments = useList('assignments', '/api/v1/role-assignments?limit=500');
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  return (
    <div className="grid two">
      <section className="card">
        <h2>Groups and the roles they carry</h2>
        <table>
          <thead><tr><th scope="col">Group</th><th scope="col">Roles</th></tr></thead>
          <tbody>{groups.data?.items.map((g) => (
            <tr key={g.id}><td>{g.name}<div className="muted small">{g.description}</div></td>
              <td>{(assignments.data?.items ?? []).filter((a) => a.group === g.id).map((a) => `${a.role} on ${a.system ? 'the system' : a.project}`).join('; ') || <span className="muted">no roles</span>}</td></tr>
          ))}</tbody>
        </table>
      </section>
      <CreateForm title="Create group" onSubmit={async () => {
        await call(api.POST('/api/v1/groups', { body: { name, ...(description ? { description } : {}) } }));
        setName('');
        setDescription('');
        await qc.invalidateQueries({ queryKey: ['iam', 'groups'] });
      }}>
        {(error) => (
          <>
            <Field label="Group name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} required />
            <Field label="Description" name="description" value={description} onChange={(e) => setDescription(e.target.value)} error={error} />
          </>
        )}
      </CreateForm>
    </div>
  );
}

function Roles() {
  const qc = useQueryClient();
  const roles = useList('roles', '/api/v1/roles');
  const perms = useQuery({ queryKey: ['permissions'], queryFn: () => raw<{ items: { name: string; description: string }[] }>('GET', '/api/v1/permissions') });
  const [name, setName] = useState('');
  const [chosen, setChosen] = useState<string[]>([]);
  return (
    <div className="grid two">
      <section className="card">
        <h2>Roles</h2>
        <table>
          <thead><tr><th scope="col">Role</th><th scope="col">Permissions</th></tr></thead>
          <tbody>{roles.data?.items.map((r) => <tr key={r.id}><td>{r.name}{r.builtin ? <span className="muted small"> (built in)</span> : null}</td><td className="small">{r.permissions.join(', ')}</td></tr>)}</tbody>
        </table>
      </section>
      <CreateForm title="Create role" onSubmit={async () => {
        await call(api.POST('/api/v1/roles', { body: { name, permissions: chosen as any } }));
        setName('');
        setChosen([]);
        await qc.invalidateQueries({ queryKey: ['iam', 'roles'] });
      }}>
        {(error) => (
          <>
            <Field label="Role name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} required />
            <fieldset className="choices perms" aria-invalid={error && (error as any).fieldError?.('permissions') ? true : undefined}>
              <legend>Permissions</legend>
              {perms.data?.items.map((p) => (
                <label key={p.name} className="choice">
                  <input type="checkbox" checked={chosen.includes(p.name)} onChange={(e) => setChosen(e.target.checked ? [...chosen, p.name] : chosen.filter((x) => x !== p.name))} />
                  <span><code>{p.name}</code> <span className="muted small">{p.description}</span></span>
                </label>
              ))}
              {error && (error as any).fieldError?.('permissions') ? <div className="field-error">{(error as any).fieldError('permissions')}</div> : null}
            </fieldset>
          </>
        )}
      </CreateForm>
    </div>
  );
}

function Projects() {
  const qc = useQueryClient();
  const projects = useList('projects', '/api/v1/projects?limit=500');
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  return (
    <div className="grid two">
      <section className="card">
        <h2>Projects</h2>
        <ul>{projects.data?.items.map((p) => <li key={p.id}>{p.name} <span className="muted small">{p.description}</span></li>)}</ul>
      </section>
      <CreateForm title="Create project" onSubmit={async () => {
        await call(api.POST('/api/v1/projects', { body: { name, ...(description ? { description } : {}) } }));
        setName('');
        setDescription('');
        await qc.invalidateQueries({ queryKey: ['iam', 'projects'] });
        await qc.invalidateQueries({ queryKey: ['projects'] });
      }}>
        {(error) => (
          <>
            <Field label="Project name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} required />
            <Field label="Description" name="description" value={description} onChange={(e) => setDescription(e.target.value)} error={error} />
          </>
        )}
      </CreateForm>
    </div>
  );
}

function Assignments() {
  const qc = useQueryClient();
  const list = useList('assignments', '/api/v1/role-assignments?limit=500');
  const users = useList('users', '/api/v1/users?limit=500');
  const groups = useList('groups', '/api/v1/groups?limit=500');
  const roles = useList('roles', '/api/v1/roles');
  const projects = useList('projects', '/api/v1/projects?limit=500');
  const [f, setF] = useState({ who: '', role: '', project: '' });
  const nameOf = (a: any) => (a.user ? `user ${users.data?.items.find((u) => u.id === a.user)?.name ?? a.user}` : `group ${groups.data?.items.find((g) => g.id === a.group)?.name ?? a.group}`);
  return (
    <div className="grid two">
      <section className="card">
        <h2>Role assignments</h2>
        <table>
          <thead><tr><th scope="col">Who</th><th scope="col">Role</th><th scope="col">Where</th><th scope="col"><span className="visually-hidden">Remove</span></th></tr></thead>
          <tbody>{list.data?.items.map((a) => <tr key={a.id}><td>{nameOf(a)}</td><td>{a.role}</td><td>{a.system ? 'system' : a.project}</td><td><button type="button" onClick={async () => { await raw('DELETE', `/api/v1/role-assignments/${a.id}`); await list.refetch(); }} aria-label={`Remove ${a.role} from ${nameOf(a)}`}>Remove</button></td></tr>)}</tbody>
        </table>
      </section>
      <CreateForm title="Assign role" onSubmit={async () => {
        const [kind, id] = f.who.split(':');
        await call(api.POST('/api/v1/role-assignments', { body: { role: f.role, ...(kind === 'user' ? { user: id } : { group: id }), ...(f.project === '*' ? { system: true } : { project: f.project }) } }));
        await qc.invalidateQueries({ queryKey: ['iam'] });
      }}>
        {(error) => (
          <>
            <Select label="User or group" name="user" value={f.who} onChange={(e) => setF({ ...f, who: e.target.value })} error={error}>
              <option value="">choose…</option>
              <optgroup label="Groups">{groups.data?.items.map((g) => <option key={g.id} value={`group:${g.id}`}>{g.name}</option>)}</optgroup>
              <optgroup label="Users">{users.data?.items.map((u) => <option key={u.id} value={`user:${u.id}`}>{u.name}</option>)}</optgroup>
            </Select>
            <Select label="Role" name="role" value={f.role} onChange={(e) => setF({ ...f, role: e.target.value })} error={error}>
              <option value="">choose…</option>
              {roles.data?.items.map((r) => <option key={r.id} value={r.name}>{r.name}</option>)}
            </Select>
            <Select label="Project" name="project" value={f.project} onChange={(e) => setF({ ...f, project: e.target.value })} error={error}>
              <option value="">choose…</option>
              <option value="*">the whole system</option>
              {projects.data?.items.map((p) => <option key={p.id} value={p.name}>{p.name}</option>)}
            </Select>
          </>
        )}
      </CreateForm>
    </div>
  );
}

function Tokens() {
  const list = useList('tokens', '/api/v1/tokens?limit=200&active=true');
  const [name, setName] = useState('');
  const [secret, setSecret] = useState('');
  return (
    <div className="grid two">
      <section className="card">
        <h2>Your active tokens</h2>
        <table>
          <thead><tr><th scope="col">Name</th><th scope="col">Kind</th><th scope="col">Expires</th><th scope="col"><span className="visually-hidden">Revoke</span></th></tr></thead>
          <tbody>{list.data?.items.map((t) => <tr key={t.id}><td>{t.name ?? '(session)'}</td><td>{t.kind}</td><td>{new Date(t.expiresAt).toLocaleDateString()}</td><td><button type="button" onClick={async () => { await raw('DELETE', `/api/v1/tokens/${t.id}`); await list.refetch(); }}>Revoke</button></td></tr>)}</tbody>
        </table>
      </section>
      <CreateForm title="Create API token" onSubmit={async () => {
        const r = await call<{ token: string }>(api.POST('/api/v1/tokens', { body: { name } }));
        setSecret(r.token);
        await list.refetch();
      }}>
        {(error) => (
          <>
            <Field label="Token name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} required />
            {secret && <p role="status">Copy it now, it is shown once: <code className="secret">{secret}</code></p>}
          </>
        )}
      </CreateForm>
    </div>
  );
}

function Audit() {
  const [actor, setActor] = useState('');
  const [outcome, setOutcome] = useState('');
  const [action, setAction] = useState('');
  const q = useQuery({ queryKey: ['iam', 'audit', actor, outcome, action], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/audit', { params: { query: { limit: 100, ...(actor ? { actor } : {}), ...(outcome ? { outcome: outcome as 'denied' } : {}), ...(action ? { action } : {}) } } })) });
  return (
    <section className="card">
      <h2>Audit log</h2>
      <form className="filters" role="search" aria-label="Filter the audit log" onSubmit={(e) => e.preventDefault()}>
        <label>Actor <input value={actor} onChange={(e) => setActor(e.target.value)} /></label>
        <label>Outcome <select value={outcome} onChange={(e) => setOutcome(e.target.value)}><option value="">any</option><option>allowed</option><option>denied</option><option>failed</option></select></label>
        <label>Action <input value={action} onChange={(e) => setAction(e.target.value)} placeholder="iam:write" /></label>
      </form>
      <ProblemBox error={q.error} />
      <table>
        <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Route</th><th scope="col">Outcome</th><th scope="col">Target</th></tr></thead>
        <tbody>{q.data?.items.map((a) => <tr key={a.id}><td>{ago(a.at)}</td><td>{a.actorName ?? '—'}</td><td><code>{a.route}</code></td><td>{a.outcome} ({a.status})</td><td>{a.target ?? ''}{a.message ? ` — ${a.message}` : ''}</td></tr>)}</tbody>
      </table>
    </section>
  );
}
