/**
 * Webhook delivery (docs/ARCHITECTURE.md#webhooks). When a run makes a transition, the instance
 * that made it (RunService.onTransition fires only there) stores one delivery row; the
 * dispatcher of every instance polls for due deliveries and leases them with a compare-and-set
 * (`claimed_until`/`claimed_by`), so each attempt is made by one instance only: with three
 * instances on one database, the receiver still gets the event once. Each attempt is a signed
 * POST (Standard Webhooks), recorded; a 2xx delivers, anything else is retried with exponential
 * backoff and jitter until `retryForMs` after the event, then the delivery is `failed`.
 *
 * Exactly once holds while an attempt ends within its lease: the lease (default 60 s) outlasts
 * the request timeout (default 10 s) by far. A process killed mid-attempt leaves the lease to
 * run out; the next instance retries it, which the receiver sees as a retry of the same
 * `webhook-id` (the spec's way to deduplicate).
 */
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { isSentinelError } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { WebhookAttemptOutcome, WebhookDeliveryRecord, WebhookEvent, WebhookStore } from '../contract/webhooks.js';
import { errorCodeOf } from '../providers/http.js';
import { pinnedLookup, resolveAllowedAddresses, type HostResolver } from '../tools/net-policy.js';
import { discardBody } from '../undici-body.js';
import { sentinelVersion } from '../version.js';
import type { WebhookSecrets } from './secrets.js';
import { webhookHeaders } from './signing.js';
import { parseWebhookUrl } from './url.js';

/** What a delivery needs of a run: who owns it, where it goes. The whole record is the payload's `data`. */
export interface WebhookRun {
  id: string;
  agent_id: string;
  owner: string;
  /** The run's own URL, else null (the agent's default is then used, when it has one). */
  webhook: string | null;
}

/** A run's transitions that are announced (RunService.onTransition's events). */
export type WebhookTransition = 'completed' | 'failed' | 'cancelled' | 'requires_action';

/** The body of every webhook POST (`data` is the run record as `GET …/runs/{run}` shows it). */
export interface WebhookPayload<R = unknown> {
  type: WebhookEvent;
  /** RFC 3339: when the transition was announced. */
  timestamp: string;
  data: R;
}

export interface WebhookDispatcherOptions {
  store: WebhookStore;
  secrets: WebhookSecrets;
  /** Default: silent. Secrets and payloads are never logged. */
  logger?: Logger;
  /** Deliver to loopback, private and link-local addresses (a lab, a test). Default false. */
  allowPrivateAddresses?: boolean;
  /** Host name resolver. Default `node:dns` lookup (every address). */
  resolver?: HostResolver;
  /** Time limit of one attempt (connect, headers, body), in ms. Default 10000. */
  timeoutMs?: number;
  /** First retry delay, in ms; doubled at every attempt, with jitter. Default 5000. */
  retryBaseMs?: number;
  /** Longest delay between two attempts, in ms. Default 3600000 (1 hour). */
  retryCapMs?: number;
  /** How long after the event attempts go on, in ms; then the delivery is `failed`. Default 86400000 (24 hours). */
  retryForMs?: number;
  /** How often every instance looks for due deliveries, in ms. Default 1000. */
  pollIntervalMs?: number;
  /** How long a claimed delivery is held by its instance, in ms; must exceed `timeoutMs`. Default 60000. */
  leaseMs?: number;
  /** Most deliveries attempted at once by this instance. Default 16. */
  concurrency?: number;
  /** Clock. Default `Date.now`. */
  now?: () => number;
}

/** What an embedding app sets (`SentinelApiOptions.webhooks`): the dispatcher's knobs, with their defaults. */
export type WebhookOptions = Omit<WebhookDispatcherOptions, 'store' | 'secrets' | 'logger' | 'now'>;

const EVENT_OF: Readonly<Record<WebhookTransition, WebhookEvent>> = {
  completed: 'run.completed',
  failed: 'run.failed',
  cancelled: 'run.cancelled',
  requires_action: 'run.requires_action',
};

