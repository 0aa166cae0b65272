import { createHash, randomBytes } from 'node:crypto';
import { seedFrom } from '../../core/rng.js';
import { ProviderError } from '../../resources/errors.js';
import { cpuMillis, memoryMiB } from '../../resources/kinds.js';
import { DEFAULT_OS_TEMPLATES } from './catalogue.js';
import type { Behaviour, BehaviourResult, SimObject, SimTx, View, ViewContext } from './model.js';
import { contains, formatCidr, formatIp, hostRange, macFrom, overlaps, parseCidr, parseIp, size } from './net.js';

/**
 * How each kind behaves in the simulated datacenter: what a create takes
 * (hypervisor capacity, addresses, VLANs, servers), what an update may
 * change in place, what a delete frees, and what a read shows (health,
 * pods, members) at the time of the read.
 */

const invalid = (msg: string) => new ProviderError('InvalidSpec', msg);

// ---- addresses ---------------------------------------------------------------

/** Takes an address in a subnet (its DHCP), or the fixed one asked for. */
export async function allocateIp(tx: SimTx, subnet: SimObject, owner: string, fixedIp?: string): Promise<string> {
  const cidr = parseCidr(subnet.outputs.cidr as string);
  const pool = `ip:${subnet.id}`;
  if (fixedIp) {
    const ip = parseIp(fixedIp);
    if (ip.family !== cidr.family || !contains(cidr, ip.value)) throw invalid(`fixed IP ${fixedIp} is not inside subnet ${subnet.name} (${subnet.outputs.cidr})`);
    const text = formatIp(ip.family, ip.value);
    await tx.allocateValue(pool, text, owner, `address ${text} in subnet ${subnet.name}`);
    return text;
  }
  const [lo, hi] = hostRange(cidr);
  const pools = (subnet.spec.allocationPools as { start: string; end: string }[] | undefined) ?? [];
  const ranges = pools.length ? pools.map((p) => [parseIp(p.start).value, parseIp(p.end).value] as const) : [[lo, hi] as const];
  return tx.allocate(pool, owner, (taken) => {
    for (const [a, b] of ranges) {
      let n = 0;
      for (let v = a; v <= b && n < 200_000; v++, n++) {
        const t = formatIp(cidr.family, v);
        if (!taken.has(t)) return t;
      }
    }
    return undefined;
  }, `an address in subnet ${subnet.name} (${subnet.outputs.cidr}): IpAddressGenerationFailure, the subnet is full`);
}

interface NicOut { subnet: string; network: string; ip: string; mac: string; port?: string }

async function attachNics(tx: SimTx, obj: SimObject, nets: { subnet?: string; port?: string; network?: string; fixedIp?: string }[]): Promise<NicOut[]> {
  const out: NicOut[] = [];
  for (const [i, n] of nets.entries()) {
    if (n.port) {
      const port = await tx.must('network/Port', n.port, obj.project, `networks[${i}].port`);
      if (port.state.boundTo && port.state.boundTo !== obj.id) throw new ProviderError('Conflict', `port ${port.name} is already bound to ${port.state.boundTo}`);
      port.state.boundTo = obj.id;
      port.outputs.boundTo = obj.id;
      await tx.save(port);
      out.push({ subnet: port.outputs.subnet, network: port.outputs.network, ip: port.outputs.ip, mac: port.outputs.mac, port: port.id });
      continue;
    }
    let subnet: SimObject | undefined;
    if (n.subnet) subnet = await tx.must('network/Subnet', n.subnet, obj.project, `networks[${i}].subnet`);
    else if (n.network) {
      const net = await tx.must('network/Network', n.network, obj.project, `networks[${i}].network`);
      subnet = (await tx.listLive('network/Subnet')).find((s) => s.outputs.network === net.id);
      if (!subnet) throw invalid(`network ${net.name} has no subnet to take an address from: create a network/Subnet on it first`);
    } else throw invalid(`networks[${i}] needs a subnet, a network or a port`);
    const ip = await allocateIp(tx, subnet, `${obj.id}/nic${i}`, n.fixedIp);
    out.push({ subnet: subnet.id, network: subnet.outputs.network, ip, mac: macFrom(`${obj.id}/nic${i}`) });
  }
  return out;
}

// ---- progress ------------------------------------------------------------------

function fingerprint(publicKey: string): string {
  const body = publicKey.split(' ')[1] ?? publicKey;
  return createHash('md5').update(Buffer.from(body, 'base64')).digest('hex').replace(/(..)(?!$)/g, '$1:');
}

async function flavorOf(tx: SimTx, ref: string, project: string, field: string): Promise<SimObject> {
  const f = await tx.find('compute/Flavor', ref, project);
  if (!f) {
    const names = (await tx.listLive('compute/Flavor')).filter((x) => x.project === '*' || x.project === project).map((x) => x.name).slice(0, 12);
    throw invalid(`${field}: flavor "${ref}" does not exist; available flavors include ${names.join(', ')}`);
  }
  return f;
}

// ---- kinds ---------------------------------------------------------------------

const Flavor: Behaviour = {
  prefix: 'flv',
  async create(_tx, o) {
    return { outputs: { id: o.id, name: o.spec.name, vcpus: o.spec.vcpus, ramMb: o.spec.ramMb, diskGb: o.spec.diskGb, extraSpecs: o.spec.extraSpecs } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, extraSpecs: next.extraSpecs } };
  },
};

const Image: Behaviour = {
  prefix: 'img',
  stages: ['Queued', 'Uploading', 'Importing'],
  async create(_tx, o) {
    return { outputs: { id: o.id, name: o.spec.name, status: 'queued', properties: o.spec.properties, minDiskGb: o.spec.minDiskGb, minRamMb: o.spec.minRamMb, diskFormat: o.spec.diskFormat } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, name: next.name, properties: next.properties, minDiskGb: next.minDiskGb, minRamMb: next.minRamMb } };
  },
  async complete(_tx, o) {
    o.outputs.status = 'active';
  },
};

const Keypair: Behaviour = {
  prefix: 'kp',
  async create(_tx, o) {
    return { outputs: { id: o.id, name: o.spec.name, fingerprint: fingerprint(o.spec.publicKey) } };
  },
};

