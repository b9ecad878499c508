/**
 * The error catalogue: for each error code, what it means, its usual causes and what a client
 * should do. One source for `docs/errors.md` (generated from it, checked by a test), the
 * `/docs/errors` page and the `docs` field of every error body.
 */
import type { ErrorCode } from './errors.js';

export interface ErrorCatalogueEntry {
  /** A short title, e.g. "Not found". */
  title: string;
  /** What the code means, one or two sentences (Markdown inline syntax allowed). */
  meaning: string;
  /** Typical causes (Markdown inline syntax allowed). */
  causes: readonly string[];
  /** What the client should do about it. */
  remedy: string;
}

/** Every code's entry: a `Record` over the union, so a new code without an entry does not compile. */
export const ERROR_CATALOGUE: Readonly<Record<ErrorCode, ErrorCatalogueEntry>> = {
  invalid_request: {
    title: 'Invalid request',
    meaning: 'The request is malformed or fails the route\'s JSON Schema.',
    causes: ['A required field is missing or has the wrong type', 'A query parameter is out of range'],
    remedy: 'Fix the request; `details.issues` lists each problem with its JSON pointer.',
  },
  unauthorized: {
    title: 'Unauthorized',
    meaning: 'No valid credentials came with a request that needs them.',
    causes: ['No `Authorization: Bearer` header', 'The token expired or was revoked', 'Wrong username or password'],
    remedy: 'Log in again (`POST /v1/auth/login`) and send the new token.',
  },
  forbidden: {
    title: 'Forbidden',
    meaning: 'The caller is known but not allowed to do this.',
    causes: ['The route needs the admin role', 'The repository belongs to another user'],
    remedy: 'Ask an admin for the right, or act on your own resources.',
  },
  insufficient_scope: {
    title: 'Insufficient scope',
    meaning: 'The credential is valid but lacks the scope this route or socket needs (RFC 6750 §3.1).',
    causes: ['An API key created without the scope, e.g. `agents:read` only, used to create an agent', 'An API key used on a route only a login session may call (a password change)'],
    remedy: 'Use a key with the scope named in `WWW-Authenticate` and `details.scope`, or log in.',
  },
  not_found: {
    title: 'Not found',
    meaning: 'No such resource, or it belongs to another user.',
    causes: ['A mistyped id or name', 'The resource was deleted'],
    remedy: 'Check the id or name with the list route.',
  },
  method_not_allowed: {
    title: 'Method not allowed',
    meaning: 'The path exists but not with this method.',
    causes: ['Using GET where the route needs POST'],
    remedy: 'Use one of the methods in the `Allow` header.',
  },
  conflict: {
    title: 'Conflict',
    meaning: 'The request is valid but the current state does not allow it.',
    causes: ['The name is taken', 'The image is still in use by an agent'],
    remedy: 'Read the message, change the state or the request, and retry.',
  },
  payload_too_large: {
    title: 'Payload too large',
    meaning: 'A body, frame or fetched object is over its size cap.',
    causes: ['A request body over the route\'s cap', 'JSON nested too deeply'],
    remedy: 'Send less; the message names the cap.',
  },
  unsupported_media_type: {
    title: 'Unsupported media type',
    meaning: 'The body\'s `Content-Type` is missing or not one the route accepts.',
    causes: ['No `Content-Type: application/json` header'],
    remedy: 'Send a content type the route lists in the API reference.',
  },
  rate_limited: {
    title: 'Rate limited',
    meaning: 'Too many requests or attempts in a short time.',
    causes: ['Repeated failed logins'],
    remedy: 'Wait for the seconds in `Retry-After`, then retry.',
  },
  quota_exceeded: {
    title: 'Quota exceeded',
    meaning: "An admin-set quota of the user is used up: model tokens or turns per UTC day, or agents owned at once.",
    causes: ['A turn started after the day\'s turns or tokens were used up (no model was called)', 'Creating an agent beyond the number allowed'],
    remedy: 'Wait for 00:00 UTC (daily quotas), delete an agent, or ask an admin to raise the quota; `GET /v1/auth/me` shows usage against quota.',
  },
  agent_busy: {
    title: 'Agent busy',
    meaning: 'The agent cannot take another message now.',
    causes: ['Its queue of waiting turns is full'],
    remedy: 'Wait for the running turns to end, then send again.',
  },
  upstream_error: {
    title: 'Upstream error',
    meaning: 'A service this server calls (a model provider, a registry) failed.',
    causes: ['The provider is down or refused the API key', 'The registry answered an error'],
    remedy: 'Retry later; the message names who failed.',
  },
  upstream_timeout: {
    title: 'Upstream timeout',
    meaning: 'A call to another service ran past its deadline or below its minimum rate.',
    causes: ['A slow registry transfer'],
    remedy: 'Retry later, or raise `--registry-timeout`.',
  },
  unavailable: {
    title: 'Unavailable',
    meaning: 'Something this server needs is unavailable right now.',
    causes: ['The store or the event bus is unreachable', 'The server is shutting down'],
    remedy: 'Retry after a short wait, on another instance if there is one.',
  },
  internal: {
    title: 'Internal error',
    meaning: 'A bug on the server\'s side; the details are in its log, under the request id.',
    causes: ['An unexpected exception'],
    remedy: 'Report it with the `X-Request-Id` of the response.',
  },
};

/** The path of the catalogue page; `docs` fields point at `#<code>` on it. */
export const ERROR_DOCS_PATH = '/docs/errors';

/** The relative URL of a code's entry, e.g. `/docs/errors#not_found`. */
export function errorDocsUrl(code: ErrorCode): string {
  return `${ERROR_DOCS_PATH}#${code}`;
}
