import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call, raw } from '../api/client';
import { useEventStream } from '../api/sse';
import { useSession } from '../app/session';
import { Link } from '../app/router';
import { Field, Loading, Page, Phase, ProblemBox, Select, TextArea } from '../ui';

interface Flavor { id: string; name: string; vcpus: number; ramMb: number; diskGb: number }
interface Image { id?: string; name: string; minDiskGb: number; minRamMb: number }
interface Resource { id: string; kind: string; name: string; project: string; spec: any; status: { phase: string; message?: string; outputs: Record<string, any>; conditions: any[] }; generation: number; labels: Record<string, string> }
interface Rule { direction: 'ingress' | 'egress'; protocol: string; portMin?: number; portMax?: number; remoteCidr: string }

const STEPS = ['Name', 'Flavor', 'Image', 'Boot volume', 'Networks', 'Security group', 'Key pair', 'Review'] as const;
type Step = (typeof STEPS)[number];

async function list(project: string, kind: string): Promise<Resource[]> {
  return (await call<{ items: Resource[] }>(api.GET('/api/v1/resources', { params: { query: { project, kind, limit: 200 } } }))).items;
}

/** Waits for a resource to be ready, reading its state after each of its events (no polling loop). */
async function waitReady(id: string, onPhase: (r: Resource) => void): Promise<Resource> {
  for (let i = 0; i < 600; i++) {
    const r = await raw<Resource>('GET', `/api/v1/resources/${id}`);
    onPhase(r);
    if (r.status.phase === 'ready') return r;
    if (r.status.phase === 'failed') throw new Error(`${r.kind} ${r.name} failed: ${r.status.message ?? 'see its runs'}`);
    await new Promise((res) => setTimeout(res, 500));
  }
  throw new Error('timed out waiting for the resource');
}