const Server: Behaviour = {
  prefix: 'vm',
  stages: ['Scheduling', 'Networking', 'BlockDeviceMapping', 'Spawning', 'Booting'],
  async create(tx, o) {
    const s = o.spec;
    const flavor = await flavorOf(tx, s.flavor, o.project, 'flavor');
    let image: SimObject | undefined;
    if (s.image) {
      image = await tx.find('compute/Image', s.image, o.project);
      if (!image) throw invalid(`image "${s.image}" does not exist; available images: ${(await tx.listLive('compute/Image')).filter((x) => x.project === '*' || x.project === o.project).map((x) => x.name).join(', ')}`);
      const disk = s.bootVolume?.sizeGb ?? flavor.outputs.diskGb;
      if (disk && image.outputs.minDiskGb > disk) throw invalid(`image ${image.name} needs a ${image.outputs.minDiskGb} GB disk but the server gets ${disk} GB: pick a bigger flavor or bootVolume.sizeGb`);
      if (image.outputs.minRamMb > flavor.outputs.ramMb) throw invalid(`image ${image.name} needs ${image.outputs.minRamMb} MB RAM but flavor ${flavor.name} has ${flavor.outputs.ramMb} MB`);
    }
    if (!flavor.outputs.diskGb && !s.bootVolume) throw invalid(`flavor ${flavor.name} has no root disk: give bootVolume.sizeGb (boot from volume)`);
    await checkComputeQuota(tx, o.project, o.id, flavor.outputs.vcpus, flavor.outputs.ramMb, 1);
    for (const [i, sg] of (s.securityGroups as string[]).entries()) await tx.must('network/SecurityGroup', sg, o.project, `securityGroups[${i}]`);
    if (s.keypair) await tx.must('compute/Keypair', s.keypair, o.project, 'keypair');
    let bootVolume: string | undefined;
    if (s.bootVolume?.volume) {
      const vol = await tx.must('storage/Volume', s.bootVolume.volume, o.project, 'bootVolume.volume');
      if (vol.state.attachedTo && vol.state.attachedTo !== o.id) throw new ProviderError('Conflict', `volume ${vol.name} is in use by ${vol.state.attachedTo}`);
      vol.state.attachedTo = o.id;
      vol.outputs = { ...vol.outputs, attachedTo: o.id, status: 'in-use', device: '/dev/vda' };
      await tx.save(vol);
      bootVolume = vol.id;
    }
    const host = await tx.place(o.id, flavor.outputs.vcpus, flavor.outputs.ramMb, s.availabilityZone);
    const nics = await attachNics(tx, o, s.networks);
    return {
      host,
      state: { vcpus: flavor.outputs.vcpus, ramMb: flavor.outputs.ramMb, bootVolume },
      outputs: { id: o.id, name: o.name, status: 'BUILD', powerState: 'NOSTATE', host, flavor: flavor.name, image: image?.name ?? null, addresses: nics, accessIPv4: nics.find((n) => !n.ip.includes(':'))?.ip ?? null, ip: nics[0]?.ip ?? null },
    };
  },
  async update(tx, o, next, prev) {
    const out = { ...o.outputs };
    const state = { ...o.state };
    if (next.flavor !== prev.flavor) {
      const flavor = await flavorOf(tx, next.flavor, o.project, 'flavor');
      await checkComputeQuota(tx, o.project, o.id, flavor.outputs.vcpus, flavor.outputs.ramMb, 0);
      const host = await reserveResize(tx, o, flavor.outputs.vcpus, flavor.outputs.ramMb);
      out.host = host;
      out.flavor = flavor.name;
      state.vcpus = flavor.outputs.vcpus;
      state.ramMb = flavor.outputs.ramMb;
      out.status = 'RESIZE';
    }
    for (const [i, sg] of (next.securityGroups as string[]).entries()) await tx.must('network/SecurityGroup', sg, o.project, `securityGroups[${i}]`);
    return { outputs: out, state, host: out.host };
  },
  async complete(_tx, o) {
    o.outputs.status = o.actual.power === 'off' ? 'SHUTOFF' : 'ACTIVE';
    o.outputs.powerState = o.actual.power === 'off' ? 'SHUTDOWN' : 'RUNNING';
  },
  async release(tx, o) {
    const vols = (await tx.listLive('storage/Volume')).filter((v) => v.state.attachedTo === o.id);
    for (const v of vols) {
      v.state.attachedTo = null;
      v.outputs = { ...v.outputs, attachedTo: null, status: 'available', device: null };
      await tx.save(v);
    }
    const ports = (await tx.listLive('network/Port')).filter((p) => p.state.boundTo === o.id);
    for (const p of ports) {
      p.state.boundTo = null;
      p.outputs = { ...p.outputs, boundTo: null };
      await tx.save(p);
    }
  },
  async view(_ctx, o): Promise<View> {
    if (o.phase !== 'ready') return {};
    const off = o.actual.power === 'off';
    return { outputs: { status: off ? 'SHUTOFF' : 'ACTIVE', powerState: off ? 'SHUTDOWN' : 'RUNNING' }, conditions: [{ type: 'PoweredOn', status: off ? 'False' : 'True', reason: off ? 'Shutoff' : 'Running', message: off ? 'the server is powered off' : 'the server is running' }] };
  },
};

/** OpenStack-style quota check: instances, cores and RAM of the project's live servers (excluding `self`). */
async function checkComputeQuota(tx: SimTx, project: string, self: string, vcpus: number, ramMb: number, instances: number): Promise<void> {
  const q = await tx.quota(project);
  const live = (await tx.listLive('compute/Server')).filter((s) => s.project === project && s.id !== self);
  const used = { instances: live.length, cores: live.reduce((a, s) => a + Number(s.state.vcpus ?? 0), 0), ramMb: live.reduce((a, s) => a + Number(s.state.ramMb ?? 0), 0) };
  const over = ([['instances', instances, q.instances], ['cores', vcpus, q.cores], ['ramMb', ramMb, q.ramMb]] as const).find(([k, want, limit]) => used[k] + want > limit);
  if (over) {
    const [k, want, limit] = over;
    throw new ProviderError('QuotaExceeded', `Quota exceeded for ${k}: requested ${want}, but already used ${used[k]} of ${limit} ${k} in project ${project}; delete resources or raise the quota`, { details: { resource: k, requested: want, used: used[k], limit } });
  }
}

async function reserveResize(tx: SimTx, o: SimObject, vcpus: number, ramMb: number): Promise<string> {
  // Resize: give back the old reservation, take a new one (possibly on another host).
  const old = await tx.trx.selectFrom('sim_placements').selectAll().where('owner', '=', o.id).execute();
  for (const p of old) {
    await tx.trx.updateTable('sim_hosts').set((eb) => ({ used_vcpus: eb('used_vcpus', '-', p.vcpus), used_ram_mb: eb('used_ram_mb', '-', p.ram_mb) })).where('name', '=', p.host).execute();
  }
  await tx.trx.deleteFrom('sim_placements').where('owner', '=', o.id).execute();
  return tx.place(o.id, vcpus, ramMb, o.spec.availabilityZone);
}

async function checkVolumeQuota(tx: SimTx, o: SimObject, sizeGb: number): Promise<void> {
  const q = await tx.quota(o.project);
  const used = (await tx.listLive('storage/Volume')).filter((v) => v.project === o.project && v.id !== o.id).reduce((a, v) => a + Number(v.spec.sizeGb), 0);
  if (used + sizeGb > q.volumeGb) throw new ProviderError('QuotaExceeded', `Quota exceeded for volumeGb: requested ${sizeGb} GB, but already used ${used} of ${q.volumeGb} GB in project ${o.project}`, { details: { resource: 'volumeGb', requested: sizeGb, used, limit: q.volumeGb } });
}

