/**
 * Webhook deliveries as the Store keeps them (migration 12; webhooks/dispatcher.ts creates and
 * delivers them). A delivery is one event of one run to one URL; each POST of it is an attempt.
 */

/** The events a run's webhook hears, one per transition (Standard Webhooks `type`). */
export const WEBHOOK_EVENTS = ['run.completed', 'run.failed', 'run.cancelled', 'run.requires_action'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** `pending` until a 2xx (`delivered`) or until retries run out (`failed`). */
export type WebhookDeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One POST of a delivery. */
export interface WebhookAttemptRecord {
  /** 1, 2, 3… per delivery. */
  attempt: number;
  /** RFC 3339: when the request was sent. */
  at: string;
  /** The receiver's HTTP status; null when no answer came (refused, timed out). */
  status_code: number | null;
  /** Why the attempt failed without a status (or a short note); null on an answer. */
  error: string | null;
  duration_ms: number;
}

/** A delivery as stored. */
export interface WebhookDeliveryRecord {
  /** `msg_` + 32 hex: the `webhook-id` header, the same on every retry (receivers dedupe by it). */
  id: string;
  run_id: string;
  agent_id: string;
  /** The run's owner: whose secret signs it. */
  owner: string;
  event: WebhookEvent;
  url: string;
  /** The exact JSON body POSTed (the signature is over these bytes). */
  payload: string;
  status: WebhookDeliveryStatus;
  /** How many attempts were made. */
  attempts: number;
  /** RFC 3339: the next attempt is due from then (pending only). */
  next_attempt_at: string;
  /** RFC 3339: an instance holds the delivery until then (its lease); null when nobody does. */
  claimed_until: string | null;
  created_at: string;
  delivered_at: string | null;
}

/** A new delivery: due at once, unclaimed, no attempts. */
export type NewWebhookDelivery = Pick<WebhookDeliveryRecord, 'id' | 'run_id' | 'agent_id' | 'owner' | 'event' | 'url' | 'payload' | 'created_at' | 'next_attempt_at'>;

/** A delivery with its attempts, oldest first (`GET …/runs/{run}/deliveries`). */
export interface WebhookDeliveryWithAttempts extends WebhookDeliveryRecord {
  attempt_log: WebhookAttemptRecord[];
}

/** What {@link WebhookStore.claimWebhookDeliveries} takes. */
export interface WebhookClaim {
  /** RFC 3339: deliveries due at or before this whose lease (if any) ended before it. */
  now: string;
  /** RFC 3339: the lease granted. */
  until: string;
  /** Unique per claim: later writes of the claimer are accepted only while this claim holds. */
  claimant: string;
  /** At most this many. */
  limit: number;
}

/** How an attempt left the delivery, for {@link WebhookStore.recordWebhookAttempt}. */
export interface WebhookAttemptOutcome {
  status: WebhookDeliveryStatus;
  /** RFC 3339, when `status` stays pending: the next attempt's time. */
  next_attempt_at: string;
  delivered_at: string | null;
}

/** The Store's part for webhooks (SQLite and PostgreSQL; specs in test/webhook-store.test.ts). */
export interface WebhookStore {
  /** The user's signing secret (`whsec_…`), or null when none was made yet (or the user is unknown). */
  getWebhookSecret(username: string): Promise<string | null>;
  /**
   * The user's secret, storing `candidate` first when there is none, atomically (instances
   * racing on a first use all get the same secret). `not_found` for an unknown user.
   */
  ensureWebhookSecret(username: string, candidate: string, now: string): Promise<string>;
  /** Replaces the user's secret (rotation). `not_found` for an unknown user. */
  setWebhookSecret(username: string, secret: string, now: string): Promise<void>;

  /** Sets (or with null clears) an agent's default webhook URL. `not_found` for an unknown agent. */
  setAgentWebhook(agentId: string, url: string | null): Promise<void>;
  /** The agent's default webhook URL, or null. Goes with the agent. */
  getAgentWebhook(agentId: string): Promise<string | null>;

  /** Stores a new delivery; `conflict` for a duplicate id, `invalid_request` for an unknown agent. */
  createWebhookDelivery(delivery: NewWebhookDelivery): Promise<void>;
  /**
   * Leases due pending deliveries to one claimant (a compare-and-set per row: across instances
   * each delivery is held by at most one at a time), oldest due first; returns them as leased.
   */
  claimWebhookDeliveries(claim: WebhookClaim): Promise<WebhookDeliveryRecord[]>;
  /**
   * Records an attempt and the delivery's new state, and ends the lease, in one transaction,
   * only while `claimant` still holds the delivery; false (nothing written) when it lost it.
   */
  recordWebhookAttempt(deliveryId: string, claimant: string, attempt: WebhookAttemptRecord, outcome: WebhookAttemptOutcome): Promise<boolean>;
  /** The run's deliveries, oldest first, each with its attempts. */
  listWebhookDeliveries(runId: string): Promise<WebhookDeliveryWithAttempts[]>;
}
