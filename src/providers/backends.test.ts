import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../core/config.js';
import { ProviderRegistry } from '../resources/registry.js';
import { checkRouting, createBackendProviders, parseBackends } from './backends.js';

const example = fileURLToPath(new URL('../../examples/providers/real-network.yaml', import.meta.url));
const inventory = { getBmcCredentials: async () => null };

describe('backends config', () => {
  it('the default installation builds no real provider', () => {
    const cfg = loadConfig({ env: {} });
    expect(createBackendProviders(parseBackends(cfg.backends), { inventory })).toEqual([]);
    expect(() => checkRouting(cfg.providers, [])).not.toThrow();
  });

  it('the example routes DNS, DHCP, switch ports and BMCs to real providers', () => {
    const cfg = loadConfig({ file: example, env: {} });
    const providers = createBackendProviders(parseBackends(cfg.backends), { inventory, env: { POWERDNS_API_KEY: 'k', KEA_PASSWORD: 'p' } });
    expect(providers.map((p) => p.name).sort()).toEqual(['bmc', 'kea', 'ovs', 'powerdns']);
    checkRouting(cfg.providers, providers);
    const registry = new ProviderRegistry(cfg.providers);
    for (const p of providers) registry.register(p);
    expect(registry.resolve('dns/Record').provider.name).toBe('powerdns');
    expect(registry.resolve('dhcp/Reservation').provider.name).toBe('kea');
    expect(registry.resolve('network/SwitchPort').provider.name).toBe('ovs');
    expect(registry.resolve('metal/Power').provider.name).toBe('bmc');
    expect(registry.providerNameFor('compute/Server')).toBe('sim');
  });

  it('bad settings name the key to fix', () => {
    expect(() => parseBackends({ powerdns: { url: 'not a url', apiKey: 'x' } })).toThrow(/backends\.powerdns\.url/);
    expect(() => parseBackends({ ovs: { switches: { leaf1: {} } } })).toThrow(/backends\.ovs\.switches\.leaf1\.db/);
    expect(() => createBackendProviders(parseBackends({ powerdns: { url: 'http://x', apiKeyEnv: 'NOPE' } }), { env: {} })).toThrow(/NOPE is not set/);
    expect(() => checkRouting({ 'dns/*': 'powerdns', '*': 'sim' }, [])).toThrow(/add backends\.powerdns/);
  });
});
