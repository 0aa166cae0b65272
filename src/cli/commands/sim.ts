import { yaml } from '../lazy.js';
import { CliError, EXIT } from '../errors.js';
import { printList, printObject, renderTable, type Column } from '../output.js';
import type { CliContext, CommandModule } from './context.js';

/**
 * `infraflow sim …`: the simulated datacenter's controls (GET/PUT /sim/…).
 * Reads take `-o table|json|yaml`; changes need sim:control (admin) and
 * print one line.
 */

const QUOTA_FIELDS = [
  { flag: 'instances', key: 'instances' },
  { flag: 'cores', key: 'cores' },
  { flag: 'ramMb', key: 'ramMb' },
  { flag: 'floatingIps', key: 'floatingIps' },
  { flag: 'volumeGb', key: 'volumeGb' },
] as const;

const OBJECT_COLUMNS: Column[] = [
  { header: 'id', get: (o) => o.id }, { header: 'kind', get: (o) => o.kind }, { header: 'name', get: (o) => o.name }, { header: 'project', get: (o) => o.project },
  { header: 'phase', get: (o) => (o.stuck ? `${o.phase} (stuck)` : o.phase) }, { header: 'host', get: (o) => o.host }, { header: 'failure', get: (o) => o.failure?.message },
];
const HOST_COLUMNS: Column[] = [
  { header: 'name', get: (h) => h.name }, { header: 'zone', get: (h) => h.zone }, { header: 'vcpu used', get: (h) => `${h.usedVcpus}/${h.vcpuCapacity}` },
  { header: 'ram used mb', get: (h) => `${h.usedRamMb}/${h.ramMb}` }, { header: 'enabled', get: (h) => h.enabled },
];
const RULE_COLUMNS: Column[] = [
  { header: '#', get: (r) => r.index }, { header: 'kind', get: (r) => r.kind }, { header: 'op', get: (r) => r.op },
  { header: 'effects', get: (r) => ['transientRate', 'permanentRate', 'hangRate', 'stuckRate', 'slowRate', 'degradedRate'].filter((k) => r[k] > 0).map((k) => `${k}=${r[k]}${k === 'permanentRate' ? ` (${r.permanentReason})` : k === 'slowRate' ? ` x${r.slowFactor}` : ''}`).join(' ') || '-' },
  { header: 'attempts', get: (r) => r.attempts ?? 'all' },
];

function number(what: string, v: string, opts: { integer?: boolean; min?: number } = {}): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new CliError(`${what}: "${v}" is not ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}`, EXIT.usage);
  }
  return n;
}

function parseDoc(text: string, file: string): unknown {
  try {
    return yaml().parse(text);
  } catch (e) {
    throw new CliError(`${file}: not valid YAML or JSON (${(e as Error).message.split('\n')[0]})`, EXIT.usage);
  }
}