/** Longest `error` text kept for an attempt. */
const MAX_ERROR_LENGTH = 200;
/** Bytes of a receiver's answer read (then dropped): enough to reuse nothing, bounded. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** undici's codes for an attempt that ran out of time. */
const TIMEOUT_CODES: ReadonlySet<string> = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ABORT_ERR']);

/** `msg_` + 32 hex: a delivery id, the `webhook-id` header. */
export function newDeliveryId(): string {
  return `msg_${randomBytes(16).toString('hex')}`;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`webhooks option ${name} must be a positive integer, got ${value}`);
  return value;
}

/** Delivers runs' webhooks; one per instance ({@link start} it, {@link close} it at shutdown). */
export class WebhookDispatcher {
  readonly #store: WebhookStore;
  readonly #secrets: WebhookSecrets;
  readonly #log: Logger;
  readonly #policy: { allowPrivateAddresses: boolean; what: string; resolver?: HostResolver };
  readonly #timeoutMs: number;
  readonly #retryBaseMs: number;
  readonly #retryCapMs: number;
  readonly #retryForMs: number;
  readonly #pollIntervalMs: number;
  readonly #leaseMs: number;
  readonly #concurrency: number;
  readonly #now: () => number;
  readonly #userAgent = `SentinelStacks-Webhooks/${sentinelVersion()}`;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #storing = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #pollAgain = false;
  #closed = false;
  #started = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#store = options.store;
    this.#secrets = options.secrets;
    this.#log = options.logger ?? silentLogger;
    this.#policy = { allowPrivateAddresses: options.allowPrivateAddresses === true, what: 'webhook', ...(options.resolver ? { resolver: options.resolver } : {}) };
    this.#timeoutMs = positive('timeoutMs', options.timeoutMs ?? 10_000);
    this.#retryBaseMs = positive('retryBaseMs', options.retryBaseMs ?? 5000);
    this.#retryCapMs = positive('retryCapMs', options.retryCapMs ?? 3_600_000);
    this.#retryForMs = positive('retryForMs', options.retryForMs ?? 86_400_000);
    this.#pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.#leaseMs = positive('leaseMs', options.leaseMs ?? 60_000);
    this.#concurrency = positive('concurrency', options.concurrency ?? 16);
    this.#now = options.now ?? Date.now;
    if (this.#leaseMs <= this.#timeoutMs) throw new RangeError('webhooks option leaseMs must exceed timeoutMs (an attempt must end within its lease)');
  }

  /** True when loopback and private targets are allowed (the edge checks URLs with the same policy). */
  get allowPrivateAddresses(): boolean {
    return this.#policy.allowPrivateAddresses;
  }

