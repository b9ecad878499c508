/**
 * REST routes for webhooks (webhooks/): the caller's signing secret (read, rotate) and the
 * deliveries of one run with every attempt. The secret is a credential: its routes need the
 * `keys:write` scope, like API keys, so a read-only key cannot learn it; it is never logged and
 * a rotation is audited without it.
 */
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';
import type { Principal } from '../contract/models.js';
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';
import { WEBHOOK_EVENTS, type WebhookDeliveryWithAttempts, type WebhookStore } from '../contract/webhooks.js';
import type { WebhookSecrets } from '../webhooks/secrets.js';
import { WEBHOOK_SECRET_PATTERN } from '../webhooks/signing.js';
import { AGENT_ID_PATTERN } from './agents.js';

/** How the deliveries route finds a run the caller may see (RunService.get: `not_found` for another user's). */
export interface WebhookRunLookup {
  get(principal: Principal, agentRef: string, runId: string): Promise<{ id: string; agent_id: string }>;
}

export interface WebhookRouteDeps {
  secrets: WebhookSecrets;
  /** Where rotations are recorded. Default {@link noAudit}. */
  audit?: AuditRecorder;
  /** Serves `GET …/runs/{run}/deliveries` with `store`. Default none (that route is absent). */
  runs?: WebhookRunLookup;
  /** The deliveries, with `runs`. */
  store?: Pick<WebhookStore, 'listWebhookDeliveries'>;
}

const secretSchema: JsonSchema = {
  type: 'object',
  properties: {
    secret: {
      type: 'string',
      pattern: WEBHOOK_SECRET_PATTERN,
      description: 'Standard Webhooks signing secret: the HMAC-SHA256 key is the base64 after whsec_, decoded',
    },
  },
  required: ['secret'],
  additionalProperties: false,
};

const timestampSchema: JsonSchema = { type: 'string', format: 'date-time' };

const attemptSchema: JsonSchema = {
  type: 'object',
  properties: {
    attempt: { type: 'integer', minimum: 1 },
    at: timestampSchema,
    status_code: { type: ['integer', 'null'], description: "The receiver's HTTP status; null when no answer came" },
    error: { type: ['string', 'null'], description: 'Why no answer came (timeout, refused connection, refused address); null on an answer' },
    duration_ms: { type: 'integer', minimum: 0 },
  },
  required: ['attempt', 'at', 'status_code', 'error', 'duration_ms'],
  additionalProperties: false,
};

/** One delivery as `GET …/deliveries` lists it. */
export const WEBHOOK_DELIVERY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', pattern: '^msg_[0-9a-f]{32}$', description: 'The webhook-id header (the same on every attempt)' },
    event: { type: 'string', enum: [...WEBHOOK_EVENTS] },
    url: { type: 'string' },
    status: { type: 'string', enum: ['pending', 'delivered', 'failed'] },
    attempts: { type: 'array', items: attemptSchema },
    created_at: timestampSchema,
    delivered_at: { anyOf: [timestampSchema, { type: 'null' }] },
  },
  required: ['id', 'event', 'url', 'status', 'attempts', 'created_at', 'delivered_at'],
  additionalProperties: false,
};

const deliveriesSchema: JsonSchema = {
  type: 'object',
  properties: { deliveries: { type: 'array', items: WEBHOOK_DELIVERY_SCHEMA } },
  required: ['deliveries'],
  additionalProperties: false,
};

const runParamsSchema: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', pattern: AGENT_ID_PATTERN },
    run: { type: 'string', pattern: '^run_[0-9a-f]{24}$' },
  },
  required: ['id', 'run'],
  additionalProperties: false,
};

function toDeliveryResource(d: WebhookDeliveryWithAttempts) {
  return { id: d.id, event: d.event, url: d.url, status: d.status, attempts: d.attempt_log, created_at: d.created_at, delivered_at: d.delivered_at };
}

/**
 * - GET /v1/auth/webhook-secret (keys:write) → {secret}: the caller's, made on first use
 * - POST /v1/auth/webhook-secret/rotate (keys:write) → {secret}: a new one, used from the next attempt on
 * - GET /v1/agents/:id/runs/:run/deliveries (agents:read) → {deliveries}: oldest first, with attempts
 */
export function webhookRoutes(deps: WebhookRouteDeps): RouteDef[] {
  const { secrets, runs, store } = deps;
  const audit = deps.audit ?? noAudit;
  const routes: RouteDef[] = [
    {
      method: 'GET',
      path: '/v1/auth/webhook-secret',
      auth: 'user',
      scope: 'keys:write',
      summary: 'Your webhook signing secret (Standard Webhooks, whsec_…), made on first use; it signs every webhook of your runs',
      schemas: { response: secretSchema },
      errors: ['insufficient_scope'],
      handler: async (_input, ctx) => ({ secret: await secrets.secretOf(principalOf(ctx).username) }),
    },
    {
      method: 'POST',
      path: '/v1/auth/webhook-secret/rotate',
      auth: 'user',
      scope: 'keys:write',
      summary: 'Replace your webhook signing secret; attempts from now on (retries too) are signed with the new one',
      schemas: { response: secretSchema },
      errors: ['insufficient_scope'],
      handler: async (_input, ctx) => {
        const principal = principalOf(ctx);
        const secret = await secrets.rotate(principal.username);
        audit.record(auditFromRoute(ctx, 'auth.webhook_secret_rotated', `user:${principal.username}`));
        return { secret };
      },
    },
  ];
  if (runs !== undefined && store !== undefined) {
    routes.push({
      method: 'GET',
      path: '/v1/agents/:id/runs/:run/deliveries',
      auth: 'user',
      scope: 'agents:read',
      summary: "A run's webhook deliveries, oldest first, each with its attempts (status code or error, duration)",
      schemas: { params: runParamsSchema, response: deliveriesSchema },
      // conflict: an ambiguous agent reference.
      errors: ['conflict'],
      handler: async (input: { params: { id: string; run: string } }, ctx) => {
        const run = await runs.get(principalOf(ctx), input.params.id, input.params.run);
        const deliveries = await store.listWebhookDeliveries(run.id);
        return { deliveries: deliveries.map(toDeliveryResource) };
      },
    });
  }
  return routes;
}
