import { lazy, Suspense, useCallback, useEffect, useMemo, useState, type ComponentType, type FormEvent, type ReactElement } from "react";
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call, raw, setUnauthorizedHandler } from '../api/client';
import { Field, Loading, ProblemBox } from '../ui';
import { Link, match, navigate, useLocation } from './router';
import { Session, type Me, type SessionValue } from './session';

const Overview = lazy(() => import('../pages/Overview'));
const CreateVm = lazy(() => import('../pages/CreateVm'));
const Resources = lazy(() => import('../pages/Resources'));
const ResourceDetail = lazy(() => import('../pages/ResourceDetail'));
const Stacks = lazy(() => import('../pages/Stacks'));
const StackDetail = lazy(() => import('../pages/StackDetail'));
const StackEditor = lazy(() => import('../pages/StackEditor'));
const Runs = lazy(() => import('../pages/Runs'));
const RunDetail = lazy(() => import('../pages/RunDetail'));
const Inventory = lazy(() => import('../pages/Inventory'));
const Ipam = lazy(() => import('../pages/Ipam'));
const Identity = lazy(() => import('../pages/Identity'));
const Simulator = lazy(() => import('../pages/Simulator'));
const NotInstalled = lazy(() => import('../pages/NotInstalled'));

const ROUTES: [string, ComponentType<{ params: Record<string, string> }>][] = [
  ['/', Overview],
  ['/vm/new', CreateVm],
  ['/resources', Resources],
  ['/resources/:id', ResourceDetail],
  ['/stacks', Stacks],
  ['/stacks/new', StackEditor],
  ['/stacks/:id', StackDetail],
  ['/runs', Runs],
  ['/runs/:id', RunDetail],
  ['/inventory', Inventory],
  ['/ipam', Ipam],
  ['/identity', Identity],
  ['/identity/:tab', Identity],
  ['/simulator', Simulator],
  ['/clusters', NotInstalled],
  ['/apps', NotInstalled],
];

const NAV: { to: string; label: string; perm?: string; system?: boolean }[] = [
  { to: '/', label: 'Overview' },
  { to: '/vm/new', label: 'Create a VM', perm: 'resources:write' },
  { to: '/resources', label: 'Resources', perm: 'resources:read' },
  { to: '/stacks', label: 'Stacks', perm: 'stacks:read' },
  { to: '/runs', label: 'Runs', perm: 'runs:read' },
  { to: '/clusters', label: 'Cluster orders' },
  { to: '/apps', label: 'Applications' },
  { to: '/inventory', label: 'Inventory', perm: 'inventory:read' },
  { to: '/ipam', label: 'IPAM', perm: 'ipam:read' },
  { to: '/identity', label: 'Identity', perm: 'iam:read', system: true },
  { to: '/simulator', label: 'Simulator', perm: 'sim:read' },
];

interface Providers { password: boolean; oidc: { name: string; startUrl: string; refreshSeconds: number } | null }

export function App() {
  const qc = useQueryClient();
  const providers = useQuery({ queryKey: ['providers'], queryFn: () => call<Providers>(api.GET('/api/v1/auth/providers')) });
  const me = useQuery({ queryKey: ['whoami'], queryFn: () => call<Me>(api.GET('/api/v1/auth/whoami')), retry: false });
  // a 401 while signed in means the session ended (expired, revoked, refused upstream): back to the sign-in page
  useEffect(() => setUnauthorizedHandler(() => {
    if (qc.getQueryData(['whoami'])) qc.resetQueries({ queryKey: ['whoami'] });
  }), [qc]);

  if (me.isPending || providers.isPending) return <Loading what="Starting the console" />;
  if (me.isError || !me.data) return <SignIn providers={providers.data} onSignedIn={() => void me.refetch()} />;
  return <Shell me={me.data} providers={providers.data} />;
}