  /** Starts polling for due deliveries (every `pollIntervalMs`). Idempotent. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#schedule(0);
  }

  /**
   * Stores the delivery of one transition of `run` (nothing when neither the run nor its agent
   * names a webhook) and attempts it at once on this instance. Returns the stored delivery, or
   * null. Call it on the instance that made the transition, once per transition.
   */
  enqueue<R extends WebhookRun>(run: R, transition: WebhookTransition): Promise<WebhookDeliveryRecord | null> {
    const stored = this.#storeDelivery(run, transition);
    // close() waits for these: a transition made while shutting down is still stored before the Store closes.
    const tracked = stored.then(() => undefined, () => undefined);
    this.#storing.add(tracked);
    void tracked.finally(() => this.#storing.delete(tracked));
    return stored;
  }

  async #storeDelivery<R extends WebhookRun>(run: R, transition: WebhookTransition): Promise<WebhookDeliveryRecord | null> {
    const url = run.webhook ?? (await this.#store.getAgentWebhook(run.agent_id));
    if (url === null) return null;
    const nowMs = this.#now();
    const now = new Date(nowMs).toISOString();
    const payload: WebhookPayload<R> = { type: EVENT_OF[transition], timestamp: now, data: run };
    const delivery = {
      id: newDeliveryId(),
      run_id: run.id,
      agent_id: run.agent_id,
      owner: run.owner,
      event: payload.type,
      url,
      payload: JSON.stringify(payload),
      created_at: now,
      next_attempt_at: now,
    };
    await this.#store.createWebhookDelivery(delivery);
    this.#log.debug('webhook delivery queued', { delivery_id: delivery.id, run_id: run.id, event: delivery.event });
    this.poll();
    return { ...delivery, status: 'pending', attempts: 0, claimed_until: null, delivered_at: null };
  }

  /** Looks for due deliveries now (after an enqueue, or in tests), besides the regular polls. */
  poll(): void {
    if (this.#closed || !this.#started) return;
    if (this.#polling !== undefined) {
      // One poll at a time; one more right after it, so nothing queued meanwhile waits a whole interval.
      this.#pollAgain = true;
      return;
    }
    this.#polling = this.#pollOnce()
      .catch((err: unknown) => this.#log.warn('webhook poll failed', { reason: err instanceof Error ? err.message : String(err) }))
      .finally(() => {
        this.#polling = undefined;
        if (this.#pollAgain && !this.#closed) {
          this.#pollAgain = false;
          this.poll();
        }
      });
  }

  /** Stops polling and waits for the attempts under way (each bounded by `timeoutMs`). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await Promise.allSettled([...this.#storing]);
    await this.#polling;
    await Promise.allSettled([...this.#inFlight]);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.poll();
      this.#schedule(this.#pollIntervalMs);
    }, delayMs);
    // Polling alone must not keep a process alive.
    this.#timer.unref();
  }

  async #pollOnce(): Promise<void> {
    while (!this.#closed) {
      const room = this.#concurrency - this.#inFlight.size;
      if (room <= 0) return;
      const nowMs = this.#now();
      const claimant = `${randomBytes(12).toString('hex')}`;
      const claimed = await this.#store.claimWebhookDeliveries({
        now: new Date(nowMs).toISOString(),
        until: new Date(nowMs + this.#leaseMs).toISOString(),
        claimant,
        limit: room,
      });
      for (const delivery of claimed) {
        const attempt = this.#attempt(delivery, claimant).catch((err: unknown) =>
          this.#log.warn('webhook attempt could not be recorded', { delivery_id: delivery.id, reason: err instanceof Error ? err.message : String(err) }),
        );
        this.#inFlight.add(attempt);
        void attempt.finally(() => {
          this.#inFlight.delete(attempt);
          // A slot came free: deliveries left waiting for one need not wait for the next interval.
          if (claimed.length === room) this.poll();
        });
      }
      if (claimed.length < room) return;
    }
  }

  /** One POST of a leased delivery, recorded with its outcome (which also ends the lease). */
  async #attempt(delivery: WebhookDeliveryRecord, claimant: string): Promise<void> {
    const number = delivery.attempts + 1;
    const startedMs = this.#now();
    let statusCode: number | null = null;
    let error: string | null = null;
    // A refused address or a vanished owner will not get better by waiting.
    let permanent = false;
    try {
      const secret = await this.#secrets.secretOf(delivery.owner);
      const url = parseWebhookUrl(delivery.url);
      const addresses = await resolveAllowedAddresses(url.hostname, this.#policy);
      const agent = new Agent({
        connect: { lookup: pinnedLookup(addresses), timeout: this.#timeoutMs },
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      try {
        // undici's request() follows no redirects: a 3xx is an answer, and not a 2xx.
        const response = await request(url, {
          method: 'POST',
          dispatcher: agent,
          signal: AbortSignal.timeout(this.#timeoutMs),
          headers: {
            ...webhookHeaders(secret, { id: delivery.id, timestamp: Math.floor(startedMs / 1000), body: delivery.payload }),
            'content-type': 'application/json',
            'user-agent': this.#userAgent,
          },
          body: delivery.payload,
        });
        statusCode = response.statusCode;
        await drain(response.body);
      } finally {
        agent.destroy().catch(() => undefined);
      }
    } catch (err) {
      if (isSentinelError(err)) {
        permanent = err.code === 'forbidden' || err.code === 'not_found' || err.code === 'invalid_request';
        error = err.message;
      } else {
        const code = errorCodeOf(err);
        const timedOut = (err as { name?: unknown }).name === 'TimeoutError' || (code !== undefined && TIMEOUT_CODES.has(code));
        error = timedOut ? `no answer within ${this.#timeoutMs} ms` : (code ?? (err instanceof Error ? err.message : String(err)));
      }
      error = error.slice(0, MAX_ERROR_LENGTH);
    }
    const endedMs = this.#now();
    const outcome = this.#outcome(delivery, number, statusCode, permanent, endedMs);
    const recorded = await this.#store.recordWebhookAttempt(
      delivery.id,
      claimant,
      { attempt: number, at: new Date(startedMs).toISOString(), status_code: statusCode, error, duration_ms: Math.max(0, Math.round(endedMs - startedMs)) },
      outcome,
    );
    const fields = { delivery_id: delivery.id, run_id: delivery.run_id, event: delivery.event, attempt: number, status_code: statusCode, error, outcome: outcome.status };
    if (!recorded) this.#log.warn('webhook lease lost before the attempt was recorded', fields);
    else if (outcome.status === 'failed') this.#log.warn('webhook delivery failed for good', fields);
    else this.#log.debug('webhook attempt', fields);
  }

  #outcome(delivery: WebhookDeliveryRecord, attempt: number, statusCode: number | null, permanent: boolean, nowMs: number): WebhookAttemptOutcome {
    const now = new Date(nowMs).toISOString();
    if (statusCode !== null && statusCode >= 200 && statusCode < 300) return { status: 'delivered', next_attempt_at: now, delivered_at: now };
    const exponential = Math.min(this.#retryCapMs, this.#retryBaseMs * 2 ** Math.min(attempt - 1, 40));
    // "Equal jitter": at least half the delay, so retries of many deliveries spread out without
    // any of them coming back at once.
    const delay = exponential / 2 + Math.random() * (exponential / 2);
    const next = nowMs + delay;
    if (permanent || next > Date.parse(delivery.created_at) + this.#retryForMs) return { status: 'failed', next_attempt_at: now, delivered_at: null };
    return { status: 'pending', next_attempt_at: new Date(next).toISOString(), delivered_at: null };
  }
}

/** Reads (at most {@link MAX_ANSWER_BYTES} of) an answer and drops it, so the socket ends cleanly. */
async function drain(body: AsyncIterable<Buffer> & Parameters<typeof discardBody>[0]): Promise<void> {
  let read = 0;
  for await (const chunk of body) {
    read += chunk.length;
    if (read > MAX_ANSWER_BYTES) {
      discardBody(body);
      return;
    }
  }
}

/** What {@link deliverRunWebhooks} needs of the run layer: RunService's transition hook. */
export interface RunTransitions<R extends WebhookRun> {
  onTransition(listener: (run: R, event: WebhookTransition) => void): () => void;
}

/**
 * Queues a delivery for every transition `runs` makes on this instance (the hook fires only on
 * the instance whose compare-and-set won, so each transition is stored once). A failure to
 * store it is logged; the transition itself is never held up or undone. Returns the unsubscribe.
 */
export function deliverRunWebhooks<R extends WebhookRun>(runs: RunTransitions<R>, dispatcher: WebhookDispatcher, logger: Logger = silentLogger): () => void {
  return runs.onTransition((run, event) => {
    dispatcher.enqueue(run, event).catch((err: unknown) => {
      logger.error('webhook delivery could not be stored', { run_id: run.id, event, reason: err instanceof Error ? err.message : String(err) });
    });
  });
}
