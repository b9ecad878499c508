/**
 * `client.keys`: API keys (`sk_sentinel_…`) for scripts and services. A key's secret is in the
 * creation answer only; keys are listed by their prefix.
 */
import { segment, signalOf, type CallOptions, type TransportHolder } from './call.js';
import type { ApiKey, CreateApiKeyInput, CreatedApiKey } from './models.js';

export class KeysApi {
  readonly #holder: TransportHolder;

  constructor(holder: TransportHolder) {
    this.#holder = holder;
  }

  /** Creates a key with at most the scopes the caller holds; `key` (the secret) is shown this once. */
  create(input: CreateApiKeyInput, options: CallOptions = {}): Promise<CreatedApiKey> {
    return this.#holder.transport.request<CreatedApiKey>('POST', '/v1/keys', { body: input, ...signalOf(options) });
  }

  /** Your keys that are not revoked (never their secrets). */
  async list(options: CallOptions = {}): Promise<ApiKey[]> {
    const answer = await this.#holder.transport.request<{ keys: ApiKey[] }>('GET', '/v1/keys', signalOf(options));
    return answer.keys;
  }

  /** Revokes a key at once, on every instance (your own; an admin may revoke any). */
  async revoke(id: string, options: CallOptions = {}): Promise<void> {
    await this.#holder.transport.request<void>('DELETE', `/v1/keys/${segment(id)}`, signalOf(options));
  }
}
