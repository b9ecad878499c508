/**
 * Agents' default webhook URLs for the run layer, cached: a run's record names where its
 * webhook goes, and a Store query per message would cost more than the run's journal. An
 * agent's default is set only as it is created (no update route), so an entry cannot go stale.
 */
import type { WebhookStore } from '../contract/webhooks.js';

/** Entries kept at most before the cache starts over (a lookup is one primary-key read). */
const MAX_ENTRIES = 10_000;

/** The default webhook of each agent (or null), read once per agent and instance. */
export class AgentWebhookDefaults {
  readonly #store: Pick<WebhookStore, 'getAgentWebhook'>;
  readonly #cache = new Map<string, string | null>();

  constructor(store: Pick<WebhookStore, 'getAgentWebhook'>) {
    this.#store = store;
  }

  /** The agent's default URL, or null. */
  async get(agentId: string): Promise<string | null> {
    const cached = this.#cache.get(agentId);
    if (cached !== undefined) return cached;
    const url = await this.#store.getAgentWebhook(agentId);
    if (this.#cache.size >= MAX_ENTRIES) this.#cache.clear();
    this.#cache.set(agentId, url);
    return url;
  }
}