export default function CreateVm() {
  const { project } = useSession();
  const qc = useQueryClient();
  const [step, setStep] = useState<Step>('Name');
  const [name, setName] = useState('');
  const [flavor, setFlavor] = useState('');
  const [image, setImage] = useState('');
  const [bootVolumeSize, setBoot] = useState(20);
  const [networks, setNetworks] = useState<string[]>([]);
  const [sg, setSg] = useState('');
  const [keyName, setKeyName] = useState('');
  const [publicKey, setPublicKey] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [created, setCreated] = useState<{ runId: string; resource: string } | null>(null);

  const catalogue = useQuery({ queryKey: ['catalogue'], queryFn: () => call<{ flavors: Flavor[]; images: Image[] }>(api.GET('/api/v1/sim/catalogue')) });
  const nets = useQuery({ queryKey: ['res', project, 'network/Network'], queryFn: () => list(project, 'network/Network') });
  const routers = useQuery({ queryKey: ['res', project, 'network/Router'], queryFn: () => list(project, 'network/Router') });
  const sgs = useQuery({ queryKey: ['res', project, 'network/SecurityGroup'], queryFn: () => list(project, 'network/SecurityGroup') });
  const keys = useQuery({ queryKey: ['res', project, 'compute/Keypair'], queryFn: () => list(project, 'compute/Keypair') });
  const flavorObj = catalogue.data?.flavors.find((f) => f.name === flavor);
  const fixedDisk = !!flavorObj && flavorObj.diskGb > 0;
  const steps = useMemo(() => STEPS.filter((s) => s !== 'Boot volume' || !fixedDisk), [fixedDisk]);
  const idx = steps.indexOf(step);
  const imageObj = catalogue.data?.images.find((i) => i.name === image);

  const canNext = (): string | null => {
    switch (step) {
      case 'Name': return /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name) ? null : 'Use lower-case letters, digits and dashes, starting with a letter.';
      case 'Flavor': return flavor ? null : 'Choose a flavor.';
      case 'Image': return image ? null : 'Choose an image.';
      case 'Boot volume': return bootVolumeSize >= (imageObj?.minDiskGb ?? 1) ? null : `The image needs at least ${imageObj?.minDiskGb} GiB.`;
      case 'Networks': return networks.length ? null : 'Attach at least one network (or create one).';
      case 'Key pair': return keyName && (keys.data?.some((k) => k.name === keyName || k.spec?.name === keyName) || publicKey) ? null : 'Choose a key pair, or name one and paste its public key.';
      default: return null;
    }
  };
  const next = (e: FormEvent) => {
    e.preventDefault();
    const why = canNext();
    if (why) {
      setError(new Error(why));
      return;
    }
    setError(null);
    setStep(steps[Math.min(idx + 1, steps.length - 1)]!);
  };
  const create = async () => {
    setError(null);
    try {
      const existingKey = keys.data?.find((k) => k.name === keyName || k.spec?.name === keyName);
      const body = {
        project, name, flavor, image, networks, securityGroups: sg ? [sg] : [],
        ...(fixedDisk ? {} : { bootVolumeSize }),
        keyName: existingKey?.spec?.name ?? keyName,
        ...(!existingKey && publicKey ? { publicKey: publicKey.trim() } : {}),
      };
      const r = await call<{ run: { id: string }; server: { resource: string } }>(api.POST('/api/v1/servers', { body }));
      setCreated({ runId: r.run.id, resource: r.server.resource });
      void qc.invalidateQueries({ queryKey: ['res', project] });
    } catch (err) {
      setError(err);
    }
  };

  if (created) return <Progress runId={created.runId} resourceName={created.resource} project={project} />;
  return (
    <Page title="Create a VM">
      <ol className="wizard-steps" aria-label="Steps">
        {steps.map((s, i) => (
          <li key={s} aria-current={s === step ? 'step' : undefined} className={i < idx ? 'done' : ''}>
            {i < idx ? <button type="button" className="link" onClick={() => setStep(s)}>{s}</button> : s}
          </li>
        ))}
      </ol>
      <form className="card wizard" onSubmit={step === 'Review' ? (e) => { e.preventDefault(); void create(); } : next} aria-label={`Step: ${step}`}>
        <h2>{step}</h2>
        {step === 'Name' && <Field label="Server name" name="name" value={name} onChange={(e) => setName(e.target.value)} autoFocus required error={error} hint="lower-case letters, digits and dashes" />}
        {step === 'Flavor' && (catalogue.isPending ? <Loading /> : (
          <fieldset className="choices">
            <legend>Flavor</legend>
            {catalogue.data?.flavors.map((f) => (
              <label key={f.id} className="choice">
                <input type="radio" name="flavor" value={f.name} checked={flavor === f.name} onChange={() => setFlavor(f.name)} />
                <span><strong>{f.name}</strong> <span className="muted">{f.vcpus} vCPU · {f.ramMb / 1024} GiB RAM · {f.diskGb ? `${f.diskGb} GB disk` : 'boot from volume'}</span></span>
              </label>
            ))}
          </fieldset>
        ))}
        {step === 'Image' && (
          <fieldset className="choices">
            <legend>Image</legend>
            {catalogue.data?.images.map((i) => (
              <label key={i.name} className="choice">
                <input type="radio" name="image" value={i.name} checked={image === i.name} onChange={() => setImage(i.name)} />
                <span><strong>{i.name}</strong> <span className="muted">needs {i.minDiskGb} GB disk, {i.minRamMb} MB RAM</span></span>
              </label>
            ))}
          </fieldset>
        )}
        {step === 'Boot volume' && <Field label="Boot volume size (GiB)" name="bootVolumeSize" type="number" min={imageObj?.minDiskGb ?? 1} max={65536} value={bootVolumeSize} onChange={(e) => setBoot(Number(e.target.value))} error={error} />}
        {step === 'Networks' && <Networks project={project} nets={nets.data} routers={routers.data} selected={networks} onChange={setNetworks} onCreated={() => { void nets.refetch(); void routers.refetch(); }} />}
        {step === 'Security group' && <SecurityGroups project={project} sgs={sgs.data} selected={sg} onChange={setSg} onCreated={() => void sgs.refetch()} />}
        {step === 'Key pair' && (
          <div>
            <Select label="Key pair" name="keyName" value={keys.data?.some((k) => (k.spec?.name ?? k.name) === keyName) ? keyName : ''} onChange={(e) => { setKeyName(e.target.value); setPublicKey(''); }}>
              <option value="">Upload a new key pair…</option>
              {keys.data?.map((k) => <option key={k.id} value={k.spec?.name ?? k.name}>{k.spec?.name ?? k.name}</option>)}
            </Select>
            {!keys.data?.some((k) => (k.spec?.name ?? k.name) === keyName) && (
              <>
                <Field label="New key pair name" name="keyName" value={keyName} onChange={(e) => setKeyName(e.target.value)} error={error} />
                <TextArea label="Public key (OpenSSH)" name="publicKey" rows={3} value={publicKey} onChange={(e) => setPublicKey(e.target.value)} placeholder="ssh-ed25519 AAAA… you@laptop" error={error} />
                <label className="button">
                  Upload a .pub file
                  <input type="file" accept=".pub,text/plain" className="visually-hidden" onChange={(e) => void e.target.files?.[0]?.text().then((t) => { setPublicKey(t.trim()); if (!keyName) setKeyName((e.target.files?.[0]?.name ?? 'key').replace(/\.pub$/, '').toLowerCase().replace(/[^a-z0-9-]/g, '-')); })} />
                </label>
              </>
            )}
          </div>
        )}
        {step === 'Review' && (
          <dl className="review">
            <dt>Name</dt><dd>{name}</dd>
            <dt>Project</dt><dd>{project}</dd>
            <dt>Flavor</dt><dd>{flavor}{flavorObj ? ` (${flavorObj.vcpus} vCPU, ${flavorObj.ramMb / 1024} GiB)` : ''}</dd>
            <dt>Image</dt><dd>{image}</dd>
            <dt>Boot volume</dt><dd>{fixedDisk ? `the flavor's ${flavorObj?.diskGb} GB disk` : `${bootVolumeSize} GiB volume`}</dd>
            <dt>Networks</dt><dd>{networks.join(', ')}</dd>
            <dt>Security group</dt><dd>{sg || 'none'}</dd>
            <dt>Key pair</dt><dd>{keyName}{publicKey ? ' (uploaded now)' : ''}</dd>
          </dl>
        )}
        <ProblemBox error={error} />
        <div className="actions">
          {idx > 0 && <button type="button" onClick={() => setStep(steps[idx - 1]!)}>Back</button>}
          <button type="submit" className="primary">{step === 'Review' ? 'Create' : 'Next'}</button>
        </div>
      </form>
    </Page>
  );
}

