/**
 * The audit seam: security-relevant actions are recorded through an {@link AuditRecorder}
 * (the audit log keeps them in the Store; tests and embedding apps may pass their own). An
 * entry names who did what to what, from where, under which request: never a secret (no
 * password, token, key or key hash), only names, ids and prefixes.
 */
import type { RouteContext } from './route.js';

/** What happened. Dotted `area.verb`; new actions are additive. */
export type AuditAction =
  | 'auth.login'
  | 'auth.login_failed'
  | 'auth.logout'
  | 'auth.tokens_revoked'
  | 'auth.password_changed'
  | 'key.created'
  | 'key.revoked'
  | 'user.created'
  | 'user.deleted'
  | 'user.updated'
  | 'image.pushed'
  | 'image.deleted'
  | 'agent.deleted';

export interface AuditEvent {
  action: AuditAction;
  /** The username acting, or null (a failed login has no actor yet). */
  actor: string | null;
  /** What was acted on, e.g. `user:alice`, `key:key_…`, `image:alice/bot:1`, `agent:<id>`. Null when none. */
  target: string | null;
  /** The client address. Null when not from a request. */
  address: string | null;
  /** The request id (X-Request-Id). Null when not from a request. */
  request_id: string | null;
  /** Extra non-secret facts (e.g. the new role, a key's scopes). Default none. */
  details?: Record<string, unknown>;
}

/** Records audit events; it must not throw (an audit failure is logged, never the caller's error). */
export interface AuditRecorder {
  record(event: AuditEvent): void;
}

/** Records nothing (the default until an audit log is configured). */
export const noAudit: AuditRecorder = { record: () => undefined };

/** An audit event from a route: actor, address and request id come from the request context. */
export function auditFromRoute(
  ctx: RouteContext,
  action: AuditAction,
  target: string | null,
  details?: Record<string, unknown>,
): AuditEvent {
  return {
    action,
    actor: ctx.principal?.username ?? null,
    target,
    address: ctx.remoteAddress,
    request_id: ctx.requestId,
    ...(details === undefined ? {} : { details }),
  };
}