const Volume: Behaviour = {
  prefix: 'vol',
  stages: ['Creating', 'Downloading'],
  async create(tx, o) {
    if (o.spec.image && !(await tx.find('compute/Image', o.spec.image, o.project))) throw invalid(`image "${o.spec.image}" does not exist`);
    await checkVolumeQuota(tx, o, o.spec.sizeGb);
    const out: Record<string, unknown> = { id: o.id, sizeGb: o.spec.sizeGb, type: o.spec.type, status: 'creating', attachedTo: null, device: null, bootable: Boolean(o.spec.image) || o.spec.bootable };
    const state: Record<string, unknown> = { attachedTo: null };
    if (o.spec.attachTo) {
      const srv = await tx.must('compute/Server', o.spec.attachTo, o.project, 'attachTo');
      state.attachedTo = srv.id;
      Object.assign(out, { attachedTo: srv.id, device: '/dev/vdb' });
    }
    return { outputs: out, state };
  },
  async update(tx, o, next, prev) {
    if (next.sizeGb < prev.sizeGb) throw invalid(`volume ${o.name} cannot shrink from ${prev.sizeGb} GB to ${next.sizeGb} GB: volumes only grow in place (replace it to shrink)`);
    await checkVolumeQuota(tx, o, next.sizeGb);
    const out = { ...o.outputs, sizeGb: next.sizeGb, status: 'extending' };
    const state = { ...o.state };
    if ((next.attachTo ?? null) !== (prev.attachTo ?? null)) {
      if (next.attachTo) {
        const srv = await tx.must('compute/Server', next.attachTo, o.project, 'attachTo');
        state.attachedTo = srv.id;
        Object.assign(out, { attachedTo: srv.id, device: '/dev/vdb', status: 'attaching' });
      } else {
        state.attachedTo = null;
        Object.assign(out, { attachedTo: null, device: null, status: 'detaching' });
      }
    }
    return { outputs: out, state };
  },
  async complete(_tx, o) {
    o.outputs.status = o.state.attachedTo ? 'in-use' : 'available';
  },
  async checkDelete(_tx, o) {
    if (o.state.attachedTo) throw new ProviderError('Conflict', `volume ${o.name} is attached to ${o.state.attachedTo}: detach it (unset attachTo) or delete the server first`, { retryable: true });
  },
};

const Network: Behaviour = {
  prefix: 'net',
  async create(tx, o) {
    let vlan: number;
    let ext: { vlan: number; ref: string } | undefined;
    let vlanRef: string | null = null;
    const poolName = o.spec.vlanPool ?? 'default';
    if (o.spec.vlan) {
      await tx.allocateValue(`vlan:${poolName}`, String(o.spec.vlan), o.id, `VLAN ${o.spec.vlan}`);
      vlan = o.spec.vlan;
    } else if (tx.backends.allocateVlan && (ext = await tx.backends.allocateVlan({ ...(o.spec.vlanPool ? { pool: o.spec.vlanPool } : {}), key: `${tx.key}:vlan`, holder: `sim:${o.id}` }, tx.trx))) {
      vlan = ext.vlan;
      vlanRef = ext.ref;
    } else {
      const [lo, hi] = tx.config.vlanRange;
      vlan = Number(await tx.allocate(`vlan:${poolName}`, o.id, (taken) => {
        for (let v = lo; v <= hi; v++) if (!taken.has(String(v))) return String(v);
        return undefined;
      }, `a VLAN from pool ${poolName} (${lo}-${hi})`));
    }
    return { outputs: { id: o.id, name: o.name, vlan, mtu: o.spec.mtu, external: o.spec.external, status: 'ACTIVE' }, state: { vlan, vlanPool: poolName, vlanRef } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, mtu: next.mtu, status: next.adminStateUp ? 'ACTIVE' : 'DOWN' } };
  },
  async checkDelete(tx, o) {
    const subs = (await tx.listLive('network/Subnet')).filter((s) => s.outputs.network === o.id);
    if (subs.length) throw new ProviderError('Conflict', `network ${o.name} still has subnets (${subs.map((s) => s.name).join(', ')}): delete them first`, { retryable: true });
  },
  async release(tx, o) {
    const release = tx.backends.releaseVlan;
    if (release && o.state.vlanRef) tx.afterCommit(() => release({ ref: o.state.vlanRef, holder: `sim:${o.id}` }));
  },
};

const Subnet: Behaviour = {
  prefix: 'snet',
  async create(tx, o) {
    const net = await tx.must('network/Network', o.spec.network, o.project, 'network');
    let cidrText: string;
    let ext: { cidr: string; ref: string } | undefined;
    if (o.spec.cidr) cidrText = formatCidr(parseCidr(o.spec.cidr));
    else if (tx.backends.allocatePrefix && (ext = await tx.backends.allocatePrefix({ ...(o.spec.pool ? { pool: o.spec.pool } : {}), length: o.spec.prefixLength, family: o.spec.ipVersion, key: `${tx.key}:prefix`, holder: `sim:${o.id}` }, tx.trx))) cidrText = ext.cidr;
    else {
      const pool = parseCidr(o.spec.ipVersion === 6 ? 'fd00::/48' : tx.config.subnetPool);
      const len = o.spec.prefixLength as number;
      if (len < pool.length || len > pool.bits) throw invalid(`prefixLength /${len} does not fit in the subnet pool ${formatCidr(pool)}`);
      cidrText = await tx.allocate(`prefix:${formatCidr(pool)}`, o.id, (taken) => {
        const takenC = [...taken].map(parseCidr);
        const step = 1n << BigInt(pool.bits - len);
        for (let n = pool.network, i = 0; n < pool.network + size(pool) && i < 1_000_000; n += step, i++) {
          const c = { family: pool.family, network: n, length: len, bits: pool.bits };
          if (!takenC.some((t) => overlaps(t, c))) return formatCidr(c);
        }
        return undefined;
      }, `a /${len} prefix from the subnet pool ${formatCidr(pool)}`);
    }
    const cidr = parseCidr(cidrText);
    // Two live subnets on one network must not overlap.
    for (const s of (await tx.listLive('network/Subnet')).filter((x) => x.outputs.network === net.id && x.id !== o.id)) {
      if (overlaps(parseCidr(s.outputs.cidr), cidr)) throw new ProviderError('Conflict', `subnet ${cidrText} overlaps ${s.name} (${s.outputs.cidr}) on network ${net.name}`);
    }
    const [first] = hostRange(cidr);
    const gateway = o.spec.gateway === null ? null : o.spec.gateway ?? formatIp(cidr.family, first);
    const out = { id: o.id, name: o.name, cidr: cidrText, network: net.id, vlan: net.outputs.vlan, gateway, ipVersion: cidr.family, dhcp: o.spec.dhcp, dnsServers: o.spec.dnsServers };
    if (gateway) await tx.allocateValue(`ip:${o.id}`, gateway, `${o.id}/gateway`, `gateway ${gateway}`);
    return { outputs: out, state: { prefixRef: ext?.ref ?? null } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, dhcp: next.dhcp, dnsServers: next.dnsServers, ...(next.gateway !== undefined ? { gateway: next.gateway } : {}) } };
  },
  async checkDelete(tx, o) {
    const used = await tx.trx.selectFrom('sim_allocations').select(['owner', 'value']).where('pool', '=', `ip:${o.id}`).where('owner', '!=', `${o.id}/gateway`).execute();
    if (used.length) throw new ProviderError('Conflict', `subnet ${o.name} still has ${used.length} address(es) in use (${used.slice(0, 3).map((u) => `${u.value} by ${u.owner.split('/')[0]}`).join(', ')}): delete those servers and ports first`, { retryable: true });
  },
  async release(tx, o) {
    await tx.trx.deleteFrom('sim_allocations').where('pool', '=', `ip:${o.id}`).execute();
    const release = tx.backends.releasePrefix;
    if (release && o.state.prefixRef) tx.afterCommit(() => release({ ref: o.state.prefixRef, holder: `sim:${o.id}` }));
  },
};

