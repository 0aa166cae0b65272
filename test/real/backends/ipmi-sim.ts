import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, requireBinary, startDaemon, suffix, tempDir, type Daemon } from './support.js';

/**
 * OpenIPMI's BMC simulator (`ipmi_sim`) on a random loopback UDP port with
 * one admin user, and a chassis-control program that keeps power and boot
 * device in files and logs every call (what the BMC was asked to do).
 */
export interface IpmiSim {
  address: string; username: string; password: string;
  /** Lines the chassis control received: `set power 1`, `set boot pxe`… */
  log(): string[];
  /** Power as the "hardware" has it (changed behind the BMC client's back with setPower). */
  power(): 'on' | 'off';
  setPower(p: 'on' | 'off'): void;
  stop(): Promise<void>;
}

export async function startIpmiSim(): Promise<IpmiSim> {
  const bin = requireBinary('ipmi_sim', 'openipmi');
  requireBinary('ipmitool', 'ipmitool');
  const dir = tempDir('ipmi');
  const chassis = join(dir.path, 'chassis');
  mkdirSync(chassis);
  mkdirSync(join(dir.path, 'state'));
  writeFileSync(join(chassis, 'power'), '0\n');
  const script = join(dir.path, 'chassis-control');
  writeFileSync(script, [
    '#!/bin/sh',
    `d="${chassis}"`,
    'shift; op=$1; shift',
    'echo "$op $*" >> "$d/log"',
    'case $op in',
    '  get) for p in "$@"; do case $p in power) v=$(cat "$d/power");; boot) v=$(cat "$d/boot" 2>/dev/null || echo default);; *) echo "unknown $p"; exit 1;; esac; echo "$p:$v"; done;;',
    '  set) while [ $# -ge 2 ]; do case $1 in power) echo "$2" > "$d/power";; reset) echo 1 > "$d/power";; boot) echo "$2" > "$d/boot";; esac; shift 2; done;;',
    '  *) exit 1;;',
    'esac',
    '',
  ].join('\n'));
  chmodSync(script, 0o755);
  // ipmi_sim only accepts UDP; a free TCP port number is free enough on loopback for UDP in practice, checked by the first call below
  const port = await freePort();
  const password = `pw${suffix(6)}`;
  writeFileSync(join(dir.path, 'lan.conf'), [
    'name "h19bmc"',
    'set_working_mc 0x20',
    '  startlan 1',
    `    addr 127.0.0.1 ${port}`,
    '    priv_limit admin',
    '    allowed_auths_callback none md2 md5 straight',
    '    allowed_auths_user none md2 md5 straight',
    '    allowed_auths_operator none md2 md5 straight',
    '    allowed_auths_admin none md2 md5 straight',
    `    guid ${suffix(16)}`,
    '  endlan',
    `  chassis_control "${script} 0x20"`,
    '  user 1 true  ""        ""       user     10       none md2 md5 straight',
    `  user 2 true  "infraflow" "${password}" admin    10       none md2 md5 straight`,
    '',
  ].join('\n'));
  writeFileSync(join(dir.path, 'sim.emu'), ['mc_setbmc 0x20', 'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr', 'sel_enable 0x20 1000 0x0a', 'mc_enable 0x20', ''].join('\n'));
  const daemon: Daemon = startDaemon(bin, ['-c', join(dir.path, 'lan.conf'), '-f', join(dir.path, 'sim.emu'), '-s', join(dir.path, 'state'), '-n']);
  const logFile = join(chassis, 'log');
  return {
    address: `127.0.0.1:${port}`, username: 'infraflow', password,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean) : []),
    power: () => (readFileSync(join(chassis, 'power'), 'utf8').trim() === '1' ? 'on' : 'off'),
    setPower: (p) => writeFileSync(join(chassis, 'power'), p === 'on' ? '1\n' : '0\n'),
    stop: async () => { await daemon.stop(); dir.remove(); },
  };
}
