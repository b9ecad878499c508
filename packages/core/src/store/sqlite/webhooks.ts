/**
 * The SQLite store's webhook statements (migration 12): signing secrets, agents' default URLs,
 * deliveries and their attempts, kept apart from the rest of the store so the feature reads in
 * one place. Prepared once per connection, after migrate().
 */
import type { Database as SqliteDatabase } from 'better-sqlite3';
import { notFound } from '../../contract/errors.js';
import type {
  NewWebhookDelivery,
  WebhookAttemptOutcome,
  WebhookAttemptRecord,
  WebhookClaim,
  WebhookDeliveryRecord,
  WebhookDeliveryWithAttempts,
} from '../../contract/webhooks.js';
import { run } from './errors.js';

const DELIVERY_COLUMNS = 'id, run_id, agent_id, owner, event, url, payload, status, attempts, next_attempt_at, claimed_until, created_at, delivered_at';

/** The webhook part of the SQLite store; every method runs to completion synchronously. */
export class SqliteWebhooks {
  readonly #db: SqliteDatabase;
  readonly #getSecret;
  readonly #insertSecret;
  readonly #updateSecret;
  readonly #userExists;
  readonly #setAgentWebhook;
  readonly #clearAgentWebhook;
  readonly #getAgentWebhook;
  readonly #agentExists;
  readonly #insertDelivery;
  readonly #claim;
  readonly #finish;
  readonly #insertAttempt;
  readonly #listOfRun;
  readonly #attemptsOfRun;

  constructor(db: SqliteDatabase) {
    this.#db = db;
    this.#getSecret = db.prepare<[string], string>('SELECT secret FROM webhook_secrets WHERE username = ?').pluck();
    this.#insertSecret = db.prepare<[string, string, string, string]>(
      'INSERT INTO webhook_secrets (username, secret, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (username) DO NOTHING',
    );
    this.#updateSecret = db.prepare<[string, string, string, string, string]>(
      'INSERT INTO webhook_secrets (username, secret, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET secret = ?, updated_at = excluded.updated_at',
    );
    this.#userExists = db.prepare<[string], number>('SELECT 1 FROM users WHERE username = ?').pluck();
    this.#setAgentWebhook = db.prepare<[string, string]>('INSERT INTO agent_webhooks (agent_id, url) VALUES (?, ?) ON CONFLICT (agent_id) DO UPDATE SET url = excluded.url');
    this.#clearAgentWebhook = db.prepare<[string]>('DELETE FROM agent_webhooks WHERE agent_id = ?');
    this.#getAgentWebhook = db.prepare<[string], string>('SELECT url FROM agent_webhooks WHERE agent_id = ?').pluck();
    this.#agentExists = db.prepare<[string], number>('SELECT 1 FROM agents WHERE id = ?').pluck();
    this.#insertDelivery = db.prepare<[NewWebhookDelivery]>(
      `INSERT INTO webhook_deliveries (id, run_id, agent_id, owner, event, url, payload, next_attempt_at, created_at)
       VALUES (@id, @run_id, @agent_id, @owner, @event, @url, @payload, @next_attempt_at, @created_at)`,
    );
    // One statement: SQLite runs writers one at a time, so the rows chosen are leased to this
    // claimant alone, whichever process or instance asks at the same moment.
    this.#claim = db.prepare<{ now: string; until: string; claimant: string; limit: number }, WebhookDeliveryRecord>(
      `UPDATE webhook_deliveries SET claimed_until = @until, claimed_by = @claimant
       WHERE id IN (
         SELECT id FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= @now AND (claimed_until IS NULL OR claimed_until < @now)
         ORDER BY next_attempt_at, id LIMIT @limit
       )
       RETURNING ${DELIVERY_COLUMNS}`,
    );
    this.#finish = db.prepare<{ id: string; claimant: string; attempts: number; status: string; next_attempt_at: string; delivered_at: string | null }>(
      `UPDATE webhook_deliveries SET status = @status, attempts = @attempts, next_attempt_at = @next_attempt_at, delivered_at = @delivered_at,
         claimed_until = NULL, claimed_by = NULL
       WHERE id = @id AND claimed_by = @claimant AND status = 'pending'`,
    );
    this.#insertAttempt = db.prepare<[string, number, string, number | null, string | null, number]>(
      'INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#listOfRun = db.prepare<[string], WebhookDeliveryRecord>(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE run_id = ? ORDER BY created_at, rowid`);
    this.#attemptsOfRun = db.prepare<[string], WebhookAttemptRecord & { delivery_id: string }>(
      `SELECT a.delivery_id, a.attempt, a.at, a.status_code, a.error, a.duration_ms
       FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
       WHERE d.run_id = ? ORDER BY a.delivery_id, a.attempt`,
    );
  }

  getSecret(username: string): string | null {
    return this.#getSecret.get(username) ?? null;
  }

  ensureSecret(username: string, candidate: string, now: string): string {
    return this.#db.transaction(() => {
      if (this.#userExists.get(username) === undefined) throw notFound('user', username);
      this.#insertSecret.run(username, candidate, now, now);
      return this.#getSecret.get(username) ?? candidate;
    }).immediate();
  }

  setSecret(username: string, secret: string, now: string): void {
    this.#db.transaction(() => {
      if (this.#userExists.get(username) === undefined) throw notFound('user', username);
      this.#updateSecret.run(username, secret, now, now, secret);
    }).immediate();
  }

  setAgentWebhook(agentId: string, url: string | null): void {
    this.#db.transaction(() => {
      if (this.#agentExists.get(agentId) === undefined) throw notFound('agent', agentId);
      if (url === null) this.#clearAgentWebhook.run(agentId);
      else this.#setAgentWebhook.run(agentId, url);
    }).immediate();
  }

  getAgentWebhook(agentId: string): string | null {
    return this.#getAgentWebhook.get(agentId) ?? null;
  }

  createDelivery(delivery: NewWebhookDelivery): void {
    run(() => this.#insertDelivery.run(delivery), {
      conflict: () => `webhook delivery "${delivery.id}" already exists`,
      foreignKey: () => `unknown agent "${delivery.agent_id}"`,
    });
  }

  claim(claim: WebhookClaim): WebhookDeliveryRecord[] {
    const rows = run(() => this.#claim.all(claim));
    // RETURNING gives no order of its own.
    return rows.sort((a, b) => (a.next_attempt_at < b.next_attempt_at ? -1 : a.next_attempt_at > b.next_attempt_at ? 1 : a.id < b.id ? -1 : 1));
  }

  recordAttempt(deliveryId: string, claimant: string, attempt: WebhookAttemptRecord, outcome: WebhookAttemptOutcome): boolean {
    return this.#db.transaction(() => {
      const changed = this.#finish.run({ id: deliveryId, claimant, attempts: attempt.attempt, ...outcome }).changes;
      if (changed === 0) return false;
      this.#insertAttempt.run(deliveryId, attempt.attempt, attempt.at, attempt.status_code, attempt.error, attempt.duration_ms);
      return true;
    }).immediate();
  }

  listOfRun(runId: string): WebhookDeliveryWithAttempts[] {
    const attempts = new Map<string, WebhookAttemptRecord[]>();
    for (const { delivery_id, ...attempt } of this.#attemptsOfRun.all(runId)) {
      const list = attempts.get(delivery_id) ?? [];
      list.push(attempt);
      attempts.set(delivery_id, list);
    }
    return this.#listOfRun.all(runId).map((d) => ({ ...d, attempt_log: attempts.get(d.id) ?? [] }));
  }
}
