/**
 * The PostgreSQL store's webhook statements (migration 12): signing secrets, agents' default
 * URLs, deliveries and their attempts, with the same semantics as store/sqlite/webhooks.ts.
 */
import type { PoolClient, QueryResultRow } from 'pg';
import { notFound } from '../../contract/errors.js';
import type {
  NewWebhookDelivery,
  WebhookAttemptOutcome,
  WebhookAttemptRecord,
  WebhookClaim,
  WebhookDeliveryRecord,
  WebhookDeliveryWithAttempts,
} from '../../contract/webhooks.js';
import type { ConstraintMessages } from './errors.js';

const DELIVERY_COLUMNS = 'id, run_id, agent_id, owner, event, url, payload, status, attempts, next_attempt_at, claimed_until, created_at, delivered_at';

/** What the webhook part needs of the store: its pooled queries and transactions, errors mapped. */
export interface WebhookDatabase {
  query<R extends QueryResultRow>(text: string, values?: unknown[], messages?: ConstraintMessages): Promise<R[]>;
  transaction<T>(work: (client: PoolClient) => Promise<T>): Promise<T>;
}

/** The webhook part of the PostgreSQL store. */
export class PgWebhooks {
  readonly #db: WebhookDatabase;

  constructor(db: WebhookDatabase) {
    this.#db = db;
  }

  async getSecret(username: string): Promise<string | null> {
    const [row] = await this.#db.query<{ secret: string }>('SELECT secret FROM webhook_secrets WHERE username = $1', [username]);
    return row?.secret ?? null;
  }

  async ensureSecret(username: string, candidate: string, now: string): Promise<string> {
    // One statement: two instances making a first secret at once both read the winner's.
    const [row] = await this.#db.query<{ secret: string }>(
      `WITH ins AS (
         INSERT INTO webhook_secrets (username, secret, created_at, updated_at)
         SELECT username, $2, $3, $3 FROM users WHERE username = $1
         ON CONFLICT (username) DO NOTHING RETURNING secret
       )
       SELECT secret FROM ins UNION ALL SELECT secret FROM webhook_secrets WHERE username = $1 LIMIT 1`,
      [username, candidate, now],
    );
    if (row !== undefined) return row.secret;
    // The insert saw a conflict its snapshot cannot read (a racing first use committed meanwhile), or the user is unknown.
    const again = await this.getSecret(username);
    if (again === null) throw notFound('user', username);
    return again;
  }

  async setSecret(username: string, secret: string, now: string): Promise<void> {
    const rows = await this.#db.query(
      `INSERT INTO webhook_secrets (username, secret, created_at, updated_at)
       SELECT username, $2, $3, $3 FROM users WHERE username = $1
       ON CONFLICT (username) DO UPDATE SET secret = EXCLUDED.secret, updated_at = EXCLUDED.updated_at RETURNING username`,
      [username, secret, now],
    );
    if (rows.length === 0) throw notFound('user', username);
  }

  async setAgentWebhook(agentId: string, url: string | null): Promise<void> {
    if (url === null) {
      const [agent] = await this.#db.query<{ id: string }>('SELECT id FROM agents WHERE id = $1', [agentId]);
      if (agent === undefined) throw notFound('agent', agentId);
      await this.#db.query('DELETE FROM agent_webhooks WHERE agent_id = $1', [agentId]);
      return;
    }
    const rows = await this.#db.query(
      `INSERT INTO agent_webhooks (agent_id, url) SELECT id, $2 FROM agents WHERE id = $1
       ON CONFLICT (agent_id) DO UPDATE SET url = EXCLUDED.url RETURNING agent_id`,
      [agentId, url],
    );
    if (rows.length === 0) throw notFound('agent', agentId);
  }

  async getAgentWebhook(agentId: string): Promise<string | null> {
    const [row] = await this.#db.query<{ url: string }>('SELECT url FROM agent_webhooks WHERE agent_id = $1', [agentId]);
    return row?.url ?? null;
  }

  async createDelivery(d: NewWebhookDelivery): Promise<void> {
    await this.#db.query(
      `INSERT INTO webhook_deliveries (id, run_id, agent_id, owner, event, url, payload, next_attempt_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [d.id, d.run_id, d.agent_id, d.owner, d.event, d.url, d.payload, d.next_attempt_at, d.created_at],
      { conflict: () => `webhook delivery "${d.id}" already exists`, foreignKey: () => `unknown agent "${d.agent_id}"` },
    );
  }

  async claim(claim: WebhookClaim): Promise<WebhookDeliveryRecord[]> {
    // FOR UPDATE SKIP LOCKED: instances claiming at once take disjoint rows instead of queueing
    // on each other's; the outer WHERE re-checks the lease under the row lock (compare-and-set).
    const rows = await this.#db.query<WebhookDeliveryRecord>(
      `UPDATE webhook_deliveries SET claimed_until = $2, claimed_by = $3
       WHERE id IN (
         SELECT id FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)
         ORDER BY next_attempt_at, id LIMIT $4
         FOR UPDATE SKIP LOCKED
       ) AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < $1)
       RETURNING ${DELIVERY_COLUMNS}`,
      [claim.now, claim.until, claim.claimant, claim.limit],
    );
    return rows.sort((a, b) => (a.next_attempt_at < b.next_attempt_at ? -1 : a.next_attempt_at > b.next_attempt_at ? 1 : a.id < b.id ? -1 : 1));
  }

  async recordAttempt(deliveryId: string, claimant: string, attempt: WebhookAttemptRecord, outcome: WebhookAttemptOutcome): Promise<boolean> {
    return this.#db.transaction(async (client) => {
      const { rowCount } = await client.query(
        `UPDATE webhook_deliveries SET status = $3, attempts = $4, next_attempt_at = $5, delivered_at = $6, claimed_until = NULL, claimed_by = NULL
         WHERE id = $1 AND claimed_by = $2 AND status = 'pending'`,
        [deliveryId, claimant, outcome.status, attempt.attempt, outcome.next_attempt_at, outcome.delivered_at],
      );
      if ((rowCount ?? 0) === 0) return false;
      await client.query('INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)', [
        deliveryId,
        attempt.attempt,
        attempt.at,
        attempt.status_code,
        attempt.error,
        attempt.duration_ms,
      ]);
      return true;
    });
  }

  async listOfRun(runId: string): Promise<WebhookDeliveryWithAttempts[]> {
    const deliveries = await this.#db.query<WebhookDeliveryRecord>(
      `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE run_id = $1 ORDER BY created_at, ordinal`,
      [runId],
    );
    if (deliveries.length === 0) return [];
    const attempts = await this.#db.query<WebhookAttemptRecord & { delivery_id: string }>(
      `SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM webhook_attempts
       WHERE delivery_id = ANY($1::text[]) ORDER BY delivery_id, attempt`,
      [deliveries.map((d) => d.id)],
    );
    const byDelivery = new Map<string, WebhookAttemptRecord[]>();
    for (const { delivery_id, ...attempt } of attempts) {
      const list = byDelivery.get(delivery_id) ?? [];
      list.push(attempt);
      byDelivery.set(delivery_id, list);
    }
    return deliveries.map((d) => ({ ...d, attempt_log: byDelivery.get(d.id) ?? [] }));
  }
}
