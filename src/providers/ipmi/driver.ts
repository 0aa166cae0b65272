import { execFile } from 'node:child_process';
import { BmcError, type BmcDriver, type BmcFailure, type BmcTarget, type BootDevice, type BootOverride, type PowerAction, type PowerState } from '../bmc/driver.js';

/**
 * IPMI over LAN through `ipmitool` (Debian `ipmitool`). The password travels
 * in the child's environment (`-E`, IPMI_PASSWORD), never on its command
 * line, so `ps` does not show it. ipmitool's own messages are classified
 * into BmcFailure (`RAKP 2 HMAC is invalid` → auth, no answer → unreachable,
 * completion code 0xC0 → busy…).
 */
export interface IpmiOptions {
  /** ipmitool binary. Default `ipmitool`. */
  ipmitool?: string;
  /** `lanplus` (IPMI 2.0, default) or `lan` (1.5). */
  interface?: 'lanplus' | 'lan';
  /** RMCP+ cipher suite (`-C`); default 3 (HMAC-SHA1/AES-128), which every IPMI 2.0 BMC offers. */
  cipherSuite?: number;
  /** Seconds per try (`-N`) and tries (`-R`). Default 2 and 2. */
  timeoutSeconds?: number;
  retries?: number;
}

const BOOT: Record<BootDevice, string> = { pxe: 'pxe', disk: 'disk', bios: 'bios', cdrom: 'cdrom' };

/** Classifies ipmitool's stderr. */
export function classifyIpmitool(stderr: string): BmcFailure {
  if (/RAKP 2 HMAC is invalid|unauthorized name|invalid user ?name|password|Activate Session command failed|Invalid user|insufficient privilege|authentication type/i.test(stderr)) return 'auth';
  if (/node busy|busy/i.test(stderr)) return 'busy';
  if (/Get Auth Capabilities error|Channel Authentication Capabilities|Cipher Suites|No response|Unable to establish|Address lookup|connection refused|unreachable/i.test(stderr)) return 'unreachable';
  if (/invalid command|not supported|Invalid data field|parameter not supported/i.test(stderr)) return 'unsupported';
  return 'protocol';
}

export class IpmiDriver implements BmcDriver {
  readonly protocol = 'ipmi' as const;
  private readonly opts: IpmiOptions;
  constructor(opts: IpmiOptions = {}) { this.opts = opts; }

  /** Runs one ipmitool command against the target. */
  run(t: BmcTarget, args: string[], signal?: AbortSignal): Promise<string> {
    const [host, port] = splitHostPort(t.address);
    const tries = this.opts.retries ?? 2;
    const per = this.opts.timeoutSeconds ?? 2;
    const argv = ['-I', this.opts.interface ?? 'lanplus', ...(this.opts.interface === 'lan' ? [] : ['-C', String(this.opts.cipherSuite ?? 3)]), '-H', host, ...(port ? ['-p', port] : []), '-U', t.username, '-E', '-N', String(per), '-R', String(tries), '-v', ...args];
    const hardLimit = (per * tries + 10) * 1000;
    return new Promise((resolve, reject) => {
      execFile(this.opts.ipmitool ?? 'ipmitool', argv, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', IPMI_PASSWORD: t.password }, timeout: hardLimit, signal }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const where = `BMC ${t.address} (ipmitool ${args.join(' ')})`;
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new BmcError('unsupported', 'ipmitool is not installed here: install the Debian package ipmitool'));
        if (signal?.aborted) return reject(new BmcError('timeout', `${where}: cancelled by the caller`));
        if ((err as { killed?: boolean }).killed) return reject(new BmcError('timeout', `${where}: no answer within ${hardLimit} ms`));
        const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/^Loading IANA|^Running Get|^>>|^<</.test(l));
        const failure = classifyIpmitool(stderr);
        const hint = failure === 'auth' ? '; the BMC refused the username/password stored in the inventory — update the server\'s BMC credentials' : '';
        reject(new BmcError(failure, `${where}: ${lines.slice(-2).join(' ')}${hint}`.replaceAll(t.password, '[redacted]')));
      });
    });
  }

  async powerState(t: BmcTarget, signal?: AbortSignal): Promise<PowerState> {
    const out = await this.run(t, ['chassis', 'power', 'status'], signal);
    const m = /Chassis Power is (on|off)/i.exec(out);
    if (!m) throw new BmcError('protocol', `BMC ${t.address}: unexpected power status answer "${out.trim().slice(0, 100)}"`);
    return m[1]!.toLowerCase() as PowerState;
  }

  async power(t: BmcTarget, action: PowerAction, signal?: AbortSignal): Promise<void> {
    await this.run(t, ['chassis', 'power', action], signal);
  }

  async setBootDevice(t: BmcTarget, boot: BootOverride, signal?: AbortSignal): Promise<void> {
    await this.run(t, ['chassis', 'bootdev', BOOT[boot.device], ...(boot.persistent ? ['options=persistent'] : [])], signal);
  }

  async bootDevice(t: BmcTarget, signal?: AbortSignal): Promise<BootOverride | undefined> {
    const out = await this.run(t, ['chassis', 'bootparam', 'get', '5'], signal);
    const sel = /Boot Device Selector : (.*)/.exec(out)?.[1] ?? '';
    const device: BootDevice | undefined = /PXE/i.test(sel) ? 'pxe' : /Hard-Drive|Hard Drive|disk/i.test(sel) ? 'disk' : /BIOS/i.test(sel) ? 'bios' : /CD|DVD/i.test(sel) ? 'cdrom' : undefined;
    if (!device) return undefined;
    return { device, persistent: /all future boots/i.test(out) };
  }
}

function splitHostPort(address: string): [string, string | undefined] {
  const a = address.replace(/^ipmi:\/\//, '');
  const m = /^\[(.+)\]:(\d+)$/.exec(a) ?? /^([^:]+):(\d+)$/.exec(a);
  return m ? [m[1]!, m[2]] : [a, undefined];
}