async function floatingIp(tx: SimTx, pool: string, owner: string): Promise<string> {
  if (tx.backends.allocateFloatingIp) {
    const ext = await tx.backends.allocateFloatingIp({ pool, key: `${tx.key}:fip:${owner}`, holder: `sim:${owner}` }, tx.trx);
    if (ext) {
      // Remember the external allocation under the owner so a release finds it.
      await tx.allocateValue(`fip-ext:${pool}`, ext.ref, owner, `floating IP ${ext.address}`);
      return ext.address;
    }
  }
  const cidrText = tx.config.floatingPools[pool];
  if (!cidrText) throw invalid(`floating pool "${pool}" does not exist; pools: ${Object.keys(tx.config.floatingPools).join(', ')}`);
  const cidr = parseCidr(cidrText);
  const [lo, hi] = hostRange(cidr);
  return tx.allocate(`fip:${pool}`, owner, (taken) => {
    for (let v = lo + 1n; v <= hi; v++) { // lo is the upstream gateway
      const t = formatIp(cidr.family, v);
      if (!taken.has(t)) return t;
    }
    return undefined;
  }, `a floating IP from pool ${pool} (${cidrText})`);
}

const Router: Behaviour = {
  prefix: 'rtr',
  async create(tx, o) {
    const ifaces = [];
    for (const [i, s] of (o.spec.interfaces as string[]).entries()) {
      const sub = await tx.must('network/Subnet', s, o.project, `interfaces[${i}]`);
      ifaces.push({ subnet: sub.id, ip: sub.outputs.gateway });
    }
    let externalIp: string | null = null;
    if (o.spec.externalGateway) {
      const ext = await tx.must('network/Network', o.spec.externalGateway, o.project, 'externalGateway');
      if (!ext.outputs.external) throw invalid(`network ${ext.name} is not external: set external: true on it to use it as a gateway`);
      externalIp = await floatingIp(tx, 'public', `${o.id}/snat`);
    }
    return { outputs: { id: o.id, name: o.name, externalIp, interfaces: ifaces, status: 'ACTIVE' } };
  },
  async update(tx, o, next) {
    const ifaces = [];
    for (const [i, s] of (next.interfaces as string[]).entries()) {
      const sub = await tx.must('network/Subnet', s, o.project, `interfaces[${i}]`);
      ifaces.push({ subnet: sub.id, ip: sub.outputs.gateway });
    }
    let externalIp = o.outputs.externalIp as string | null;
    if (next.externalGateway && !externalIp) externalIp = await floatingIp(tx, 'public', `${o.id}/snat`);
    if (!next.externalGateway && externalIp) {
      await tx.trx.deleteFrom('sim_allocations').where('owner', '=', `${o.id}/snat`).execute();
      externalIp = null;
    }
    return { outputs: { ...o.outputs, interfaces: ifaces, externalIp } };
  },
};

/** A rule's remote group must be a security group of the same project (or this one). */
async function checkRemoteGroups(tx: SimTx, o: SimObject, rules: { remoteGroup?: string }[]): Promise<void> {
  for (const [i, r] of rules.entries()) if (r.remoteGroup && r.remoteGroup !== o.id) await tx.must('network/SecurityGroup', r.remoteGroup, o.project, `rules[${i}].remoteGroup`);
}

const SecurityGroup: Behaviour = {
  prefix: 'sg',
  async create(tx, o) {
    await checkRemoteGroups(tx, o, o.spec.rules);
    return { outputs: { id: o.id, name: o.name, rules: o.spec.rules.length } };
  },
  async update(tx, o, next) {
    await checkRemoteGroups(tx, o, next.rules);
    return { outputs: { ...o.outputs, rules: next.rules.length } };
  },
  async checkDelete(tx, o) {
    const referrers = (await tx.listLive('network/SecurityGroup')).filter((g) => g.id !== o.id && (g.spec.rules as { remoteGroup?: string }[]).some((r) => r.remoteGroup === o.id));
    if (referrers.length) throw new ProviderError('Conflict', `security group ${o.name} is the remote group of rules in ${referrers.map((g) => g.name).join(', ')}: change those rules first`, { retryable: true });
    const users = (await tx.listLive('compute/Server')).filter((s) => (s.spec.securityGroups as string[]).includes(o.id));
    if (users.length) throw new ProviderError('Conflict', `security group ${o.name} is in use by ${users.map((u) => u.name).join(', ')}`, { retryable: true });
  },
};

const Port: Behaviour = {
  prefix: 'port',
  async create(tx, o) {
    const net = await tx.must('network/Network', o.spec.network, o.project, 'network');
    let subnet: SimObject | undefined;
    if (o.spec.subnet) subnet = await tx.must('network/Subnet', o.spec.subnet, o.project, 'subnet');
    else subnet = (await tx.listLive('network/Subnet')).find((s) => s.outputs.network === net.id);
    if (!subnet) throw invalid(`network ${net.name} has no subnet: create one or give subnet`);
    const ip = await allocateIp(tx, subnet, `${o.id}/ip`, o.spec.fixedIp);
    return { outputs: { id: o.id, name: o.name, network: net.id, subnet: subnet.id, ip, mac: o.spec.macAddress ?? macFrom(o.id), boundTo: null, status: 'DOWN' }, state: { boundTo: null } };
  },
  async update(_tx, o) {
    return { outputs: o.outputs };
  },
  async checkDelete(_tx, o) {
    if (o.state.boundTo) throw new ProviderError('Conflict', `port ${o.name} is bound to ${o.state.boundTo}: delete that server first`, { retryable: true });
  },
};

async function fipTarget(tx: SimTx, o: SimObject, spec: Record<string, any>): Promise<{ port: string | null; server: string | null; fixedIp: string | null }> {
  if (spec.port) {
    const p = await tx.must('network/Port', spec.port, o.project, 'port');
    return { port: p.id, server: p.state.boundTo ?? null, fixedIp: p.outputs.ip };
  }
  if (spec.server) {
    const s = await tx.must(['compute/Server', 'metal/Instance'], spec.server, o.project, 'server');
    return { port: null, server: s.id, fixedIp: s.outputs.ip ?? null };
  }
  return { port: null, server: null, fixedIp: null };
}

