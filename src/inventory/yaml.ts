import { isNode, stringify, type Document, type LineCounter } from 'yaml';
import { parseYamlText, zodError } from '../core/input.js';
import { z } from 'zod';
import { InfraflowError, ValidationError } from '../core/errors.js';
import { withTx } from './tx.js';
import type { Inventory } from './inventory.js';
import { DatacenterSchema, HotPoolPolicySchema, HubSchema, RackSchema, RegisterServerSchema, ServerTypeSchema, SwitchSchema } from './schemas.js';

/**
 * The inventory file: a YAML document listing datacenters (with racks),
 * server types, switches, servers (with BMC and cabling), hubs and hot-pool
 * policies. Import is all or nothing and idempotent (natural keys: names,
 * serials); errors name the path and the line. Export writes the same shape,
 * BMC passwords redacted unless asked for.
 */
export const InventoryDocSchema = z.object({
  apiVersion: z.literal('infraflow.dev/v1').default('infraflow.dev/v1'),
  kind: z.literal('Inventory').default('Inventory'),
  datacenters: z.array(DatacenterSchema.extend({ racks: z.array(RackSchema.omit({ datacenter: true })).default([]) })).default([]),
  serverTypes: z.array(ServerTypeSchema).default([]),
  switches: z.array(SwitchSchema).default([]),
  servers: z.array(RegisterServerSchema).default([]),
  hubs: z.array(HubSchema).default([]),
  hotPools: z.array(HotPoolPolicySchema).default([]),
});
export type InventoryDoc = z.input<typeof InventoryDocSchema>;

export interface ImportSummary { datacenters: number; racks: number; serverTypes: number; switches: number; servers: number; hubs: number; hotPools: number }

function lineOf(doc: Document, lc: LineCounter, path: (string | number)[]): number | undefined {
  for (let n = path.length; n > 0; n--) {
    const node = doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

export async function importInventory(inv: Inventory, text: string, opts: { source?: string } = {}): Promise<ImportSummary> {
  const source = opts.source ?? 'inventory';
  const { doc, lineCounter: lc, value } = parseYamlText(text, { file: source, code: 'inventory.invalid_yaml' });
  const parsed = InventoryDocSchema.safeParse(value ?? {});
  if (!parsed.success) {
    const err = zodError('inventory.invalid_input', parsed.error);
    const issue = parsed.error.issues[0]!;
    const line = lineOf(doc, lc, issue.path.filter((p): p is string | number => typeof p !== 'symbol'));
    throw new ValidationError(err.code, `${err.message}${line ? ` (${source}:${line})` : ''}`, { details: { ...err.details, line } });
  }
  const d = parsed.data;
  const summary: ImportSummary = { datacenters: 0, racks: 0, serverTypes: 0, switches: 0, servers: 0, hubs: 0, hotPools: 0 };
  const at = async <T>(path: (string | number)[], fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof InfraflowError && e.status < 500) {
        const field = typeof e.details?.field === 'string' ? e.details.field : undefined;
        const full = field && !field.startsWith(`${path.join('.')}.`) ? [...path, ...field.split('.')] : field ? field.split('.') : path;
        const line = lineOf(doc, lc, full.map((p) => (/^\d+$/.test(String(p)) ? Number(p) : p)));
        const msg = e.message.replace(/^[^:\s]+:\s*/, '');
        throw new ValidationError(e.code, `${full.join('.')}: ${msg}${line ? ` (${source}:${line})` : ''}`, { details: { ...e.details, field: full.join('.'), line } });
      }
      throw e;
    }
  };
  await withTx(inv.store, async (trx) => {
    for (const [i, dc] of d.datacenters.entries()) {
      await at(['datacenters', i], () => inv.createDatacenter(dc, trx));
      summary.datacenters++;
      for (const [j, r] of dc.racks.entries()) {
        await at(['datacenters', i, 'racks', j], () => inv.createRack({ ...r, datacenter: dc.name }, trx));
        summary.racks++;
      }
    }
    for (const [i, t] of d.serverTypes.entries()) {
      await at(['serverTypes', i], () => inv.createServerType(t, trx));
      summary.serverTypes++;
    }
    for (const [i, s] of d.switches.entries()) {
      await at(['switches', i], () => inv.createSwitch(s, trx));
      summary.switches++;
    }
    await at(['servers'], () => inv.registerServers(d.servers, trx));
    summary.servers += d.servers.length;
    for (const [i, h] of d.hubs.entries()) {
      await at(['hubs', i], () => inv.createHub(h, trx));
      summary.hubs++;
    }
    for (const [i, p] of d.hotPools.entries()) {
      await at(['hotPools', i], () => inv.setHotPoolPolicy(p, trx));
      summary.hotPools++;
    }
  });
  return summary;
}

export async function exportInventory(inv: Inventory, opts: { includeSecrets?: boolean } = {}): Promise<string> {
  const racks = await inv.listRacks();
  const dcs = await inv.listDatacenters();
  const servers = await inv.listServers({ limit: 1_000_000 });
  const out: InventoryDoc = {
    apiVersion: 'infraflow.dev/v1',
    kind: 'Inventory',
    datacenters: dcs.map((dc) => ({
      name: dc.name, region: dc.region, ...(dc.description ? { description: dc.description } : {}), ...(Object.keys(dc.labels).length ? { labels: dc.labels } : {}),
      racks: racks.filter((r) => r.datacenter === dc.name).map((r) => ({ name: r.name, ...(r.row ? { row: r.row } : {}), heightU: r.heightU })),
    })),
    serverTypes: await inv.listServerTypes(),
    switches: (await inv.listSwitches()).map((s) => ({ name: s.name, datacenter: s.datacenter, ...(s.rack ? { rack: s.rack } : {}), model: s.model, ...(s.mgmtAddress ? { mgmtAddress: s.mgmtAddress } : {}), ports: s.ports })),
    servers: [],
    hubs: (await inv.listHubs()).map((h) => ({ name: h.name, region: h.region, ...(h.datacenter ? { datacenter: h.datacenter } : {}), capacity: h.capacity, labels: h.labels })),
    hotPools: await inv.listHotPoolPolicies(),
  };
  for (const s of servers) {
    let bmc: { address: string; username: string; password: string } | undefined;
    if (s.hasBmcCredentials) {
      const c = await inv.getBmcCredentials(s.id);
      if (c) bmc = { address: c.address ?? '', username: c.username, password: opts.includeSecrets ? c.password : '[redacted]' };
    }
    out.servers!.push({
      serial: s.serial, type: s.type, datacenter: s.datacenter, ...(s.rack ? { rack: s.rack } : {}), ...(s.position !== null ? { position: s.position } : {}),
      ...(bmc ? { bmc } : {}), nics: s.nics, labels: s.labels,
      ...(s.state === 'available' || s.state === 'maintenance' || s.state === 'registering' ? { state: s.state } : { state: 'available' as const }),
    });
  }
  return stringify(out, { lineWidth: 0 });
}