function SignIn({ providers, onSignedIn }: { providers: Providers | undefined; onSignedIn(): void }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await call(api.POST('/api/v1/auth/session', { body: { name, password } }));
      onSignedIn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const returnTo = location.pathname + location.search;
  return (
    <main className="signin">
      <h1>Infraflow</h1>
      <p className="muted">Sign in to the console.</p>
      {providers?.oidc && (
        <a className="button primary wide" href={`${providers.oidc.startUrl}?returnTo=${encodeURIComponent(returnTo)}`}>
          Sign in with {providers.oidc.name}
        </a>
      )}
      {providers?.password !== false && (
        <form onSubmit={submit} aria-label="Sign in with a password">
          {providers?.oidc && <p className="or">or with a password</p>}
          <Field label="User name" name="name" autoComplete="username" value={name} onChange={(e) => setName(e.target.value)} error={error} required />
          <Field label="Password" name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} error={error} required />
          <ProblemBox error={error} />
          <button className="primary wide" type="submit" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      )}
    </main>
  );
}

function Shell({ me, providers }: { me: Me; providers: Providers | undefined }) {
  const qc = useQueryClient();
  const { path } = useLocation();
  const projects = useQuery({ queryKey: ['projects'], queryFn: () => call<{ items: { name: string }[] }>(api.GET('/api/v1/projects', { params: { query: { limit: 500 } } })) });
  const names = useMemo(() => (projects.data?.items ?? []).map((p) => p.name), [projects.data]);
  const [project, setProjectState] = useState(() => localStorage.getItem('infraflow.project') ?? '');
  useEffect(() => {
    if (names.length && !names.includes(project)) setProjectState(names.includes('default') ? 'default' : names[0]!);
  }, [names, project]);
  const setProject = useCallback((p: string) => {
    localStorage.setItem('infraflow.project', p);
    setProjectState(p);
  }, []);
  // federated sessions: group changes upstream apply at each refresh
  useEffect(() => {
    if (!providers?.oidc) return;
    const t = setInterval(() => {
      void raw('POST', '/api/v1/auth/refresh').then(() => qc.invalidateQueries({ queryKey: ['whoami'] })).catch(() => undefined);
    }, providers.oidc.refreshSeconds * 1000);
    return () => clearInterval(t);
  }, [providers, qc]);
  const value: SessionValue = useMemo(() => ({
    me, project, setProject,
    can: (perm, scope = 'project') => me.system.includes(perm) || (scope === 'project' && (me.projects[project]?.includes(perm) ?? false)),
    signOut: async () => {
      const r = await raw<{ logoutUrl: string | null }>('DELETE', '/api/v1/auth/session');
      qc.clear();
      if (r.logoutUrl) location.assign(r.logoutUrl);
      else location.assign('/');
    },
  }), [me, project, setProject, qc]);

  let page: ReactElement = <h1>Not found</h1>;
  for (const [pattern, C] of ROUTES) {
    const params = match(pattern, path === '' ? '/' : path);
    if (params) {
      page = <C params={params} />;
      break;
    }
  }
  const visible = NAV.filter((n) => !n.perm || value.can(n.perm, n.system ? 'system' : 'project') || (!n.system && Object.values(me.projects).some((p) => p.includes(n.perm!))));
  return (
    <Session.Provider value={value}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/" className="brand">
          Infraflow
        </Link>
        <label className="project-switch">
          <span>Project</span>
          <select value={project} onChange={(e) => setProject(e.target.value)} aria-label="Project">
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <span className="spacer" />
        <span className="muted">{me.user.displayName ?? me.user.name}</span>
        <button type="button" onClick={() => void value.signOut()}>
          Sign out
        </button>
      </header>
      <div className="layout">
        <nav aria-label="Main">
          <ul>
            {visible.map((n) => (
              <li key={n.to}>
                <Link to={n.to} aria-current={(n.to === '/' ? path === '/' : path.startsWith(n.to)) ? 'page' : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1}>
          <Suspense fallback={<Loading />}>{project || path.startsWith('/identity') ? page : <Loading what="Loading projects" />}</Suspense>
        </main>
      </div>
    </Session.Provider>
  );
}

export { navigate };
