/**
 * Per-user webhook signing secrets: made on first use (`GET /v1/auth/webhook-secret`, or the
 * first delivery of a user's run), replaced by a rotation. Never cached: a rotation on one
 * instance signs the next attempt of every instance. Never logged.
 */
import type { WebhookStore } from '../contract/webhooks.js';
import { generateWebhookSecret } from './signing.js';

export interface WebhookSecretsOptions {
  store: Pick<WebhookStore, 'ensureWebhookSecret' | 'setWebhookSecret'>;
  /** Clock for the rows' timestamps. Default `Date.now`. */
  now?: () => number;
}

/** The users' signing secrets (`whsec_…`). */
export class WebhookSecrets {
  readonly #store: WebhookSecretsOptions['store'];
  readonly #now: () => number;

  constructor(options: WebhookSecretsOptions) {
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
  }

  /** The user's secret, generated and stored on first use (the same one on every instance). `not_found` for an unknown user. */
  secretOf(username: string): Promise<string> {
    return this.#store.ensureWebhookSecret(username, generateWebhookSecret(), new Date(this.#now()).toISOString());
  }

  /** Replaces the user's secret with a new one and returns it; deliveries signed from now on use it. */
  async rotate(username: string): Promise<string> {
    const secret = generateWebhookSecret();
    await this.#store.setWebhookSecret(username, secret, new Date(this.#now()).toISOString());
    return secret;
  }
}