const FloatingIP: Behaviour = {
  prefix: 'fip',
  async create(tx, o) {
    const q = await tx.quota(o.project);
    const used = (await tx.listLive('network/FloatingIP')).filter((f) => f.project === o.project && f.id !== o.id).length;
    if (used + 1 > q.floatingIps) throw new ProviderError('QuotaExceeded', `Quota exceeded for floatingIps: already used ${used} of ${q.floatingIps} in project ${o.project}`, { details: { resource: 'floatingIps', used, limit: q.floatingIps } });
    const address = await floatingIp(tx, o.spec.pool, o.id);
    return { outputs: { id: o.id, address, pool: o.spec.pool, ...(await fipTarget(tx, o, o.spec)), status: 'ACTIVE' } };
  },
  async update(tx, o, next) {
    return { outputs: { ...o.outputs, ...(await fipTarget(tx, o, next)) } };
  },
};

function memberHealth(members: { address: string; port: number }[], live: Set<string>) {
  return members.map((m) => ({ ...m, status: live.has(m.address) ? 'ONLINE' : 'ERROR' }));
}

const LoadBalancer: Behaviour = {
  prefix: 'lb',
  stages: ['AllocatingVIP', 'BootingAmphora', 'ConfiguringListeners'],
  async create(tx, o) {
    const sub = await tx.must('network/Subnet', o.spec.subnet, o.project, 'subnet');
    const vip = await allocateIp(tx, sub, `${o.id}/vip`, o.spec.vip);
    return { outputs: { id: o.id, name: o.name, vip, listeners: o.spec.listeners, provisioningStatus: 'PENDING_CREATE' }, state: { rr: 0 } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, listeners: next.listeners, provisioningStatus: 'PENDING_UPDATE' } };
  },
  async complete(_tx, o) {
    o.outputs.provisioningStatus = 'ACTIVE';
  },
  async view(ctx, o): Promise<View> {
    const live = await ctx.liveAddresses();
    const members = memberHealth(o.actual.members ?? [], live);
    const healthy = members.filter((m) => m.status === 'ONLINE').length;
    return {
      outputs: { members, healthyMembers: healthy, operatingStatus: members.length === 0 ? 'NO_MONITOR' : healthy === members.length ? 'ONLINE' : healthy === 0 ? 'ERROR' : 'DEGRADED' },
      conditions: members.length ? [{ type: 'MembersHealthy', status: healthy === members.length ? 'True' : 'False', reason: healthy === members.length ? 'AllOnline' : 'MembersDown', message: `${healthy}/${members.length} members healthy` }] : [],
    };
  },
};

function normalizeZone(name: string): string {
  return name.toLowerCase().endsWith('.') ? name.toLowerCase() : name.toLowerCase() + '.';
}

const Zone: Behaviour = {
  prefix: 'zone',
  async create(tx, o) {
    const name = normalizeZone(o.spec.name);
    const clash = (await tx.listLive('dns/Zone')).find((z) => z.outputs.name === name && z.id !== o.id);
    if (clash) throw new ProviderError('Conflict', `zone ${name} already exists (${clash.id})`);
    return { outputs: { id: o.id, name, nameservers: ['ns1.sim.infraflow.', 'ns2.sim.infraflow.'], serial: 1, ttl: o.spec.ttl } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, serial: (o.outputs.serial as number) + 1, ttl: next.ttl } };
  },
  async release(tx, o) {
    // Deleting a zone deletes its records (as Designate and PowerDNS do).
    for (const r of (await tx.listLive('dns/Record')).filter((x) => x.outputs.zone === o.id)) {
      r.phase = 'deleted';
      r.deletedAt = tx.now;
      r.op = null;
      await tx.save(r);
    }
  },
};

export function recordFqdn(name: string, zone: string): string {
  if (name === '@' || name === '') return zone;
  const n = name.toLowerCase();
  if (n.endsWith('.')) return n;
  if (n.endsWith(zone.slice(0, -1))) return n + '.';
  return `${n}.${zone}`;
}

const Record: Behaviour = {
  prefix: 'rec',
  async create(tx, o) {
    const zones = await tx.listLive('dns/Zone');
    const zone = zones.find((z) => z.id === o.spec.zone) ?? zones.find((z) => z.outputs.name === normalizeZone(o.spec.zone) && (z.project === o.project || z.project === '*'));
    if (!zone) throw invalid(`zone: "${o.spec.zone}" is not a zone id or name; create the dns/Zone first`);
    const fqdn = recordFqdn(o.spec.name, zone.outputs.name);
    if (!fqdn.endsWith(zone.outputs.name)) throw invalid(`record ${fqdn} is outside zone ${zone.outputs.name}`);
    const clash = (await tx.listLive('dns/Record')).find((r) => r.id !== o.id && r.outputs.fqdn === fqdn && r.outputs.type === o.spec.type);
    if (clash) throw new ProviderError('Conflict', `a ${o.spec.type} record for ${fqdn} already exists (${clash.id}): update that one`);
    if (o.spec.type === 'CNAME' && (await tx.listLive('dns/Record')).some((r) => r.id !== o.id && r.outputs.fqdn === fqdn)) throw new ProviderError('Conflict', `${fqdn} already has other records; a CNAME must stand alone`);
    return { outputs: { id: o.id, zone: zone.id, fqdn, type: o.spec.type, ttl: o.spec.ttl, values: o.spec.values } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, ttl: next.ttl, values: next.values } };
  },
};

// ---- bare-metal network and BMC (the simulated counterparts of the real backends in src/providers/{ovs,dnsmasq,ipmi,redfish}) ----

/** A switch port's VLAN configuration; one resource per (switch, port). */
const SwitchPort: Behaviour = {
  prefix: 'swp',
  async create(tx, o) {
    await tx.allocateValue('switchport', `${o.spec.switch}/${o.spec.port}`, o.id, `switch port ${o.spec.switch}/${o.spec.port}`);
    return { outputs: { id: o.id, switch: o.spec.switch, port: o.spec.port, mode: o.spec.mode, vlan: o.spec.vlan ?? null, vlans: o.spec.vlans ?? [] } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, mode: next.mode, vlan: next.vlan ?? null, vlans: next.vlans ?? [] } };
  },
};

const DhcpSubnet: Behaviour = {
  prefix: 'dhsub',
  async create(tx, o) {
    await tx.allocateValue('dhcp-subnet', o.spec.cidr, o.id, `DHCP subnet ${o.spec.cidr}`);
    return { outputs: { id: o.id, cidr: o.spec.cidr } };
  },
  async update(_tx, o) { return { outputs: o.outputs }; },
};

