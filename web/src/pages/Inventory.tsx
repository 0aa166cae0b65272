import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, call } from '../api/client';
import { Bar, Loading, Page, Phase, ProblemBox } from '../ui';

export default function Inventory() {
  const [state, setState] = useState('');
  const util = useQuery({ queryKey: ['inv-util'], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/inventory/utilization')) });
  const racks = useQuery({ queryKey: ['racks'], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/inventory/racks', {} as any)) });
  const servers = useQuery({ queryKey: ['inv-servers', state], queryFn: () => call<{ items: any[]; nextCursor: string | null }>(api.GET('/api/v1/inventory/servers', { params: { query: { limit: 200, ...(state ? { state } : {}) } as any } })) });
  return (
    <Page title="Inventory">
      <section className="card">
        <h2>Servers by type and state</h2>
        <ProblemBox error={util.error} />
        {util.isPending ? <Loading /> : !util.data?.items.length ? <p className="muted">No bare-metal inventory imported (infraflow inventory import).</p> : (
          <table>
            <thead><tr><th scope="col">Type</th><th scope="col">Datacenter</th><th scope="col">States</th><th scope="col">Use</th></tr></thead>
            <tbody>{util.data.items.map((u, i) => {
              const counts = (u.counts ?? u.states ?? {}) as Record<string, number>;
              const total = u.total ?? Object.values(counts).reduce((a, b) => a + b, 0);
              const avail = u.available ?? counts.available ?? 0;
              return <tr key={i}><td>{u.type}</td><td>{u.datacenter}</td><td>{Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(' · ')}</td><td><Bar label={u.type} used={total - avail} total={total} /></td></tr>;
            })}</tbody>
          </table>
        )}
      </section>
      <div className="grid two">
        <section className="card">
          <h2>Racks</h2>
          <ul>{(racks.data?.items ?? []).map((r) => <li key={r.id ?? r.name}>{r.name} <span className="muted">{r.datacenter}</span></li>)}</ul>
        </section>
        <section className="card">
          <h2>Servers</h2>
          <label>State <select value={state} onChange={(e) => setState(e.target.value)}><option value="">any</option>{['available', 'allocated', 'provisioning', 'quarantined', 'maintenance', 'failed'].map((s) => <option key={s}>{s}</option>)}</select></label>
          <table>
            <thead><tr><th scope="col">Server</th><th scope="col">Type</th><th scope="col">Rack</th><th scope="col">State</th></tr></thead>
            <tbody>{(servers.data?.items ?? []).map((s) => <tr key={s.id}><td>{s.name}</td><td>{s.type}</td><td>{s.rack ?? '—'}</td><td><Phase value={s.state} /></td></tr>)}</tbody>
          </table>
        </section>
      </div>
    </Page>
  );
}