function Networks({ project, nets, routers, selected, onChange, onCreated }: { project: string; nets: Resource[] | undefined; routers: Resource[] | undefined; selected: string[]; onChange(v: string[]): void; onCreated(): void }) {
  const [name, setName] = useState('');
  const [cidr, setCidr] = useState('');
  const [router, setRouter] = useState('');
  const [status, setStatus] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const create = async () => {
    setBusy(true);
    setError(null);
    try {
      setStatus('creating network…');
      const n = await call<{ resource: Resource }>(api.POST('/api/v1/resources', { body: { project, kind: 'network/Network', name, spec: {} } }));
      const net = await waitReady(n.resource.id, (r) => setStatus(`network ${r.status.phase}…`));
      const s = await call<{ resource: Resource }>(api.POST('/api/v1/resources', { body: { project, kind: 'network/Subnet', name: `${name}-subnet`, spec: { network: net.status.outputs.id, ...(cidr ? { cidr } : { prefixLength: 24 }) } } }));
      const subnet = await waitReady(s.resource.id, (r) => setStatus(`subnet ${r.status.phase}…`));
      if (router === '__new') {
        setStatus('creating router…');
        const rr = await call<{ resource: Resource }>(api.POST('/api/v1/resources', { body: { project, kind: 'network/Router', name: `${name}-router`, spec: { interfaces: [subnet.status.outputs.id] } } }));
        await waitReady(rr.resource.id, (r) => setStatus(`router ${r.status.phase}…`));
      } else if (router) {
        const cur = await raw<Resource>('GET', `/api/v1/resources/${router}`);
        setStatus('attaching to router…');
        const res = await fetch(`/api/v1/resources/${router}`, { method: 'PATCH', headers: { 'content-type': 'application/json', 'if-match': `"${cur.generation}"`, 'x-csrf-token': decodeURIComponent(/(?:^|;\s*)infraflow_csrf=([^;]+)/.exec(document.cookie)?.[1] ?? '') }, body: JSON.stringify({ spec: { interfaces: [...(cur.spec.interfaces ?? []), subnet.status.outputs.id] } }) });
        if (!res.ok) throw new Error((await res.json()).detail);
        await new Promise((r) => setTimeout(r, 300));
        await waitReady(router, (r) => setStatus(`router ${r.status.phase}…`));
      }
      setStatus('');
      onChange([...selected, name]);
      setName('');
      setCidr('');
      onCreated();
    } catch (e) {
      setError(e);
      setStatus('');
    } finally {
      setBusy(false);
    }
  };
  return (
    <div>
      <fieldset className="choices">
        <legend>Attach networks</legend>
        {nets === undefined ? <Loading /> : nets.length === 0 ? <p className="muted">This project has no networks yet: create one below.</p> : nets.map((n) => {
          const label = n.labels['infraflow.dev/name'] ?? n.name;
          return (
            <label key={n.id} className="choice">
              <input type="checkbox" checked={selected.includes(label)} onChange={(e) => onChange(e.target.checked ? [...selected, label] : selected.filter((x) => x !== label))} />
              <span><strong>{label}</strong> <Phase value={n.status.phase} /></span>
            </label>
          );
        })}
      </fieldset>
      <fieldset className="inline-create">
        <legend>Create a network</legend>
        <Field label="Network name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} />
        <Field label="Subnet CIDR (empty: a free /24 from IPAM)" name="cidr" value={cidr} onChange={(e) => setCidr(e.target.value)} placeholder="10.0.0.0/24" error={error} />
        <Select label="Attach to a router" name="router" value={router} onChange={(e) => setRouter(e.target.value)}>
          <option value="">No router</option>
          <option value="__new">A new router</option>
          {routers?.map((r) => <option key={r.id} value={r.id}>{r.name}</option>)}
        </Select>
        <button type="button" onClick={() => void create()} disabled={busy || !name}>Create network</button>
        {status && <p role="status" className="muted">{status}</p>}
        <ProblemBox error={error} />
      </fieldset>
    </div>
  );
}

