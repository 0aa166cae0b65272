import { isInfraflowError } from '../../core/errors.js';
import { ProviderError } from '../../resources/errors.js';
import { KINDS, type PowerSpec } from '../../resources/kinds.js';
import type { KindHandler, Provider, ReadResult } from '../../resources/types.js';
import { BmcError, bmcFailureOf, type BmcDriver, type BmcTarget, type PowerAction } from './driver.js';

/**
 * `metal/Power` over BMC drivers: a server's power state and next boot
 * device. The server's BMC address and sealed credentials come from the
 * inventory (`Inventory.getBmcCredentials`); the address picks the driver
 * (`redfish+https://…` or `https://…` → Redfish, `ipmi://…` or a bare host →
 * the default, IPMI).
 *
 * create/update set the boot device (when given) then the power state, each
 * only when it differs (a retried call changes nothing). read reports the
 * power state and pending boot override (`observed`, for drift: a server
 * powered off behind Infraflow's back shows `power: off`). delete powers the
 * server off and hands it back; until the next create it reads `absent`.
 */
export interface BmcCredentialSource {
  getBmcCredentials(serverId: string): Promise<{ address: string | null; username: string; password: string } | null>;
}

export interface PowerProviderOptions {
  /** The inventory (or anything that opens BMC secrets by server id). */
  credentials: BmcCredentialSource;
  drivers: { ipmi?: BmcDriver; redfish?: BmcDriver };
  /** Provider name in the registry. Default `bmc`. */
  name?: string;
}

export class PowerProvider implements Provider {
  readonly name: string;
  private readonly opts: PowerProviderOptions;
  private readonly h: KindHandler<PowerSpec>;
  /** Servers handed back by delete in this process (power resources read absent until created again). */
  private released = new Set<string>();

  constructor(opts: PowerProviderOptions) {
    this.opts = opts;
    this.name = opts.name ?? 'bmc';
    this.h = this.handlerFor();
  }

  kinds(): string[] { return ['metal/Power']; }

  handler(kind: string): KindHandler {
    if (kind !== 'metal/Power') throw new ProviderError('InvalidSpec', `the ${this.name} provider implements metal/Power, not ${kind}`);
    return this.h;
  }

  /** The server's BMC target and driver, from the inventory; undefined when the server is unknown. */
  async target(serverId: string): Promise<{ target: BmcTarget; driver: BmcDriver } | undefined> {
    let creds: Awaited<ReturnType<BmcCredentialSource['getBmcCredentials']>>;
    try {
      creds = await this.opts.credentials.getBmcCredentials(serverId);
    } catch (e) {
      if (isInfraflowError(e) && e.status === 404) return undefined;
      throw e;
    }
    if (!creds) return undefined;
    if (!creds.address) throw new ProviderError('InvalidSpec', `server ${serverId} has BMC credentials but no BMC address in the inventory`);
    const redfish = /^(redfish\+)?https?:\/\//.test(creds.address);
    const driver = redfish ? this.opts.drivers.redfish : this.opts.drivers.ipmi;
    if (!driver) throw new ProviderError('InvalidSpec', `server ${serverId}'s BMC ${creds.address} speaks ${redfish ? 'Redfish' : 'IPMI'}, which provider ${this.name} is not configured for`);
    return { target: { address: creds.address, username: creds.username, password: creds.password }, driver };
  }

  private async must(serverId: string) {
    const t = await this.target(serverId);
    if (!t) throw new ProviderError('InvalidSpec', `server ${serverId} has no BMC credentials in the inventory: register its bmc (address, username, password)`);
    return t;
  }

  /** A one-off power action (cycle, reset…) for the bare-metal lifecycle. */
  async powerAction(serverId: string, action: PowerAction, signal?: AbortSignal): Promise<void> {
    const { target, driver } = await this.must(serverId);
    await driver.power(target, action, signal);
  }

  private async apply(spec: PowerSpec, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const { target, driver } = await this.must(spec.server);
    if (spec.bootDevice) {
      const cur = await driver.bootDevice(target, signal);
      if (!cur || cur.device !== spec.bootDevice || cur.persistent !== spec.persistentBoot) await driver.setBootDevice(target, { device: spec.bootDevice, persistent: spec.persistentBoot }, signal);
    }
    const state = await driver.powerState(target, signal);
    if (state !== spec.power) await driver.power(target, spec.power === 'on' ? 'on' : 'off', signal);
    this.released.delete(spec.server);
    return { id: spec.server, server: spec.server, power: spec.power, protocol: driver.protocol };
  }

  private handlerFor(): KindHandler<PowerSpec> {
    const info = KINDS['metal/Power']!;
    return {
      kind: 'metal/Power', schema: info.schema, replaceOnChange: info.replaceOnChange,
      create: async (spec, ctx) => ({ externalId: spec.server, ready: true, outputs: await this.apply(spec, ctx.signal) }),
      read: async (id, ctx): Promise<ReadResult> => {
        if (this.released.has(id)) return { state: 'absent', outputs: {} };
        const t = await this.target(id);
        if (!t) return { state: 'absent', outputs: {} };
        const power = await t.driver.powerState(t.target, ctx.signal);
        const boot = await t.driver.bootDevice(t.target, ctx.signal);
        return {
          state: 'ready',
          outputs: { id, server: id, power, protocol: t.driver.protocol, ...(boot ? { bootDevice: boot.device } : {}) },
          observed: { power, ...(boot ? { bootDevice: boot.device, persistentBoot: boot.persistent } : {}) },
          conditions: [{ type: 'PoweredOn', status: power === 'on' ? 'True' : 'False', reason: power === 'on' ? 'PowerOn' : 'PowerOff', message: `BMC reports power ${power}${boot ? `, next boot ${boot.device}` : ''}` }],
        };
      },
      update: async (id, spec, _previous, ctx) => {
        if (id !== spec.server) throw new ProviderError('InvalidSpec', `metal/Power: the server cannot change in place (${id}); replace the resource`);
        return { ready: true, outputs: await this.apply(spec, ctx.signal) };
      },
      delete: async (id, ctx) => {
        const t = await this.target(id);
        if (t && !this.released.has(id)) {
          if ((await t.driver.powerState(t.target, ctx.signal)) === 'on') await t.driver.power(t.target, 'off', ctx.signal);
        }
        this.released.add(id);
        return { done: true };
      },
    };
  }
}

/**
 * The bare-metal lifecycle's handling of a BMC call: retry what may clear by
 * itself (unreachable, timeout, busy) with backoff, and when the call still
 * fails — or fails in a way retrying cannot fix (wrong credentials,
 * unsupported) — record a provisioning failure on the server, which the
 * inventory turns into `quarantined` after `quarantineAfter` failures.
 */
export async function withBmcRetry<T>(
  serverId: string,
  fn: () => Promise<T>,
  opts: { attempts?: number; backoffMs?: number; inventory?: { recordProvisioningFailure(id: string, reason: string, actor?: string): Promise<unknown> }; sleep?: (ms: number) => Promise<void> } = {},
): Promise<T> {
  const attempts = opts.attempts ?? 3;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      if (!(isInfraflowError(e) && e.retryable)) break;
      if (i < attempts - 1) await sleep((opts.backoffMs ?? 500) * 2 ** i);
    }
  }
  if (opts.inventory) {
    const failure = bmcFailureOf(last) ?? 'protocol';
    await opts.inventory.recordProvisioningFailure(serverId, `bmc ${failure}: ${last instanceof Error ? last.message : String(last)}`, 'bmc');
  }
  throw last instanceof Error ? last : new BmcError('protocol', String(last));
}
