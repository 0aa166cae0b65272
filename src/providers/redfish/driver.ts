import { BmcError, type BmcDriver, type BmcTarget, type BootDevice, type BootOverride, type PowerAction, type PowerState } from '../bmc/driver.js';

/**
 * Redfish (DMTF DSP0266) as a BMC driver: the first (or configured)
 * ComputerSystem under `/redfish/v1/Systems`, `PowerState`,
 * `Actions/#ComputerSystem.Reset` (ResetType checked against the BMC's
 * `ResetType@Redfish.AllowableValues`), and the boot override through
 * PATCH of `Boot.BootSourceOverrideTarget/Enabled` (with `If-Match` when the
 * BMC sends an ETag). HTTP Basic authentication per request. 401/403 →
 * auth, 503/409 (or a Retry-After) → busy, no answer → unreachable/timeout.
 */
export interface RedfishOptions {
  /** System member id (`/redfish/v1/Systems/<id>`); default the first member. */
  systemId?: string;
  timeoutMs?: number;
  // BMCs with self-signed certificates: trust their CA through NODE_EXTRA_CA_CERTS.
}

const TARGET: Record<BootDevice, string> = { pxe: 'Pxe', disk: 'Hdd', bios: 'BiosSetup', cdrom: 'Cd' };
const FROM_TARGET: Record<string, BootDevice> = { Pxe: 'pxe', Hdd: 'disk', BiosSetup: 'bios', Cd: 'cdrom' };
/** Preferred ResetTypes per action, first one the BMC allows wins. */
const RESET: Record<PowerAction, string[]> = {
  on: ['On'],
  off: ['ForceOff'],
  soft: ['GracefulShutdown'],
  reset: ['ForceRestart', 'GracefulRestart'],
  cycle: ['PowerCycle', 'ForceRestart'],
};

interface RfSystem { '@odata.id': string; PowerState?: string; Boot?: { BootSourceOverrideTarget?: string; BootSourceOverrideEnabled?: string; 'BootSourceOverrideTarget@Redfish.AllowableValues'?: string[] }; Actions?: Record<string, { target: string; 'ResetType@Redfish.AllowableValues'?: string[] }> }

export class RedfishDriver implements BmcDriver {
  readonly protocol = 'redfish' as const;
  private readonly opts: RedfishOptions;
  private systems = new Map<string, string>();
  constructor(opts: RedfishOptions = {}) { this.opts = opts; }

