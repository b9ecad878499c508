/** The providers this server can call, by the name images use in `model.provider`. */
import { SentinelError } from '../contract/errors.js';
import type { ModelProvider } from './types.js';

export class ProviderCatalog {
  private readonly providers = new Map<string, ModelProvider>();

  /** Adds a provider, replacing one of the same name (so an embedding app can swap `echo`). Returns this. */
  register(provider: ModelProvider): this {
    this.providers.set(provider.name, provider);
    return this;
  }

  /** The provider named `name`; SentinelError `upstream_error` when this server has none by that name. */
  get(name: string): ModelProvider {
    const provider = this.providers.get(name);
    if (!provider) throw new SentinelError('upstream_error', `model provider "${name}" is not configured on this server`);
    return provider;
  }

  /** True when a provider of that name is registered. */
  has(name: string): boolean {
    return this.providers.has(name);
  }

  /** Registered provider names, sorted. */
  names(): string[] {
    return [...this.providers.keys()].sort();
  }

  /** Closes every provider that has a `close` (connection pools); failures are ignored. Called by `api.close()`. */
  async close(): Promise<void> {
    await Promise.all([...this.providers.values()].map((provider) => provider.close?.().catch(() => undefined)));
  }
}