const DhcpReservation: Behaviour = {
  prefix: 'dhres',
  async create(tx, o) {
    await tx.allocateValue('dhcp-mac', String(o.spec.mac).toLowerCase(), o.id, `a reservation for MAC ${o.spec.mac}`);
    await tx.allocateValue('dhcp-addr', o.spec.address, `${o.id}/addr`, `a reservation of ${o.spec.address}`);
    return { outputs: { id: o.id, mac: String(o.spec.mac).toLowerCase(), address: o.spec.address, hostname: o.spec.hostname ?? null } };
  },
  async update(tx, o, next, previous) {
    if (next.address !== previous.address) {
      await tx.releaseOwner(`${o.id}/addr`);
      await tx.allocateValue('dhcp-addr', next.address, `${o.id}/addr`, `a reservation of ${next.address}`);
    }
    return { outputs: { ...o.outputs, address: next.address, hostname: next.hostname ?? null } };
  },
};

const Power: Behaviour = {
  prefix: 'pwr',
  stages: ['PoweringOn'],
  async create(tx, o) {
    await tx.allocateValue('bmc', o.spec.server, o.id, `BMC control of server ${o.spec.server}`);
    return { outputs: { id: o.id, server: o.spec.server, power: o.spec.power, bootDevice: o.spec.bootDevice ?? null } };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, power: next.power, bootDevice: next.bootDevice ?? null } };
  },
};

const Metal: Behaviour = {
  prefix: 'bm',
  stages: ['Allocating', 'PoweringOn', 'Inspecting', 'Deploying', 'InstallingOS', 'Rebooting', 'Configuring'],
  deleteStages: ['PoweringOff', 'Cleaning'],
  async create(tx, o) {
    const tpl = DEFAULT_OS_TEMPLATES[o.spec.osTemplate];
    if (!tpl) throw invalid(`osTemplate "${o.spec.osTemplate}" does not exist; templates: ${Object.keys(DEFAULT_OS_TEMPLATES).join(', ')}`);
    let server: { serverId: string; name: string; vcpus?: number; ramMb?: number; bmcAddress?: string | undefined };
    const ext = tx.backends.allocateMetalServer ? await tx.backends.allocateMetalServer({ serverType: o.spec.serverType, ...(o.spec.datacenter ? { datacenter: o.spec.datacenter } : {}), key: `${tx.key}:server`, holder: `sim:${o.id}` }, tx.trx) : undefined;
    if (ext) {
      server = { ...ext, bmcAddress: ext.bmcAddress ?? undefined };
    } else {
      const type = tx.config.serverTypes[o.spec.serverType];
      if (!type) throw invalid(`serverType "${o.spec.serverType}" does not exist; types: ${Object.keys(tx.config.serverTypes).join(', ')}`);
      if (o.spec.datacenter && o.spec.datacenter !== type.datacenter) throw new ProviderError('CapacityExhausted', `no ${o.spec.serverType} servers in datacenter ${o.spec.datacenter}`);
      const name = await tx.allocate(`metal:${o.spec.serverType}`, o.id, (taken) => {
        for (let i = 1; i <= type.count; i++) {
          const n = `${o.spec.serverType}-${String(i).padStart(3, '0')}`;
          if (!taken.has(n)) return n;
        }
        return undefined;
      }, `a ${o.spec.serverType} server: all ${type.count} are allocated`);
      server = { serverId: `srv-${name}`, name, vcpus: type.vcpus, ramMb: type.ramMb, bmcAddress: `10.255.${(seedFrom(name) >>> 8) & 0xff}.${seedFrom(name) & 0xff}` };
    }
    const nics = await attachNics(tx, o, o.spec.networks);
    return {
      host: server.name,
      state: { serverId: server.serverId, serverName: server.name, external: Boolean(ext) },
      outputs: { id: o.id, serverId: server.serverId, serverName: server.name, serverType: o.spec.serverType, hostname: o.spec.hostname ?? server.name, osTemplate: o.spec.osTemplate, os: `${tpl.distro} ${tpl.version}`, bmcAddress: server.bmcAddress ?? null, addresses: nics, ip: nics[0]?.ip ?? null, powerState: 'on', provisionState: 'deploying' },
    };
  },
  async update(_tx, o, next) {
    return { outputs: { ...o.outputs, powerState: next.power } };
  },
  async complete(_tx, o) {
    o.outputs.provisionState = 'active';
  },
  async release(tx, o) {
    const release = tx.backends.releaseMetalServer;
    if (o.state.external && release) tx.afterCommit(() => release({ serverId: o.state.serverId, holder: `sim:${o.id}` }));
  },
  async view(_ctx, o): Promise<View> {
    if (o.phase !== 'ready') return {};
    const off = o.actual.power === 'off';
    return { outputs: { powerState: off ? 'off' : 'on' }, conditions: [{ type: 'PoweredOn', status: off ? 'False' : 'True', reason: off ? 'PoweredOff' : 'Running', message: off ? 'the server is powered off' : 'the server is running' }] };
  },
};

// ---- containers ------------------------------------------------------------------

const OPERATORS: Record<string, string[]> = {
  openshift: ['kube-apiserver', 'etcd', 'authentication', 'console', 'dns', 'ingress', 'network', 'monitoring', 'image-registry', 'machine-config'],
  kubernetes: ['kube-apiserver', 'etcd', 'coredns', 'cni', 'metrics-server'],
  k3s: ['kube-apiserver', 'coredns', 'traefik', 'local-path-provisioner'],
};

interface Node { name: string; role: 'control-plane' | 'worker'; pool: string; vcpus: number; ramMb: number; host: string; ip: string | null }

async function makeNodes(tx: SimTx, o: SimObject, spec: Record<string, any>, existing: Node[]): Promise<Node[]> {
  const nodes: Node[] = [];
  const want: { name: string; role: Node['role']; pool: string; flavor: string }[] = [];
  for (let i = 0; i < spec.controlPlane.count; i++) want.push({ name: `${o.name}-cp-${i}`, role: 'control-plane', pool: 'control-plane', flavor: spec.controlPlane.flavor });
  for (const p of spec.nodePools) for (let i = 0; i < p.count; i++) want.push({ name: `${o.name}-${p.name}-${i}`, role: 'worker', pool: p.name, flavor: p.flavor });
  const subnet = spec.subnet ? await tx.must('network/Subnet', spec.subnet, o.project, 'subnet') : undefined;
  for (const w of want) {
    const had = existing.find((n) => n.name === w.name);
    if (had) {
      nodes.push(had);
      continue;
    }
    let vcpus: number;
    let ramMb: number;
    let host: string;
    if (spec.metal) {
      const type = tx.config.serverTypes[spec.metal.serverType];
      if (!type) throw invalid(`metal.serverType "${spec.metal.serverType}" does not exist`);
      host = await tx.allocate(`metal:${spec.metal.serverType}`, `${o.id}/${w.name}`, (taken) => {
        for (let i = 1; i <= type.count; i++) {
          const n = `${spec.metal.serverType}-${String(i).padStart(3, '0')}`;
          if (!taken.has(n)) return n;
        }
        return undefined;
      }, `a ${spec.metal.serverType} server for node ${w.name}`);
      vcpus = type.vcpus;
      ramMb = type.ramMb;
    } else {
      const flavor = await flavorOf(tx, w.flavor, o.project, `flavor of ${w.pool}`);
      vcpus = flavor.outputs.vcpus;
      ramMb = flavor.outputs.ramMb;
      host = await tx.place(`${o.id}/${w.name}`, vcpus, ramMb);
    }
    const ip = subnet ? await allocateIp(tx, subnet, `${o.id}/${w.name}/ip`) : null;
    nodes.push({ name: w.name, role: w.role, pool: w.pool, vcpus, ramMb, host, ip });
  }
  for (const gone of existing.filter((n) => !nodes.some((x) => x.name === n.name))) await tx.releaseOwner(`${o.id}/${gone.name}`);
  return nodes;
}