  private base(t: BmcTarget): string {
    const a = t.address.replace(/^redfish\+/, '');
    return (/^https?:\/\//.test(a) ? a : `https://${a}`).replace(/\/+$/, '');
  }

  async request<T>(t: BmcTarget, method: string, path: string, body?: unknown, signal?: AbortSignal, headers: Record<string, string> = {}): Promise<{ status: number; body: T; etag: string | null }> {
    const url = this.base(t) + path;
    const timeoutMs = this.opts.timeoutMs ?? 15_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const sig = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const where = `BMC ${this.base(t)} (Redfish ${method} ${path})`;
    let res: Response;
    try {
      res = await fetch(url, {
        method, signal: sig,
        headers: { accept: 'application/json', authorization: `Basic ${Buffer.from(`${t.username}:${t.password}`).toString('base64')}`, 'OData-Version': '4.0', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (e) {
      if (signal?.aborted) throw new BmcError('timeout', `${where}: cancelled by the caller`, { cause: e });
      if (timeout.aborted) throw new BmcError('timeout', `${where}: no answer within ${timeoutMs} ms`, { cause: e });
      throw new BmcError('unreachable', `${where}: ${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message}`, { cause: e });
    }
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : {}; } catch { /* keep text */ }
    const msg = () => {
      const ext = (parsed as { error?: { message?: string; '@Message.ExtendedInfo'?: { Message?: string }[] } })?.error;
      return ext?.['@Message.ExtendedInfo']?.[0]?.Message ?? ext?.message ?? `HTTP ${res.status}`;
    };
    if (res.status === 401 || res.status === 403) throw new BmcError('auth', `${where}: the BMC refused the username/password stored in the inventory (HTTP ${res.status}); update the server's BMC credentials`, { details: { status: res.status } });
    if (res.status === 503 || res.status === 409 || res.status === 429) throw new BmcError('busy', `${where}: the BMC is busy: ${msg()}`, { details: { status: res.status, retryAfter: res.headers.get('retry-after') } });
    if (res.status === 404 || res.status === 405 || res.status === 501) throw new BmcError('unsupported', `${where}: ${msg()}`, { details: { status: res.status } });
    if (res.status >= 400) throw new BmcError(res.status >= 500 ? 'unreachable' : 'protocol', `${where}: ${msg()}`, { details: { status: res.status } });
    return { status: res.status, body: parsed as T, etag: res.headers.get('etag') };
  }

  /** The ComputerSystem's path, discovered once per BMC. */
  async systemPath(t: BmcTarget, signal?: AbortSignal): Promise<string> {
    const key = this.base(t);
    const known = this.systems.get(key);
    if (known) return known;
    let path: string;
    if (this.opts.systemId) path = `/redfish/v1/Systems/${encodeURIComponent(this.opts.systemId)}`;
    else {
      const col = await this.request<{ Members?: { '@odata.id': string }[] }>(t, 'GET', '/redfish/v1/Systems', undefined, signal);
      const first = col.body.Members?.[0]?.['@odata.id'];
      if (!first) throw new BmcError('unsupported', `BMC ${key}: /redfish/v1/Systems lists no ComputerSystem`);
      path = first;
    }
    this.systems.set(key, path);
    return path;
  }

  private async system(t: BmcTarget, signal?: AbortSignal): Promise<{ sys: RfSystem; etag: string | null; path: string }> {
    const path = await this.systemPath(t, signal);
    const r = await this.request<RfSystem>(t, 'GET', path, undefined, signal);
    return { sys: r.body, etag: r.etag, path };
  }

  async powerState(t: BmcTarget, signal?: AbortSignal): Promise<PowerState> {
    const { sys } = await this.system(t, signal);
    // PoweringOn counts as on, PoweringOff as off: the state it is heading to
    return sys.PowerState === 'On' || sys.PowerState === 'PoweringOn' ? 'on' : 'off';
  }

  async power(t: BmcTarget, action: PowerAction, signal?: AbortSignal): Promise<void> {
    const { sys, path } = await this.system(t, signal);
    const reset = sys.Actions?.['#ComputerSystem.Reset'];
    const target = reset?.target ?? `${path}/Actions/ComputerSystem.Reset`;
    const allowed = reset?.['ResetType@Redfish.AllowableValues'];
    const type = RESET[action].find((x) => !allowed || allowed.includes(x));
    if (!type) throw new BmcError('unsupported', `BMC ${this.base(t)}: ComputerSystem.Reset offers ${allowed!.join(', ')}, none of ${RESET[action].join('/')} for "${action}"`);
    await this.request(t, 'POST', target, { ResetType: type }, signal);
  }

  async setBootDevice(t: BmcTarget, boot: BootOverride, signal?: AbortSignal): Promise<void> {
    const { sys, etag, path } = await this.system(t, signal);
    const allowed = sys.Boot?.['BootSourceOverrideTarget@Redfish.AllowableValues'];
    if (allowed && !allowed.includes(TARGET[boot.device])) throw new BmcError('unsupported', `BMC ${this.base(t)} cannot boot from ${TARGET[boot.device]} (offers ${allowed.join(', ')})`);
    await this.request(t, 'PATCH', path, { Boot: { BootSourceOverrideTarget: TARGET[boot.device], BootSourceOverrideEnabled: boot.persistent ? 'Continuous' : 'Once' } }, signal, etag ? { 'If-Match': etag } : {});
  }

  async bootDevice(t: BmcTarget, signal?: AbortSignal): Promise<BootOverride | undefined> {
    const { sys } = await this.system(t, signal);
    const b = sys.Boot;
    if (!b || !b.BootSourceOverrideEnabled || b.BootSourceOverrideEnabled === 'Disabled') return undefined;
    const device = FROM_TARGET[b.BootSourceOverrideTarget ?? ''];
    return device ? { device, persistent: b.BootSourceOverrideEnabled === 'Continuous' } : undefined;
  }
}
