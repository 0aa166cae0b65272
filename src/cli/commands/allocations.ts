import { yaml } from '../lazy.js';
import { CliError, EXIT } from '../errors.js';
import { printList, printObject, type Column } from '../output.js';
import { watchRun } from '../watch.js';
import type { CommandModule } from './context.js';

/**
 * `infraflow alloc …`: feasibility checks and reservations (all-or-nothing
 * allocation across servers, prefixes, addresses, floating IPs, VLANs and
 * DNS names). A request comes from a YAML/JSON file (`-f`, `-` for stdin),
 * from shorthand flags, or both (merged).
 */

type Request = Record<'servers' | 'prefixes' | 'addresses' | 'floatingIps' | 'vlans' | 'dnsNames', Record<string, unknown>[]>;

const count = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CliError(`${flag}: count "${v}" must be a whole number of at least 1`, EXIT.usage);
  return n;
};

/** Splits `left[=count]`. */
const withCount = (flag: string, v: string): [string, number | undefined] => {
  const i = v.lastIndexOf('=');
  return i < 0 ? [v, undefined] : [v.slice(0, i), count(flag, v.slice(i + 1))];
};

const opt = <T>(k: string, v: T | undefined) => (v === undefined ? {} : { [k]: v });

/** Shorthand flags → request items. */
export function shorthandRequest(o: { servers?: string[]; prefixes?: string[]; addresses?: string[]; floatingIps?: string[]; vlans?: string[]; dnsNames?: string[] }): Request {
  const req: Request = { servers: [], prefixes: [], addresses: [], floatingIps: [], vlans: [], dnsNames: [] };
  for (const s of o.servers ?? []) {
    const [left, n] = withCount('--servers', s);
    const [type, datacenter] = left.split('@');
    if (!type || !datacenter) throw new CliError(`--servers ${s}: use TYPE@DATACENTER[=COUNT], e.g. compute-large@dc1=3`, EXIT.usage);
    req.servers.push({ type, datacenter, ...opt('count', n) });
  }
  for (const s of o.prefixes ?? []) {
    const [left, n] = withCount('--prefixes', s);
    const slash = left.lastIndexOf('/');
    const length = Number(left.slice(slash + 1));
    if (slash <= 0 || !Number.isInteger(length)) throw new CliError(`--prefixes ${s}: use PARENT_PREFIX_ID/LENGTH[=COUNT], e.g. pfx_0abc/24`, EXIT.usage);
    req.prefixes.push({ parentId: left.slice(0, slash), length, ...opt('count', n) });
  }
  for (const s of o.addresses ?? []) {
    const [prefixId, n] = withCount('--addresses', s);
    req.addresses.push({ prefixId, ...opt('count', n) });
  }
  for (const s of o.floatingIps ?? []) {
    const [poolId, n] = withCount('--floating-ips', s);
    req.floatingIps.push({ poolId, ...opt('count', n) });
  }
  for (const s of o.vlans ?? []) {
    const [poolId, n] = withCount('--vlans', s);
    req.vlans.push({ poolId, ...opt('count', n) });
  }
  for (const s of o.dnsNames ?? []) {
    const [name, zone] = s.split('@');
    if (!name || !zone) throw new CliError(`--dns-names ${s}: use NAME@ZONE, e.g. web1@example.com`, EXIT.usage);
    req.dnsNames.push({ name, zone });
  }
  return req;
}

/** `90s`, `15m`, `2h`, `1d` or milliseconds. */
export function parseDuration(flag: string, v: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new CliError(`${flag}: "${v}" is not a duration; use e.g. 90s, 15m, 2h`, EXIT.usage);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms'];
  return Number(m[1]) * unit;
}

const reservationColumns: Column[] = [
  { header: 'id', get: (r) => r.id }, { header: 'status', get: (r) => r.status }, { header: 'holder', get: (r) => r.holder },
  { header: 'expires', get: (r) => (r.status === 'open' ? r.expiresAt : null) }, { header: 'created', get: (r) => r.createdAt }, { header: 'reason', get: (r) => r.reason },
];

