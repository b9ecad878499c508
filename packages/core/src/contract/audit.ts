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
  | 'auth.webhook_secret_rotated'
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

/** Reads the recorded entries (the audit route); the audit log implements it with {@link AuditRecorder}. */
export interface AuditReader {
  /** Entries oldest first, filtered and paged as {@link AuditQuery} says. */
  list(query: AuditQuery): Promise<AuditEntry[]>;
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

/** An audit event as stored: numbered and timed. `details` is `{}` when the event had none. */
export interface AuditEntry {
  /** Increasing, never reused: the cursor of `GET /v1/audit?since=`. */
  seq: number;
  /** When it was recorded (ISO 8601, UTC). */
  at: string;
  actor: string | null;
  /** An {@link AuditAction}; typed as text because rows written by a newer server may hold actions this one does not know. */
  action: string;
  target: string | null;
  address: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
}

/** An entry before the store numbers it. */
export type NewAuditEntry = Omit<AuditEntry, 'seq' | 'details'> & { details?: Record<string, unknown> };

/** What `listAudit` returns: every given field must match; oldest first. */
export interface AuditQuery {
  /** Only entries with seq greater than this (the previous page's `next`). Default 0. */
  since?: number;
  /** Only entries by this actor (a username). */
  actor?: string;
  /** Only entries of this action. */
  action?: string;
  /** At most this many. Default {@link AUDIT_DEFAULT_LIMIT}, at most {@link AUDIT_MAX_LIMIT}. */
  limit?: number;
}

/** Entries one audit page holds when no `limit` is given. */
export const AUDIT_DEFAULT_LIMIT = 100;
/** The largest `limit` of one audit page. */
export const AUDIT_MAX_LIMIT = 1000;
