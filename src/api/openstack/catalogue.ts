/**
 * What the backend offers without anyone creating it: public flavors and
 * images, availability zones, quotas. The simulator has a catalogue; a
 * façade in front of another provider may have none (then only resources
 * created through the façade are listed).
 */
export interface CatalogueFlavor { id: string; name: string; vcpus: number; ramMb: number; diskGb: number; extraSpecs: Record<string, string> }
export interface CatalogueImage { id: string; name: string; minDiskGb: number; minRamMb: number; diskFormat: string; properties: Record<string, string> }
export interface Quota { instances: number; cores: number; ramMb: number; floatingIps: number; volumeGb: number }

export interface BackendCatalogue {
  flavors(): Promise<CatalogueFlavor[]>;
  images(): Promise<CatalogueImage[]>;
  zones(): Promise<string[]>;
  quota(project: string): Promise<Quota>;
}

export const DEFAULT_QUOTA: Quota = { instances: 1000, cores: 4000, ramMb: 16 * 1024 * 1024, floatingIps: 200, volumeGb: 100_000 };

interface SimLike {
  catalogue(): Promise<{ flavors: Record<string, unknown>[]; images: Record<string, unknown>[] }>;
  hosts(): Promise<{ zone: string }[]>;
  getQuota(project: string): Promise<Quota>;
}

export function isSimLike(x: unknown): x is SimLike {
  return !!x && typeof (x as SimLike).catalogue === 'function' && typeof (x as SimLike).hosts === 'function' && typeof (x as SimLike).getQuota === 'function';
}

/** The simulator's catalogue (cached briefly: it changes only when the simulator is reconfigured). */
export function simCatalogue(sim: SimLike): BackendCatalogue {
  let cached: { at: number; flavors: CatalogueFlavor[]; images: CatalogueImage[] } | undefined;
  const load = async () => {
    if (cached && Date.now() - cached.at < 5000) return cached;
    const c = await sim.catalogue();
    cached = {
      at: Date.now(),
      flavors: c.flavors.map((f) => ({ id: String(f.id), name: String(f.name), vcpus: Number(f.vcpus), ramMb: Number(f.ramMb), diskGb: Number(f.diskGb ?? 0), extraSpecs: (f.extraSpecs ?? {}) as Record<string, string> })),
      images: c.images.map((i) => ({ id: String(i.id), name: String(i.name), minDiskGb: Number(i.minDiskGb ?? 0), minRamMb: Number(i.minRamMb ?? 0), diskFormat: String(i.diskFormat ?? 'qcow2'), properties: (i.properties ?? {}) as Record<string, string> })),
    };
    return cached;
  };
  return {
    flavors: async () => (await load()).flavors,
    images: async () => (await load()).images,
    zones: async () => [...new Set((await sim.hosts()).map((h) => h.zone))].sort(),
    quota: (project) => sim.getQuota(project),
  };
}

export const EMPTY_CATALOGUE: BackendCatalogue = {
  flavors: async () => [],
  images: async () => [],
  zones: async () => ['nova'],
  quota: async () => DEFAULT_QUOTA,
};