function versionTuple(v: string): number[] {
  return v.split('.').map(Number);
}

const Cluster: Behaviour = {
  prefix: 'k8s',
  stages: ['ProvisioningInfrastructure', 'BootstrappingControlPlane', 'WaitingForControlPlane', 'JoiningNodes', 'InstallingOperators', 'WaitingForOperators'],
  deleteStages: ['DrainingNodes', 'DeprovisioningInfrastructure'],
  async create(tx, o) {
    const nodes = await makeNodes(tx, o, o.spec, []);
    const domain = `${o.name}.${o.spec.baseDomain}`;
    return {
      state: { nodes, health: { notReadyNodes: [], degradedOperators: [] } },
      outputs: {
        id: o.id, name: o.name, distribution: o.spec.distribution, version: o.spec.version, apiEndpoint: `https://api.${domain}:6443`,
        consoleUrl: o.spec.distribution === 'openshift' ? `https://console-openshift-console.apps.${domain}` : null, ingressDomain: `apps.${domain}`,
        nodeCount: nodes.length, workerCount: nodes.filter((n) => n.role === 'worker').length, status: 'installing',
      },
      credentials: newClusterCredentials(),
    };
  },
  async update(tx, o, next, prev) {
    const a = versionTuple(next.version);
    const b = versionTuple(prev.version);
    if (a[0]! < b[0]! || (a[0] === b[0] && a[1]! < b[1]!)) throw invalid(`cannot downgrade a cluster from ${prev.version} to ${next.version}`);
    if (a[0] === b[0] && a[1]! > b[1]! + 1) throw invalid(`upgrade one minor version at a time: ${prev.version} → ${a[0]}.${b[1]! + 1}, not ${next.version}`);
    const nodes = await makeNodes(tx, o, next, o.state.nodes as Node[]);
    return { state: { ...o.state, nodes }, outputs: { ...o.outputs, version: next.version, nodeCount: nodes.length, workerCount: nodes.filter((n) => n.role === 'worker').length, status: next.version !== prev.version ? 'upgrading' : 'scaling' } };
  },
  async complete(_tx, o) {
    o.outputs.status = 'ready';
  },
  async release(tx, o) {
    for (const w of (await tx.listLive('container/Workload')).filter((x) => x.outputs.cluster === o.id)) {
      w.phase = 'deleted';
      w.deletedAt = tx.now;
      w.op = null;
      await tx.save(w);
    }
  },
  async view(ctx, o): Promise<View> {
    const nodes = (o.state.nodes ?? []) as Node[];
    const h = (o.state.health ?? {}) as { notReadyNodes?: string[]; degradedOperators?: string[] };
    const operators = (OPERATORS[o.spec.distribution] ?? OPERATORS.kubernetes!).map((name) => {
      const degraded = (h.degradedOperators ?? []).includes(name);
      return { name, available: o.phase === 'ready' && !degraded, degraded, progressing: o.phase !== 'ready' };
    });
    const nodeList = nodes.map((n) => ({ name: n.name, role: n.role, pool: n.pool, host: n.host, ip: n.ip, ready: o.phase !== 'creating' && !(h.notReadyNodes ?? []).includes(n.name) }));
    const readyNodes = nodeList.filter((n) => n.ready).length;
    const availableOps = operators.filter((x) => x.available).length;
    if (o.phase !== 'ready' && o.phase !== 'updating') return { outputs: { nodes: nodeList, operators } };
    return {
      outputs: { nodes: nodeList, operators, readyNodes, health: readyNodes === nodeList.length && availableOps === operators.length ? 'healthy' : 'degraded' },
      conditions: [
        { type: 'NodesReady', status: readyNodes === nodeList.length ? 'True' : 'False', reason: readyNodes === nodeList.length ? 'AllNodesReady' : 'NodeNotReady', message: `${readyNodes}/${nodeList.length} nodes Ready` },
        { type: 'OperatorsAvailable', status: availableOps === operators.length ? 'True' : 'False', reason: availableOps === operators.length ? 'AllAvailable' : 'OperatorDegraded', message: availableOps === operators.length ? `${operators.length} operators Available` : `degraded: ${operators.filter((x) => !x.available).map((x) => x.name).join(', ')}` },
      ],
      secrets: clusterSecrets(o, await ctx.credentials(o.id, newClusterCredentials)),
    };
  },
};

const CREDENTIAL_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** `length` characters from an unambiguous alphabet, from the OS's CSPRNG (never the seeded rng: the seed is public to sim:read). */
export function randomCredential(length: number): string {
  const n = CREDENTIAL_ALPHABET.length;
  const below = 256 - (256 % n); // rejection sampling keeps every character equally likely
  const out: string[] = [];
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) if (b < below && out.length < length) out.push(CREDENTIAL_ALPHABET[b % n]!);
  }
  return out.join('');
}

/** A new cluster's admin password and API token: random per cluster, generated once by its create. */
export function newClusterCredentials(): Record<string, string> {
  return { adminPassword: randomCredential(23), token: randomCredential(40) };
}

/** The secrets a cluster read returns, from its stored credentials. */
export function clusterSecrets(o: SimObject, credentials: Record<string, string>): Record<string, string> {
  const user = o.spec.distribution === 'openshift' ? 'kubeadmin' : 'admin';
  const kubeconfig = [
    'apiVersion: v1', 'kind: Config', 'clusters:', `- name: ${o.name}`, '  cluster:', `    server: ${o.outputs.apiEndpoint}`, '    insecure-skip-tls-verify: true',
    'users:', `- name: ${user}`, '  user:', `    token: ${credentials.token}`, 'contexts:', `- name: ${o.name}`, '  context:', `    cluster: ${o.name}`, `    user: ${user}`, `current-context: ${o.name}`, '',
  ].join('\n');
  return { kubeconfig, adminUser: user, adminPassword: credentials.adminPassword! };
}

interface Pod { name: string; node: string | null; phase: 'Pending' | 'Running'; reason?: string; startedAt?: number }

