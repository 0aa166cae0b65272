import { NotFoundError, ValidationError } from '../core/errors.js';
import type { KindHandler, Provider } from './types.js';

/**
 * Maps kinds to providers by configuration, so one installation can use the
 * simulator for some kinds and a real backend for others:
 *
 *   registry.configure({ 'dns/*': 'powerdns', 'metal/Instance': 'maas', '*': 'sim' })
 *
 * Resolution: an exact kind wins over `<domain>/*`, which wins over `*`.
 */
export type ProviderRouting = Record<string, string>;

export class ProviderRegistry {
  private providers = new Map<string, Provider>();
  private routing: ProviderRouting;

  constructor(routing: ProviderRouting = { '*': 'sim' }) {
    this.routing = { ...routing };
  }

  register(provider: Provider): this {
    this.providers.set(provider.name, provider);
    return this;
  }

  configure(routing: ProviderRouting): this {
    for (const [pattern] of Object.entries(routing)) {
      if (pattern !== '*' && !/^[a-z][a-z0-9-]*\/(\*|[A-Z][A-Za-z0-9]*)$/.test(pattern)) {
        throw new ValidationError('resources.invalid_routing', `provider routing key "${pattern}" must be "*", "<domain>/*" or "<domain>/<Kind>"`);
      }
    }
    this.routing = { ...routing };
    return this;
  }

  getRouting(): ProviderRouting {
    return { ...this.routing };
  }

  providerNames(): string[] {
    return [...this.providers.keys()];
  }

  provider(name: string): Provider {
    const p = this.providers.get(name);
    if (!p) throw new NotFoundError('resources.provider_not_found', `provider "${name}" is not registered (registered: ${this.providerNames().join(', ') || 'none'})`);
    return p;
  }

  /** The provider name configured for a kind. */
  providerNameFor(kind: string): string {
    const domain = kind.split('/')[0];
    const name = this.routing[kind] ?? this.routing[`${domain}/*`] ?? this.routing['*'];
    if (!name) throw new NotFoundError('resources.no_provider', `no provider is configured for kind ${kind}: add "${kind}" or "${domain}/*" to the provider routing`, { details: { kind } });
    return name;
  }

  resolve(kind: string): { provider: Provider; handler: KindHandler } {
    const provider = this.provider(this.providerNameFor(kind));
    if (!provider.kinds().includes(kind)) {
      throw new NotFoundError('resources.kind_not_supported', `provider "${provider.name}" does not implement ${kind}; route ${kind} to a provider that does`, { details: { kind, provider: provider.name } });
    }
    return { provider, handler: provider.handler(kind) };
  }

  handler(kind: string): KindHandler {
    return this.resolve(kind).handler;
  }
}
