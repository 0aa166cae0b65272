import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, call, raw } from '../api/client';
import { useSession } from '../app/session';
import { Bar, Field, Json, Loading, Page, ProblemBox, TextArea } from '../ui';

export default function Simulator() {
  const { can } = useSession();
  const admin = can('sim:control', 'system');
  const sim = useQuery({ queryKey: ['sim'], queryFn: () => call<any>(api.GET('/api/v1/sim')) });
  const hosts = useQuery({ queryKey: ['sim-hosts'], queryFn: () => call<{ items: any[] }>(api.GET('/api/v1/sim/hosts')) });
  const [speed, setSpeed] = useState('');
  const [faults, setFaults] = useState('');
  const [error, setError] = useState<unknown>(null);
  const act = async (method: string, url: string, body?: unknown) => {
    setError(null);
    try {
      await raw(method, url, body);
      await Promise.all([sim.refetch(), hosts.refetch()]);
    } catch (e) {
      setError(e);
    }
  };
  if (sim.isPending) return <Loading />;
  return (
    <Page title="Simulator">
      <ProblemBox error={sim.error ?? error} />
      <div className="grid two">
        <section className="card">
          <h2>Speed and faults</h2>
          <p>Speed ×{sim.data?.speed} · seed {sim.data?.seed} · {sim.data?.faults?.rules?.length ?? 0} fault rules</p>
          {admin && (
            <form onSubmit={(e) => { e.preventDefault(); void act('PUT', '/api/v1/sim/speed', { speed: Number(speed) }); }}>
              <Field label="Speed factor" name="speed" type="number" min={0.001} step="any" value={speed} onChange={(e) => setSpeed(e.target.value)} error={error} />
              <button type="submit">Set speed</button>
            </form>
          )}
          {admin && (
            <form onSubmit={(e) => { e.preventDefault(); try { void act('PUT', '/api/v1/sim/faults', { rules: JSON.parse(faults || '[]') }); } catch { setError(new Error('Fault rules: not valid JSON')); } }}>
              <TextArea label="Fault rules (JSON array)" name="rules" rows={4} value={faults} onChange={(e) => setFaults(e.target.value)} placeholder='[{"kind":"compute/Server","operation":"create","probability":0.5}]' error={error} />
              <button type="submit">Replace fault rules</button> <button type="button" onClick={() => void act('DELETE', '/api/v1/sim/faults')}>Clear faults</button>
            </form>
          )}
          <Json value={sim.data?.faults} />
        </section>
        <section className="card">
          <h2>Hypervisors</h2>
          <table>
            <thead><tr><th scope="col">Host</th><th scope="col">Zone</th><th scope="col">vCPUs</th><th scope="col">State</th>{admin && <th scope="col"><span className="visually-hidden">Action</span></th>}</tr></thead>
            <tbody>{(hosts.data?.items ?? []).map((h) => (
              <tr key={h.name}>
                <td>{h.name}</td><td>{h.zone}</td><td><Bar label={h.name} used={h.usedVcpus} total={h.vcpuCapacity} /></td><td>{h.enabled ? 'enabled' : 'disabled'}</td>
                {admin && <td><button type="button" onClick={() => void act('POST', `/api/v1/sim/hosts/${h.name}/${h.enabled ? 'disable' : 'enable'}`)}>{h.enabled ? 'Disable' : 'Enable'}</button></td>}
              </tr>
            ))}</tbody>
          </table>
        </section>
      </div>
    </Page>
  );
}
