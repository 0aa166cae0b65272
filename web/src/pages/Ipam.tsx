import { useQuery } from '@tanstack/react-query';
import { api, call, raw } from '../api/client';
import { Bar, Loading, Page, ProblemBox } from '../ui';

function PrefixUse({ id }: { id: string }) {
  const u = useQuery({ queryKey: ['prefix-util', id], queryFn: () => raw<any>('GET', `/api/v1/ipam/prefixes/${id}/utilization`) });
  if (!u.data) return <span className="muted">…</span>;
  const used = u.data.used ?? u.data.allocated ?? 0;
  const total = u.data.total ?? u.data.size ?? 0;
  return <Bar label="addresses" used={Number(used)} total={Number(total)} />;
}

function PoolUse({ id, name }: { id: string; name: string }) {
  const u = useQuery({ queryKey: ['pool-util', id], queryFn: () => raw<any>('GET', `/api/v1/ipam/vlan-pools/${id}/utilization`) });
  if (!u.data) return <span className="muted">…</span>;
  return <Bar label={name} used={Number(u.data.used ?? u.data.allocated ?? 0)} total={Number(u.data.total ?? u.data.size ?? 0)} />;
}

export default function Ipam() {
  const prefixes = useQuery({ queryKey: ['prefixes'], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/ipam/prefixes', { params: { query: { limit: 100 } as any } })) });
  const pools = useQuery({ queryKey: ['vlan-pools'], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/ipam/vlan-pools', { params: { query: { limit: 100 } as any } })) });
  return (
    <Page title="IPAM">
      <section className="card">
        <h2>Prefix utilization</h2>
        <ProblemBox error={prefixes.error} />
        {prefixes.isPending ? <Loading /> : !prefixes.data?.items.length ? <p className="muted">No prefixes yet.</p> : (
          <table>
            <thead><tr><th scope="col">Prefix</th><th scope="col">Scope</th><th scope="col">Kind</th><th scope="col">Use</th></tr></thead>
            <tbody>{prefixes.data.items.map((p) => <tr key={p.id}><td><code>{p.cidr ?? p.prefix}</code></td><td>{p.scope ?? '—'}</td><td>{p.kind ?? '—'}</td><td><PrefixUse id={p.id} /></td></tr>)}</tbody>
          </table>
        )}
      </section>
      <section className="card">
        <h2>VLAN pools</h2>
        {!pools.data?.items.length ? <p className="muted">No VLAN pools yet.</p> : pools.data.items.map((p) => <PoolUse key={p.id} id={p.id} name={p.name} />)}
      </section>
    </Page>
  );
}
