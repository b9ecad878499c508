/**
 * `GET /v1/audit`: the audit log (auth/audit-log.ts) for admins, oldest first, filtered by actor
 * and action and paged by seq. Admin-only with the `admin` scope: the log names every user's
 * logins and addresses.
 */
import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, type AuditEntry, type AuditReader } from '../contract/audit.js';
import type { JsonSchema, RouteDef } from '../contract/route.js';

const AUDIT_QUERY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Only entries after this seq (the previous page\'s next)' },
    actor: { type: 'string', minLength: 1, maxLength: 64, description: 'Only entries by this username' },
    action: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[a-z_]+\\.[a-z_]+$', description: 'Only entries of this action, e.g. auth.login_failed' },
    limit: { type: 'integer', minimum: 1, maximum: AUDIT_MAX_LIMIT, default: AUDIT_DEFAULT_LIMIT },
  },
  additionalProperties: false,
};

const NULLABLE_STRING: JsonSchema = { type: ['string', 'null'] };

/** One entry as the route answers it. */
export const AUDIT_ENTRY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    seq: { type: 'integer', minimum: 1 },
    at: { type: 'string', format: 'date-time' },
    actor: { ...NULLABLE_STRING, description: 'The username acting; null for a failed login' },
    action: { type: 'string', description: 'What happened, e.g. auth.login, user.deleted, image.pushed' },
    target: { ...NULLABLE_STRING, description: 'What was acted on, e.g. user:alice, image:alice/bot:1, agent:<id>' },
    address: { ...NULLABLE_STRING, description: 'The client address' },
    request_id: { ...NULLABLE_STRING, description: 'The X-Request-Id of the request' },
    details: { type: 'object', description: 'Non-secret facts about the action (never a password, token or key)' },
  },
  required: ['seq', 'at', 'actor', 'action', 'target', 'address', 'request_id', 'details'],
  additionalProperties: false,
};

const AUDIT_PAGE_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    entries: { type: 'array', items: AUDIT_ENTRY_SCHEMA },
    next: { type: ['integer', 'null'], description: 'The since of the next page: the last seq when the page is full, null when this page reached the end' },
  },
  required: ['entries', 'next'],
  additionalProperties: false,
};

/** GET /v1/audit (admin). */
export function auditRoutes(deps: { audit: AuditReader }): RouteDef[] {
  const { audit } = deps;
  return [
    {
      method: 'GET',
      path: '/v1/audit',
      auth: 'admin',
      scope: 'admin',
      summary: 'The audit log: security-relevant actions (logins, user, key, token and image changes), oldest first, paged by seq',
      schemas: { query: AUDIT_QUERY_SCHEMA, response: AUDIT_PAGE_SCHEMA },
      errors: ['invalid_request'],
      handler: async (input: { query: { since?: number; actor?: string; action?: string; limit: number } }) => {
        const { limit } = input.query;
        const entries: AuditEntry[] = await audit.list(input.query);
        const last = entries.at(-1);
        return { entries, next: entries.length === limit && last !== undefined ? last.seq : null };
      },
    },
  ];
}