export const registerSimCommands: CommandModule = (program, ctx: CliContext) => {
  const { io, client, cfg, fmt, outputOption } = ctx;
  const enc = encodeURIComponent;
  const sim = program.command('sim').description('the simulated datacenter: speed, seed, fault injection, quotas, hypervisors, objects, drift (changes are admin)');

  sim.command('status').description('speed, seed, fault rules, capacity in use, objects by kind and phase').addOption(outputOption()).action(async (o) => {
    const s = await client().get('/sim');
    if (fmt(o.output) !== 'table') return printObject(io.out, fmt(o.output), s);
    const h = s.hosts;
    io.out.write(`speed    ${s.speed}x (simulated time per real time)\nseed     ${s.seed}\n`);
    io.out.write(`faults   ${s.faults.rules.length ? `${s.faults.rules.length} rule(s): ${s.faults.rules.map((r: any) => `${r.kind} ${r.op}`).join(', ')}` : 'none'}\n`);
    io.out.write(`hosts    ${h.count} (${h.enabled} enabled), vCPU ${h.usedVcpus}/${h.vcpuCapacity}, RAM ${h.usedRamMb}/${h.ramMb} MB\n`);
    const metal = Object.entries(s.metal as Record<string, { total: number; allocated: number }>);
    if (metal.length) io.out.write(`metal    ${metal.map(([t, m]) => `${t} ${m.allocated}/${m.total}`).join(', ')}\n`);
    const rows = Object.entries(s.objects as Record<string, Record<string, number>>).flatMap(([kind, phases]) => Object.entries(phases).map(([phase, count]) => ({ kind, phase, count })));
    io.out.write(rows.length ? `\n${renderTable(rows, [{ header: 'kind', get: (r) => r.kind }, { header: 'phase', get: (r) => r.phase }, { header: 'count', get: (r) => r.count }])}` : 'objects  none\n');
  });

  sim.command('speed').description('show the speed factor, or set it (admin): simulated time runs <n> times faster').argument('[n]').action(async (n) => {
    if (n === undefined) return void io.out.write(`${(await client().get('/sim')).speed}\n`);
    const r = await client().request('PUT', '/sim/speed', { body: { speed: number('speed', n) } });
    io.out.write(`sim speed set to ${r.body.speed}x\n`);
  });
  sim.command('seed').description('show the seed, or set it (admin): latency draws and fault decisions follow it').argument('[n]').action(async (n) => {
    if (n === undefined) return void io.out.write(`${(await client().get('/sim')).seed}\n`);
    const r = await client().request('PUT', '/sim/seed', { body: { seed: number('seed', n, { integer: true }) } });
    io.out.write(`sim seed set to ${r.body.seed}\n`);
  });

  // ---------------------------------------------------------------- faults
  const faults = sim.command('faults').description('fault injection rules');
  faults.command('list', { isDefault: true }).description('the rules, in the order they are tried').addOption(outputOption()).action(async (o) => {
    const r = await client().get('/sim/faults');
    if (fmt(o.output) !== 'table') return printObject(io.out, fmt(o.output), r);
    printList(io.out, 'table', r.rules.map((x: any, i: number) => ({ ...x, index: i })), RULE_COLUMNS);
  });
  faults.command('set').description('replace the rules from a YAML or JSON file: { rules: [...] } or a list of rules (admin)').requiredOption('-f, --file <path>', 'rules document (- for stdin)').action(async (o) => {
    const doc = parseDoc(ctx.readDoc(o.file), o.file);
    const body = Array.isArray(doc) ? { rules: doc } : doc ?? { rules: [] };
    const r = await client().request('PUT', '/sim/faults', { body });
    io.out.write(`sim fault rules set: ${r.body.rules.length} rule(s)\n`);
  });
  faults.command('clear').description('remove every rule: no more injected faults (admin)').action(async () => {
    await client().request('DELETE', '/sim/faults');
    io.out.write('sim fault rules cleared\n');
  });

  // ---------------------------------------------------------------- quotas
  const projectOf = (p: string | undefined): string => {
    const project = p ?? cfg().project;
    if (!project) throw new CliError('give a project: infraflow sim quota get <project> (or -p <project>)', EXIT.usage);
    return project;
  };
  const printQuota = (output: string | undefined, r: { project: string; quota: Record<string, number> }) => {
    if (fmt(output) !== 'table') return printObject(io.out, fmt(output), r);
    printObject(io.out, 'table', { project: r.project, ...r.quota });
  };
  const quota = sim.command('quota').description('a project\'s simulated cloud quota');
  quota.command('get').argument('[project]', 'project (default: the configured one)').addOption(outputOption()).action(async (p, o) => {
    printQuota(o.output, await client().get(`/sim/quotas/${enc(projectOf(p))}`));
  });
  quota.command('set').description('change some limits; the others stay (admin)').argument('[project]', 'project (default: the configured one)')
    .option('--instances <n>', 'servers and bare-metal instances').option('--cores <n>', 'vCPUs').option('--ram-mb <n>', 'RAM in MB')
    .option('--floating-ips <n>', 'floating IPs').option('--volume-gb <n>', 'volume storage in GB').addOption(outputOption())
    .action(async (p, o) => {
      const body: Record<string, number> = {};
      for (const f of QUOTA_FIELDS) {
        const v = (o as Record<string, string | undefined>)[f.flag];
        if (v !== undefined) body[f.key] = number(`--${f.flag.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`, v, { integer: true, min: 0 });
      }
      if (!Object.keys(body).length) throw new CliError('give at least one limit: --instances, --cores, --ram-mb, --floating-ips or --volume-gb', EXIT.usage);
      const project = projectOf(p);
      const r = await client().request('PUT', `/sim/quotas/${enc(project)}`, { body });
      if (o.output) return printQuota(o.output, r.body);
      io.out.write(`sim quota of ${project}: ${Object.entries(r.body.quota as Record<string, number>).map(([k, v]) => `${k}=${v}`).join(', ')}\n`);
    });

  // ---------------------------------------------------------------- hosts
  const hosts = sim.command('hosts').description('simulated hypervisors');
  hosts.command('list', { isDefault: true }).description('capacity, use and maintenance state').addOption(outputOption()).action(async (o) => {
    const r = await client().get('/sim/hosts');
    printList(io.out, fmt(o.output), r.items, HOST_COLUMNS, { nextCursor: r.nextCursor });
  });
  for (const [verb, what] of [['disable', 'into maintenance: no new placements'], ['enable', 'out of maintenance']] as const) {
    hosts.command(verb).description(`take a hypervisor ${what} (admin)`).argument('<name>').action(async (name) => {
      await client().request('POST', `/sim/hosts/${enc(name)}/${verb}`);
      io.out.write(`hypervisor ${name} ${verb}d\n`);
    });
  }
  hosts.command('sync').description('re-read the hypervisors from the inventory (admin)').action(async () => {
    const r = await client().request('POST', '/sim/hosts/sync');
    io.out.write(`hypervisors synced: ${r.body.listed} listed by the inventory, ${r.body.items.length} known\n`);
  });

  // ---------------------------------------------------------------- objects
  sim.command('objects').description('objects in the simulated backends (default: the configured project; -A for all)').addOption(outputOption())
    .option('--kind <kind>', 'e.g. compute/Server').option('--phase <phase>', 'creating, ready, updating, deleting, deleted, failed')
    .option('--deleted', 'include deleted objects').option('--catalogue', 'include the public catalogue (flavors, images)')
    .option('-A, --all-projects', 'ignore the default project').option('--limit <n>', 'page size', '100').option('--cursor <cursor>', 'next page cursor')
    .action(async (o) => {
      const page = await client().get('/sim/objects', {
        kind: o.kind, phase: o.phase, project: o.allProjects ? undefined : cfg().project, limit: o.limit, cursor: o.cursor,
        includeDeleted: o.deleted ? 'true' : undefined, includeCatalogue: o.catalogue ? 'true' : undefined,
      });
      printList(io.out, fmt(o.output), page.items, OBJECT_COLUMNS, { nextCursor: page.nextCursor });
    });
  sim.command('object').description('one object: spec, actual configuration, outputs, operation in flight').argument('<id>').addOption(outputOption()).action(async (id, o) => {
    printObject(io.out, fmt(o.output) === 'table' ? 'yaml' : fmt(o.output), await client().get(`/sim/objects/${enc(id)}`));
  });

  sim.command('drift').description('change an object behind Infraflow\'s back (admin): delete | power on|off | modify --patch <json> | health [--not-ready n|names] [--degraded ops] | load <rps>')
    .argument('<id>').argument('<action>', 'delete, power, modify, health or load').argument('[value]', 'on|off for power, requests per second for load')
    .option('--patch <json>', 'modify: fields of the actual configuration, e.g. \'{"rules":[]}\'')
    .option('--not-ready <n|names>', 'health: how many worker nodes are NotReady, or their names (comma separated)')
    .option('--degraded <operators>', 'health: Degraded operators (comma separated; "" for none)')
    .action(async (id, action, value, o) => {
      const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
      let body: Record<string, unknown>;
      switch (action) {
        case 'delete':
          body = { action: 'delete' };
          break;
        case 'power':
          if (value !== 'on' && value !== 'off') throw new CliError('power: give on or off, e.g. infraflow sim drift <id> power off', EXIT.usage);
          body = { action: 'power', power: value };
          break;
        case 'modify': {
          const raw = o.patch ?? value;
          if (!raw) throw new CliError('modify: give the changed fields with --patch \'{"field": value}\'', EXIT.usage);
          let patch: unknown;
          try {
            patch = JSON.parse(raw);
          } catch {
            throw new CliError(`--patch: not valid JSON: ${raw.slice(0, 80)}`, EXIT.usage);
          }
          if (!patch || typeof patch !== 'object' || Array.isArray(patch)) throw new CliError('--patch: give a JSON object of fields, e.g. \'{"rules":[]}\'', EXIT.usage);
          body = { action: 'modify', patch };
          break;
        }
        case 'health':
        case 'clusterHealth': {
          if (o.notReady === undefined && o.degraded === undefined) throw new CliError('health: give --not-ready <n|names> and/or --degraded <operators>', EXIT.usage);
          body = { action: 'clusterHealth' };
          if (o.notReady !== undefined) body.notReadyNodes = /^\d+$/.test(o.notReady.trim()) ? Number(o.notReady) : list(o.notReady);
          if (o.degraded !== undefined) body.degradedOperators = list(o.degraded);
          break;
        }
        case 'load':
          if (value === undefined) throw new CliError('load: give the requests per second, e.g. infraflow sim drift <id> load 500', EXIT.usage);
          body = { action: 'load', requestsPerSecond: number('load', value, { min: 0 }) };
          break;
        default:
          throw new CliError(`unknown drift action "${action}"; use delete, power, modify, health or load`, EXIT.usage);
      }
      const r = await client().request('POST', `/sim/objects/${enc(id)}/drift`, { body });
      io.out.write(`${r.body.kind} ${r.body.name} (${id}): ${action} applied, phase ${r.body.phase}\n`);
    });

  sim.command('logs').description('log lines of a job or of a workload\'s pods').argument('<id>').option('--pod <name>').option('--tail <n>', 'only the last n lines').addOption(outputOption())
    .action(async (id, o) => {
      const r = await client().get(`/sim/objects/${enc(id)}/logs`, { pod: o.pod, tail: o.tail });
      if (fmt(o.output) !== 'table') return printList(io.out, fmt(o.output), r.items, []);
      for (const l of r.items) io.out.write(`${new Date(l.at).toISOString()}  ${l.source}  ${l.text}\n`);
    });
  sim.command('metrics').description('load metrics of a workload').argument('<id>').addOption(outputOption()).action(async (id, o) => {
    const m = await client().get(`/sim/objects/${enc(id)}/metrics`);
    if (fmt(o.output) !== 'table') return printObject(io.out, fmt(o.output), m);
    io.out.write(`workload  ${m.workload}\nreplicas  ${m.readyReplicas}/${m.replicas} ready\nload      ${m.requestsPerSecond} req/s\ncpu       ${(m.cpuUtilization * 100).toFixed(0)}% of requests\nmemory    ${(m.memoryUtilization * 100).toFixed(0)}% of requests\n\n`);
    printList(io.out, 'table', m.pods, [{ header: 'pod', get: (p) => p.name }, { header: 'node', get: (p) => p.node }, { header: 'phase', get: (p) => p.phase }, { header: 'cpu m', get: (p) => p.cpuMillis }, { header: 'memory mi', get: (p) => p.memoryMiB }]);
  });
  sim.command('route').description('send one request through a load balancer: which member answers').argument('<lb>').option('--port <n>').addOption(outputOption()).action(async (lb, o) => {
    const r = await client().get(`/sim/objects/${enc(lb)}/route`, { port: o.port });
    if (fmt(o.output) !== 'table') return printObject(io.out, fmt(o.output), r);
    if (!r.member) throw new CliError(`${lb}: ${r.message}`, EXIT.failed);
    io.out.write(`${r.member.address}:${r.member.port}\n`);
  });
  sim.command('resolve').description('ask the simulator\'s DNS resolver').argument('<name>').option('-t, --type <type>', 'record type', 'A').addOption(outputOption()).action(async (name, o) => {
    const r = await client().get('/sim/dns/resolve', { name, type: o.type.toUpperCase() });
    if (fmt(o.output) !== 'table') return printObject(io.out, fmt(o.output), r);
    if (!r.answers.length) return void io.out.write(`${name}: ${r.rcode === 'NXDOMAIN' ? 'NXDOMAIN (no such name)' : `no ${r.type} record`}\n`);
    for (const a of r.answers) io.out.write(`${a.name}\t${a.ttl}\tIN\t${a.type}\t${a.value}\n`);
  });
};