function SecurityGroups({ project, sgs, selected, onChange, onCreated }: { project: string; sgs: Resource[] | undefined; selected: string; onChange(v: string): void; onCreated(): void }) {
  const [name, setName] = useState('');
  const [rules, setRules] = useState<Rule[]>([{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: '0.0.0.0/0' }]);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState('');
  const create = async () => {
    setError(null);
    try {
      const r = await call<{ resource: Resource }>(api.POST('/api/v1/resources', { body: { project, kind: 'network/SecurityGroup', name, spec: { description: 'created in the console', rules } } }));
      await waitReady(r.resource.id, (x) => setStatus(`security group ${x.status.phase}…`));
      setStatus('');
      onChange(name);
      onCreated();
    } catch (e) {
      setError(e);
      setStatus('');
    }
  };
  const set = (i: number, patch: Partial<Rule>) => setRules(rules.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  return (
    <div>
      <Select label="Security group" name="securityGroup" value={selected} onChange={(e) => onChange(e.target.value)}>
        <option value="">None</option>
        {sgs?.map((s) => <option key={s.id} value={s.labels['infraflow.dev/name'] ?? s.name}>{s.labels['infraflow.dev/name'] ?? s.name}</option>)}
      </Select>
      <fieldset className="inline-create">
        <legend>Create a security group</legend>
        <Field label="Group name" name="name" value={name} onChange={(e) => setName(e.target.value)} error={error} />
        <table>
          <caption className="visually-hidden">Rules</caption>
          <thead><tr><th scope="col">Direction</th><th scope="col">Protocol</th><th scope="col">Ports</th><th scope="col">From</th><th scope="col"><span className="visually-hidden">Remove</span></th></tr></thead>
          <tbody>
            {rules.map((r, i) => (
              <tr key={i}>
                <td><select aria-label={`Rule ${i + 1} direction`} value={r.direction} onChange={(e) => set(i, { direction: e.target.value as Rule['direction'] })}><option>ingress</option><option>egress</option></select></td>
                <td><select aria-label={`Rule ${i + 1} protocol`} value={r.protocol} onChange={(e) => set(i, { protocol: e.target.value })}><option>tcp</option><option>udp</option><option>icmp</option></select></td>
                <td><input aria-label={`Rule ${i + 1} ports`} size={9} value={r.portMin === undefined ? '' : r.portMin === r.portMax ? String(r.portMin) : `${r.portMin}-${r.portMax}`} onChange={(e) => { const [a, b] = e.target.value.split('-').map(Number); set(i, { portMin: a || undefined, portMax: b || a || undefined }); }} /></td>
                <td><input aria-label={`Rule ${i + 1} source CIDR`} size={14} value={r.remoteCidr} onChange={(e) => set(i, { remoteCidr: e.target.value })} /></td>
                <td><button type="button" onClick={() => setRules(rules.filter((_, j) => j !== i))} aria-label={`Remove rule ${i + 1}`}>×</button></td>
              </tr>
            ))}
          </tbody>
        </table>
        <button type="button" onClick={() => setRules([...rules, { direction: 'ingress', protocol: 'tcp', portMin: 443, portMax: 443, remoteCidr: '0.0.0.0/0' }])}>Add a rule</button>{' '}
        <button type="button" onClick={() => void create()} disabled={!name}>Create security group</button>
        {status && <p role="status" className="muted">{status}</p>}
        <ProblemBox error={error} />
      </fieldset>
    </div>
  );
}

interface StepRow { seq: number; name: string; status: string; attempts: number; startedAt?: number; finishedAt?: number; error?: { message?: string } }

/** After create: the apply run's steps live, then the server until ACTIVE with its addresses. */
function Progress({ runId, resourceName, project }: { runId: string; resourceName: string; project: string }) {
  const timeline = useQuery({ queryKey: ['timeline', runId], queryFn: () => raw<{ run: { status: string; progress: { message?: string } | null }; steps: StepRow[] }>('GET', `/api/v1/runs/${runId}/timeline`) });
  const server = useQuery({ queryKey: ['server-res', project, resourceName], queryFn: async () => (await list(project, 'compute/Server')).find((r) => r.name === resourceName) ?? null });
  const { connected } = useEventStream(`/api/v1/runs/${runId}/events/stream`, () => {
    void timeline.refetch();
    void server.refetch();
  });
  useEffect(() => {
    if (timeline.data?.run.status === 'succeeded') void server.refetch();
  }, [timeline.data?.run.status]);
  const out = server.data?.status.outputs;
  const active = out?.status === 'ACTIVE';
  return (
    <Page title={active ? `Server ${resourceName} is ACTIVE` : 'Creating the server…'}>
      <p className="muted small" aria-live="polite">{connected ? 'Following live events.' : ['succeeded', 'failed', 'cancelled'].includes(timeline.data?.run.status ?? '') ? 'The run has finished.' : 'Connecting to the event stream…'}</p>
      <section className="card">
        <h2>Run <Link to={`/runs/${runId}`}>{runId}</Link> <Phase value={timeline.data?.run.status} /></h2>
        <p>{timeline.data?.run.progress?.message}</p>
        <ol className="steps">
          {timeline.data?.steps.map((s) => (
            <li key={s.seq}><Phase value={s.status} /> {s.name}{s.attempts > 1 ? ` (attempt ${s.attempts})` : ''}{s.error?.message ? <span className="field-error"> — {s.error.message}</span> : null}</li>
          ))}
        </ol>
      </section>
      {server.data && (
        <section className="card" aria-live="polite">
          <h2>Server</h2>
          <dl className="review">
            <dt>Status</dt><dd data-testid="server-status">{out?.status ?? server.data.status.phase}</dd>
            <dt>Phase</dt><dd><Phase value={server.data.status.phase} /></dd>
            <dt>Addresses</dt><dd data-testid="server-addresses">{(out?.addresses as { ip: string }[] | undefined)?.map((a) => a.ip).join(', ') ?? '—'}</dd>
            <dt>Host</dt><dd>{out?.host ?? '—'}</dd>
          </dl>
          <Link to={`/resources/${server.data.id}`}>Open the resource</Link>
        </section>
      )}
    </Page>
  );
}