/** One line per thing a reservation holds. */
function holdings(r: any): string[] {
  return [
    ...r.servers.map((s: any) => `server   ${s.id} ${s.type} ${s.datacenter}${s.rack ? ` rack ${s.rack}` : ''}`),
    ...r.prefixes.map((p: any) => `prefix   ${p.cidr} (${p.id})`),
    ...r.addresses.map((a: any) => `address  ${a.address} (${a.id})`),
    ...r.floatingIps.map((a: any) => `floating ${a.address} (${a.id})`),
    ...r.vlans.map((v: any) => `vlan     ${v.vlan} (${v.id})`),
    ...r.dnsNames.map((d: any) => `dns      ${d.fqdn}`),
  ];
}

export const registerAllocationCommands: CommandModule = (program, ctx) => {
  const { io } = ctx;
  const alloc = program.command('alloc').alias('allocation').description('feasibility checks and reservations across servers, prefixes, addresses, VLANs and DNS names');

  const requestOptions = <C extends typeof alloc>(c: C) => c
    .option('-f, --file <path>', 'request document (YAML or JSON: servers, prefixes, addresses, floatingIps, vlans, dnsNames; - for stdin)')
    .option('--servers <TYPE@DC[=N]>', 'N servers of a type in a datacenter (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--prefixes <PARENT/LEN[=N]>', 'N child prefixes of a length from a parent prefix id (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--addresses <PREFIX[=N]>', 'N next free addresses of a prefix id (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--floating-ips <POOL[=N]>', 'N floating IPs of a pool (prefix id) (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--vlans <POOL[=N]>', 'N VLAN/VNI ids of a pool (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--dns-names <NAME@ZONE>', 'a DNS name (repeatable)', (v: string, p: string[] = []) => [...p, v]);

  const readRequest = (o: { file?: string } & Parameters<typeof shorthandRequest>[0]): Request => {
    const flags = shorthandRequest(o);
    let doc: Record<string, unknown> = {};
    if (o.file) {
      let parsed: unknown;
      try {
        parsed = yaml().parse(ctx.readDoc(o.file));
      } catch (e) {
        if (e instanceof CliError) throw e;
        throw new CliError(`${o.file}: not valid YAML or JSON (${(e as Error).message.split('\n')[0]})`, EXIT.usage);
      }
      if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed))) throw new CliError(`${o.file}: the request must be a mapping with servers, prefixes, addresses, floatingIps, vlans or dnsNames`, EXIT.usage);
      doc = (parsed ?? {}) as Record<string, unknown>;
    }
    const out: Record<string, unknown> = { ...doc };
    for (const [k, items] of Object.entries(flags)) {
      if (items.length === 0) continue;
      const prev = doc[k];
      out[k] = [...(Array.isArray(prev) ? prev : []), ...items];
    }
    if (Object.keys(out).length === 0) throw new CliError('nothing requested: give -f <file> or at least one of --servers, --prefixes, --addresses, --floating-ips, --vlans, --dns-names', EXIT.usage);
    return out as Request;
  };

  requestOptions(alloc.command('check').description('could this request be met now? (allocates nothing; exit code 1 when it could not)'))
    .addOption(ctx.outputOption())
    .action(async (o) => {
      const r = await ctx.client().request('POST', '/allocations/feasibility', { body: readRequest(o) });
      const f = r.body as { feasible: boolean; shortfalls: { path: string; requested: number; available: number; reason: string }[] };
      const format = ctx.fmt(o.output);
      if (format !== 'table') printObject(io.out, format, f);
      else if (f.feasible) io.out.write('feasible: everything requested is available now\n');
      else io.out.write(`not feasible:\n${f.shortfalls.map((s) => `  ${s.path}: ${s.reason}`).join('\n')}\n`);
      if (!f.feasible) throw new CliError(`not feasible: ${f.shortfalls.length} shortfall(s)`, EXIT.failed);
    });

  requestOptions(alloc.command('reserve').description('reserve everything requested, or nothing; released after --ttl unless committed (admin)'))
    .requiredOption('--holder <name>', 'who holds it (an order, a run, a person)')
    .option('--ttl <duration>', 'time to live, e.g. 90s, 15m, 2h', '15m')
    .option('--key <key>', 'idempotency key: reserving again with it returns the same reservation')
    .option('--wait <duration>', 'if it cannot be met now, wait up to this long (a durable run; servers wake it the moment they are free)')
    .addOption(ctx.outputOption())
    .action(async (o) => {
      const body = { ...readRequest(o), holder: o.holder, ttlMs: parseDuration('--ttl', o.ttl), ...(o.key ? { key: o.key } : {}), ...(o.wait ? { waitTimeoutMs: parseDuration('--wait', o.wait) } : {}) };
      const client = ctx.client();
      let r = (await client.request('POST', '/allocations/reservations', { body })).body;
      if (r.run) {
        io.err.write(`waiting in run ${r.run.id} (infraflow watch ${r.run.id})\n`);
        const end = await watchRun(client, r.run.id, { tty: io.isTty, out: io.err });
        if (end.status !== 'succeeded') throw new CliError(`run ${r.run.id} ${end.status}: ${end.error?.message ?? 'no reservation'}`, EXIT.failed);
        const run = await client.get(`/runs/${encodeURIComponent(r.run.id)}`);
        r = await client.get(`/allocations/reservations/${encodeURIComponent(run.output.reservation)}`);
      }
      const format = ctx.fmt(o.output);
      if (format !== 'table') return printObject(io.out, format, r);
      io.out.write(`reservation ${r.id} ${r.status} for ${r.holder}, expires ${new Date(r.expiresAt).toISOString()}\n${holdings(r).map((l) => `  ${l}\n`).join('')}`);
    });

  alloc.command('list').description('reservations, newest first').addOption(ctx.outputOption()).option('--holder <name>').option('--status <status>', 'open, committed, aborted, expired or released')
    .option('--limit <n>', 'page size', '50').option('--cursor <cursor>')
    .action(async (o) => {
      const page = await ctx.client().get('/allocations/reservations', { holder: o.holder, status: o.status, limit: o.limit, cursor: o.cursor });
      printList(io.out, ctx.fmt(o.output), page.items, reservationColumns, { nextCursor: page.nextCursor });
    });

  alloc.command('get').description('a reservation and everything it holds').argument('<id>').addOption(ctx.outputOption())
    .action(async (id, o) => {
      const r = await ctx.client().get(`/allocations/reservations/${encodeURIComponent(id)}`);
      const format = ctx.fmt(o.output);
      if (format !== 'table') return printObject(io.out, format, r);
      printList(io.out, 'table', [r], reservationColumns);
      const lines = holdings(r);
      io.out.write(lines.length ? `${lines.map((l) => `  ${l}\n`).join('')}` : '  (holds nothing)\n');
    });

  for (const [verb, what] of [['commit', 'make a reservation permanent (admin)'], ['abort', 'release everything an open reservation holds (admin)'], ['release', 'release everything a committed reservation holds (admin)']] as const) {
    const c = alloc.command(verb).description(what).argument('<id>');
    if (verb !== 'commit') c.option('--reason <text>');
    c.action(async (id: string, o: { reason?: string }) => {
      const r = (await ctx.client().request('POST', `/allocations/reservations/${encodeURIComponent(id)}/${verb}`, { ...(verb !== 'commit' ? { body: o.reason ? { reason: o.reason } : {} } : {}) })).body;
      io.out.write(`reservation ${r.id} ${r.status}\n`);
    });
  }
};
