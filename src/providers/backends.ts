import { z } from 'zod';
import { ValidationError } from '../core/errors.js';
import type { Provider } from '../resources/types.js';
import type { ProviderRouting } from '../resources/registry.js';
import { PowerProvider, type BmcCredentialSource } from './bmc/index.js';
import { IpmiDriver } from './ipmi/index.js';
import { KeaProvider } from './kea/index.js';
import { OvsSwitchDriver } from './ovs/index.js';
import { PowerDnsProvider } from './powerdns/index.js';
import { RedfishDriver } from './redfish/index.js';
import { SwitchPortProvider } from './switches/index.js';

/**
 * The real backends an installation can route kinds to (config key
 * `backends`, next to the `providers` routing). Nothing here is built unless
 * configured: the default installation stays simulator-only.
 *
 * Secrets (API key, control-agent password) may be given inline or, better,
 * by naming an environment variable (`apiKeyEnv`, `passwordEnv`). BMC
 * credentials are never configured here: they come from the inventory.
 */
const secret = (name: string) => ({ [name]: z.string().min(1).optional(), [`${name}Env`]: z.string().min(1).optional() });

export const BackendsSchema = z.strictObject({
  powerdns: z.strictObject({
    url: z.string().url(),
    ...secret('apiKey'),
    serverId: z.string().default('localhost'),
    nameservers: z.array(z.string()).default([]),
    timeoutMs: z.number().int().positive().optional(),
  }).optional(),
  kea: z.strictObject({
    url: z.string().url(),
    username: z.string().optional(),
    ...secret('password'),
    persist: z.boolean().default(true),
    timeoutMs: z.number().int().positive().optional(),
  }).optional(),
  ovs: z.strictObject({
    /** Switch name (as in the inventory) → its OVSDB remote. */
    switches: z.record(z.string(), z.strictObject({ db: z.string().min(1), defaultVlan: z.number().int().min(1).max(4094).optional() })),
    /** VLAN ports return to on delete (quarantine VLAN). */
    defaultVlan: z.number().int().min(1).max(4094).default(1),
    vsctl: z.string().optional(),
  }).optional(),
  bmc: z.strictObject({
    ipmi: z.strictObject({ ipmitool: z.string().optional(), interface: z.enum(['lanplus', 'lan']).optional(), cipherSuite: z.number().int().min(0).max(17).optional(), timeoutSeconds: z.number().int().positive().optional(), retries: z.number().int().min(1).optional() }).prefault({}),
    redfish: z.strictObject({ systemId: z.string().optional(), timeoutMs: z.number().int().positive().optional() }).prefault({}),
  }).optional(),
}).prefault({});

export type BackendsConfig = z.infer<typeof BackendsSchema>;

function secretValue(cfg: Record<string, unknown>, name: string, where: string, env: NodeJS.ProcessEnv): string | undefined {
  const inline = cfg[name] as string | undefined;
  const envName = cfg[`${name}Env`] as string | undefined;
  if (envName) {
    const v = env[envName];
    if (!v) throw new ValidationError('config.invalid', `config key backends.${where}.${name}Env: environment variable ${envName} is not set`);
    return v;
  }
  return inline;
}

/** Builds the configured real providers (none when `backends` is empty). */
export function createBackendProviders(cfg: BackendsConfig, deps: { inventory?: BmcCredentialSource; env?: NodeJS.ProcessEnv } = {}): Provider[] {
  const env = deps.env ?? process.env;
  const out: Provider[] = [];
  if (cfg.powerdns) {
    const apiKey = secretValue(cfg.powerdns, 'apiKey', 'powerdns', env);
    if (!apiKey) throw new ValidationError('config.invalid', 'config key backends.powerdns: give apiKey or apiKeyEnv (the PowerDNS api-key)');
    out.push(new PowerDnsProvider({ url: cfg.powerdns.url, apiKey, serverId: cfg.powerdns.serverId, nameservers: cfg.powerdns.nameservers, ...(cfg.powerdns.timeoutMs ? { timeoutMs: cfg.powerdns.timeoutMs } : {}) }));
  }
  if (cfg.kea) {
    const password = secretValue(cfg.kea, 'password', 'kea', env);
    out.push(new KeaProvider({ url: cfg.kea.url, ...(cfg.kea.username ? { username: cfg.kea.username } : {}), ...(password ? { password } : {}), persist: cfg.kea.persist, ...(cfg.kea.timeoutMs ? { timeoutMs: cfg.kea.timeoutMs } : {}) }));
  }
  if (cfg.ovs) {
    const switches = Object.fromEntries(Object.entries(cfg.ovs.switches).map(([name, s]) => [name, new OvsSwitchDriver({ db: s.db, ...(cfg.ovs!.vsctl ? { vsctl: cfg.ovs!.vsctl } : {}) })]));
    const defaultVlans = Object.fromEntries(Object.entries(cfg.ovs.switches).filter(([, s]) => s.defaultVlan).map(([n, s]) => [n, s.defaultVlan!]));
    out.push(new SwitchPortProvider({ switches, defaultVlan: cfg.ovs.defaultVlan, defaultVlans }));
  }
  if (cfg.bmc) {
    if (!deps.inventory) throw new ValidationError('config.invalid', 'config key backends.bmc: the BMC provider needs the inventory (BMC credentials live there)');
    const strip = <T extends Record<string, unknown>>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
    out.push(new PowerProvider({ credentials: deps.inventory, drivers: { ipmi: new IpmiDriver(strip(cfg.bmc.ipmi)), redfish: new RedfishDriver(strip(cfg.bmc.redfish)) } }));
  }
  return out;
}

/** Refuses routing to one of these backends when it is not configured, naming the config key to add. */
export function checkRouting(routing: ProviderRouting, providers: Provider[]): void {
  const keys: Record<string, string> = { powerdns: 'backends.powerdns', kea: 'backends.kea', ovs: 'backends.ovs', bmc: 'backends.bmc' };
  const built = new Set(providers.map((p) => p.name));
  for (const [pattern, name] of Object.entries(routing)) {
    if (keys[name] && !built.has(name)) throw new ValidationError('config.invalid', `config key providers."${pattern}": provider "${name}" is not configured; add ${keys[name]} (see examples/providers/real-network.yaml)`);
  }
}

/** Validates the `backends` config value; a bad one names the key. */
export function parseBackends(raw: unknown): BackendsConfig {
  const r = BackendsSchema.safeParse(raw ?? {});
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ValidationError('config.invalid', `config key backends.${issue.path.join('.') || '(root)'}: ${issue.message}`, { details: { issues: r.error.issues } });
  }
  return r.data;
}