/** Schedules pods onto worker nodes by CPU and memory (most free CPU first). */
export async function schedulePods(listLive: (kind: string) => Promise<SimObject[]>, cluster: SimObject, w: SimObject, spec: Record<string, any>, keep: Pod[]): Promise<Pod[]> {
  const cpu = cpuMillis(spec.resources.cpu);
  const mem = memoryMiB(spec.resources.memory);
  const workers = ((cluster.state.nodes ?? []) as Node[]).filter((n) => n.role === 'worker' && !((cluster.state.health?.notReadyNodes ?? []) as string[]).includes(n.name));
  const free = new Map(workers.map((n) => [n.name, { cpu: Math.floor(n.vcpus * 1000 * 0.9), mem: Math.floor(n.ramMb * 0.85) }]));
  for (const other of (await listLive('container/Workload')).filter((x) => x.outputs.cluster === cluster.id && x.id !== w.id)) {
    const oc = cpuMillis(other.spec.resources.cpu);
    const om = memoryMiB(other.spec.resources.memory);
    for (const p of (other.state.pods ?? []) as Pod[]) {
      const f = p.node ? free.get(p.node) : undefined;
      if (f) {
        f.cpu -= oc;
        f.mem -= om;
      }
    }
  }
  const pods: Pod[] = [];
  for (let i = 0; i < spec.replicas; i++) {
    const name = `${w.name}-${(seedFrom(`${w.id}/${i}`) >>> 0).toString(36).slice(0, 5)}`;
    const prev = keep.find((p) => p.name === name && p.node && free.has(p.node));
    if (prev && prev.node) {
      const f = free.get(prev.node)!;
      if (f.cpu >= cpu && f.mem >= mem) {
        f.cpu -= cpu;
        f.mem -= mem;
        pods.push(prev);
        continue;
      }
    }
    const best = [...free.entries()].filter(([, f]) => f.cpu >= cpu && f.mem >= mem).sort((a, b) => b[1].cpu - a[1].cpu || (a[0] < b[0] ? -1 : 1))[0];
    if (!best) {
      const why = [...free.values()].every((f) => f.cpu < cpu) ? 'insufficient cpu' : 'insufficient memory';
      pods.push({ name, node: null, phase: 'Pending', reason: `Unschedulable: 0/${workers.length} nodes are available: ${why}` });
      continue;
    }
    best[1].cpu -= cpu;
    best[1].mem -= mem;
    pods.push({ name, node: best[0], phase: 'Pending' });
  }
  return pods;
}

const Workload: Behaviour = {
  prefix: 'wl',
  stages: ['Scheduling', 'PullingImage', 'ContainerCreating'],
  async create(tx, o) {
    const cluster = await tx.must('container/Cluster', o.spec.cluster, o.project, 'cluster');
    if (cluster.phase !== 'ready' && cluster.phase !== 'updating') throw new ProviderError('Conflict', `cluster ${cluster.name} is ${cluster.phase}, not ready: wait for it`, { retryable: true });
    const pods = await schedulePods((k) => tx.listLive(k), cluster, o, o.spec, []);
    const serviceIp = formatIp(4, parseCidr('10.96.0.0/12').network + BigInt(seedFrom(o.id) % 1_000_000) + 10n);
    return { state: { pods, loadRps: null }, outputs: { id: o.id, cluster: cluster.id, namespace: o.spec.namespace, replicas: o.spec.replicas, readyReplicas: 0, serviceIp, endpoint: o.spec.service ? `${o.name}.${o.spec.namespace}.svc:${o.spec.service.port}` : null } };
  },
  async update(tx, o, next) {
    const cluster = await tx.must('container/Cluster', next.cluster, o.project, 'cluster');
    const keep = o.spec.image === next.image ? (o.state.pods as Pod[]) : [];
    const pods = await schedulePods((k) => tx.listLive(k), cluster, o, next, keep);
    return { state: { ...o.state, pods }, outputs: { ...o.outputs, replicas: next.replicas } };
  },
  async complete(tx, o) {
    o.state.pods = (o.state.pods as Pod[]).map((p) => (p.node ? { ...p, phase: 'Running', startedAt: p.startedAt ?? tx.now } : p));
  },
  async view(_ctx, o): Promise<View> {
    const pods = (o.state.pods ?? []) as Pod[];
    const running = pods.filter((p) => p.phase === 'Running').length;
    const pending = pods.filter((p) => !p.node);
    const conds = [{ type: 'Available', status: running >= o.spec.replicas ? 'True' as const : 'False' as const, reason: pending.length ? 'Unschedulable' : running >= o.spec.replicas ? 'MinimumReplicasAvailable' : 'ReplicasStarting', message: pending.length ? `${pending.length} pod(s) pending: ${pending[0]!.reason}` : `${running}/${o.spec.replicas} replicas available` }];
    const view: View = { outputs: { readyReplicas: running, pods: pods.map((p) => ({ name: p.name, node: p.node, phase: p.phase, ...(p.reason ? { reason: p.reason } : {}) })) }, conditions: conds };
    if (o.phase === 'ready' && pending.length) view.state = 'creating';
    return view;
  },
};

// ---- automation ---------------------------------------------------------------

const Job: Behaviour = {
  prefix: 'job',
  stages: ['Queued', 'GatheringFacts', 'Running'],
  async create(tx, o) {
    const live = await liveAddressesTx(tx);
    const hosts = o.spec.inventory.hosts as { name: string; address?: string }[];
    const unreachable = hosts.filter((h) => h.address && !live.has(h.address)).map((h) => h.name);
    const res: BehaviourResult = { outputs: { id: o.id, status: 'running', hosts: hosts.length, exitCode: null }, state: { unreachable } };
    if (unreachable.length) res.fail = { reason: 'Internal', message: `job ${o.name} failed: host(s) unreachable: ${unreachable.join(', ')}` };
    return res;
  },
  async update(_tx, o) {
    return { outputs: o.outputs };
  },
  async complete(_tx, o) {
    o.outputs.status = 'succeeded';
    o.outputs.exitCode = 0;
  },
};

async function liveAddressesTx(tx: SimTx): Promise<Set<string>> {
  const out = new Set<string>();
  for (const k of ['compute/Server', 'metal/Instance', 'network/Port']) {
    for (const o of await tx.listLive(k)) {
      if (o.actual.power === 'off') continue;
      for (const n of (o.outputs.addresses ?? []) as { ip: string }[]) out.add(n.ip);
      if (o.outputs.ip) out.add(o.outputs.ip);
    }
  }
  for (const f of await tx.listLive('network/FloatingIP')) if (f.outputs.fixedIp) out.add(f.outputs.address);
  return out;
}

export const BEHAVIOURS: Record<string, Behaviour> = {
  'compute/Flavor': Flavor,
  'compute/Image': Image,
  'compute/Keypair': Keypair,
  'compute/Server': Server,
  'storage/Volume': Volume,
  'network/Network': Network,
  'network/Subnet': Subnet,
  'network/Router': Router,
  'network/SecurityGroup': SecurityGroup,
  'network/Port': Port,
  'network/FloatingIP': FloatingIP,
  'network/LoadBalancer': LoadBalancer,
  'dns/Zone': Zone,
  'dns/Record': Record,
  'network/SwitchPort': SwitchPort,
  'dhcp/Subnet': DhcpSubnet,
  'dhcp/Reservation': DhcpReservation,
  'metal/Power': Power,
  'metal/Instance': Metal,
  'container/Cluster': Cluster,
  'container/Workload': Workload,
  'automation/Job': Job,
};

export type { ViewContext };
