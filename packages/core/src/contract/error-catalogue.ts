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
    meaning: 'The request (or WebSocket frame) is malformed or fails the route\'s JSON Schema; nothing was changed.',
    causes: [
      'A body field is missing, has the wrong type or is not allowed: the message reads `invalid body: /name: is required`',
      'A path or query parameter out of range, e.g. a `limit` over its maximum or a `since` that is not a number',
      'A body that is not valid JSON (or YAML, on `POST /v1/images`), not valid UTF-8, or empty where one is required',
      'JSON nested deeper than the route allows, or a field larger than its character budget',
      'A malformed percent escape in the path, or an image reference or agent definition that does not parse',
      'A WebSocket frame that is not JSON or has an unknown `type` (sent back as an `error` frame; the socket stays open)',
    ],
    remedy: 'Fix the request and send it again; `details.issues` lists each schema problem with its JSON pointer (`path`) and `message`. Retrying it unchanged gets the same answer.',
  },
  unauthorized: {
    title: 'Unauthorized',
    meaning: 'No valid credentials came with a request that needs them. The response carries `WWW-Authenticate: Bearer`.',
    causes: [
      'No `Authorization: Bearer <token>` header (`authentication required`), or on a WebSocket neither the header nor the `sentinel.v1, bearer.<jwt>` subprotocol',
      'A token that is malformed or signed with another secret (`invalid token`), e.g. after the server\'s `--token-auth-secret` changed',
      'A token past its lifetime (`token expired`), revoked by a password change, or whose user was deleted',
      'A wrong username or password on `POST /v1/auth/login`',
    ],
    remedy: 'Log in again with `POST /v1/auth/login` and send the new token. A refused WebSocket upgrade answers this status before any socket opens.',
  },
  forbidden: {
    title: 'Forbidden',
    meaning: 'The caller is known but not allowed to do this; the message says which right is missing.',
    causes: [
      'An admin-only route (`/v1/users`, …) called by a plain user (`admin role required`)',
      'Creating, tagging or deleting images in a repository or namespace owned by another user, or under the reserved `sentinel/` namespace',
      'Pushing to a registry without the admin role or `can_push`, or naming a registry other than the server\'s',
      'Changing a password without the right `current_password`',
      'A tool call the agent\'s image does not list, or an `http_fetch` to a host outside `--http-fetch-allow-hosts` or to a private address',
    ],
    remedy: 'Act on your own resources, or ask an admin for the role or permission. Retrying does not help.',
  },
  insufficient_scope: {
    title: 'Insufficient scope',
    meaning: 'The credential is valid but lacks the scope this route or socket needs (RFC 6750 §3.1).',
    causes: ['An API key created without the scope, e.g. `agents:read` only, used to create an agent', 'An API key used on a route only a login session may call (a password change)'],
    remedy: 'Use a key with the scope named in `WWW-Authenticate` and `details.scope`, or log in.',
  },
  not_found: {
    title: 'Not found',
    meaning: 'No such resource, no such route, or a resource that belongs to another user (which is reported the same way, so ids cannot be probed).',
    causes: [
      'A mistyped agent id or name, image reference, user name or tag',
      'The resource was deleted (an agent\'s stream also ends when it is deleted)',
      'An unknown path under `/v1` (`no route for GET /v1/…`) or a WebSocket upgrade to a path that is not an endpoint',
    ],
    remedy: 'Check the id or name with the list route (`GET /v1/agents`, `GET /v1/images`) and the path in the API reference.',
  },
  method_not_allowed: {
    title: 'Method not allowed',
    meaning: 'The path exists but not with this method.',
    causes: ['Using `GET` where the route needs `POST`, or `PUT` on a route that has none'],
    remedy: 'Use one of the methods in the response\'s `Allow` header (an `OPTIONS` request lists them too).',
  },
  conflict: {
    title: 'Conflict',
    meaning: 'The request is valid but the current state does not allow it.',
    causes: [
      'A name that is taken: `user "x" already exists`, an agent name in use',
      'Deleting an image still used by an agent (`image … is used by 2 agent(s)`), or deleting yourself',
      'An agent reference that matches several agents (`details.matches` lists them)',
      'Sending a message to a stopped agent (`agent is stopped`), or reusing a `message_id` still in progress on a chat socket',
    ],
    remedy: 'Read the message, change the state (stop or delete the agents, pick another name, start the agent) or the request, then retry.',
  },
  payload_too_large: {
    title: 'Payload too large',
    meaning: 'A request body, a WebSocket frame or an image object is over its size cap. The server closes the connection after an HTTP 413 instead of reading the rest.',
    causes: [
      'A request body over the route\'s cap (`request body exceeds 1048576 bytes`): 1 MiB by default, smaller on the auth routes, the Sentinelfile of `POST /v1/images` and the registry routes',
      'A chat or events frame longer than the frame cap (sent back as an `error` frame)',
      'An image manifest, config or layer blob over its cap while importing or storing an image (`manifest is 9 bytes, more than the 8-byte limit`)',
    ],
    remedy: 'Send less: split the input, or shorten the message; the message names the cap. Retrying the same payload gets the same answer.',
  },
  unsupported_media_type: {
    title: 'Unsupported media type',
    meaning: 'The body\'s `Content-Type` is missing, not one the route accepts, or not UTF-8.',
    causes: [
      'No `Content-Type: application/json` header on a body (`Content-Type must be application/json`)',
      'YAML sent to a route that takes only JSON (only `POST /v1/images` also accepts `application/yaml`)',
      'A `charset` other than UTF-8',
    ],
    remedy: 'Send `Content-Type: application/json` (or a type the route lists in the API reference) with a UTF-8 body.',
  },
  rate_limited: {
    title: 'Rate limited',
    meaning: 'Too many requests, chat frames or failed logins in a short time; the response carries `Retry-After` in whole seconds (a chat `error` frame carries `retry_after`).',
    causes: [
      'More requests (or chat frames) of one class than the rate limit allows for this user, API key or client address (`--rate-limit-read`, `--rate-limit-write`, `--rate-limit-auth`, `--rate-limit-chat`)',
      'Repeated failed logins for one username from one address (5 free failures, then a doubling wait up to 15 minutes)',
      'Many failed logins from one address, whatever the usernames (20 free failures), shared by all instances when they share `--redis`',
      'Many attempts for one username still in flight at once',
    ],
    remedy: 'Wait for the seconds in `Retry-After` (the message says them too), then retry; pace requests by the `RateLimit` header. For logins, further failures make the wait longer.',
  },
  quota_exceeded: {
    title: 'Quota exceeded',
    meaning: "An admin-set quota of the user is used up: model tokens or turns per UTC day, or agents owned at once.",
    causes: ['A turn started after the day\'s turns or tokens were used up (no model was called)', 'Creating an agent beyond the number allowed'],
    remedy: 'Wait for 00:00 UTC (daily quotas), delete an agent, or ask an admin to raise the quota; `GET /v1/auth/me` shows usage against quota.',
  },
  agent_busy: {
    title: 'Agent busy',
    meaning: 'The agent cannot take another message now; nothing was queued. On a chat socket it comes as an `error` frame and the socket stays open.',
    causes: [
      'Its queue of waiting turns is full: `agent is busy: 8 messages are already waiting` behind the running turn (the runtime\'s `queueLimit`, 8 by default)',
      'Too many `tool_request` frames in progress on one chat socket',
    ],
    remedy: 'Wait for a running turn to end (its `stream_end` frame), then send again; back off rather than retrying at once.',
  },
  approval_timeout: {
    title: 'Approval timed out',
    meaning:
      'A run waited for a person to approve or refuse a tool call (`requires_action`) and nobody decided within the approval timeout; the run ended `failed` with this code and the calls were answered as not run.',
    causes: [
      'No `tool_approval` frame or `POST /v1/agents/{id}/runs/{run}/approvals` for a `tool_approval_required` request before its `expires_at`',
      'An approval timeout (`--approval-timeout`, 1 hour by default) shorter than the people who decide need',
    ],
    remedy: 'Send the message again and decide before `expires_at`, or start the server with a longer `--approval-timeout`.',
  },
  idempotency_conflict: {
    title: 'Idempotency conflict',
    meaning: 'A run with this idempotency key (a chat `message_id`, or an `Idempotency-Key` header) already exists for the agent, made from a different request; nothing was started.',
    causes: [
      'The same `message_id` or `Idempotency-Key` sent again within 24 hours with another content or options',
    ],
    remedy: 'Send the same request again to get the existing run, or use a new key for a new request.',
  },
  interrupted: {
    title: 'Run interrupted',
    meaning: 'The server that ran the run stopped before the run ended (a crash, `kill -9`, a shutdown); the run ended `failed` with this code and keeps the partial answer.',
    causes: [
      'The server was restarted or killed in the middle of the answer',
      'With several instances: the instance that ran it stopped sending its heartbeat',
    ],
    remedy: 'Send the message again (with a new `message_id`).',
  },
  upstream_error: {
    title: 'Upstream error',
    meaning: 'A service this server calls failed: a model provider, a registry, or a tool\'s target. The message starts with who failed.',
    causes: [
      'A model provider that is down, unreachable, or refused the API key or the model (`openai: cannot connect to …`, `the stream stalled`)',
      'A provider stream that ended early or held data that is not JSON',
      'A registry that refused the credentials, answered an HTTP error, sent a digest that does not match, or an object over its cap',
      'An `http_fetch` or `web_search` target that cannot be resolved or failed',
    ],
    remedy: 'Retry later; if it persists, check the named service and the server\'s settings for it (`--openai-base-url`, `--ollama-host`, `--registry`, credentials).',
  },
  upstream_timeout: {
    title: 'Upstream timeout',
    meaning: 'A registry push or pull ran past its deadline or moved data below its minimum rate, and was stopped.',
    causes: [
      'A transfer longer than `--registry-timeout` (600 s by default; 0 disables the deadline)',
      'A transfer averaging fewer than `--registry-min-rate` bytes per second (1024 by default) over `--registry-rate-window` seconds',
      'A registry that stopped answering mid-transfer',
    ],
    remedy: 'Retry later; for a slow but healthy registry the operator can raise `--registry-timeout` or lower `--registry-min-rate`.',
  },
  unavailable: {
    title: 'Unavailable',
    meaning: 'Something this server needs is unavailable right now, or not configured; the request may succeed later or on another instance.',
    causes: [
      'The store (SQLite file, PostgreSQL) or the event bus (Redis) is unreachable: `GET /v1/ready` answers 503 naming which, with `details`',
      'The server is shutting down (WebSocket streams then close with 1001)',
      'A stream whose client reads too slowly (SSE/NDJSON ends with an error item; a WebSocket closes with 1008)',
      'A turn that lost its agent lock, or a tool that timed out or is not configured (`set --web-search-url`, `set --http-fetch-allow-hosts`)',
      'An image layout being written by another process',
    ],
    remedy: 'Retry after a short wait, on another instance if there is one; for "not configured" messages ask the operator to set the named flag.',
  },
  internal: {
    title: 'Internal error',
    meaning: 'A bug on the server\'s side. The client sees only `internal server error`; the details are in the server\'s log under the request id. A WebSocket closes with 1011.',
    causes: ['An unexpected exception or a broken invariant in the server'],
    remedy: 'Retry once; if it persists, report it with the response\'s `X-Request-Id` so the operator can find the log line.',
  },
};

/** The path of the catalogue page; `docs` fields point at `#<code>` on it. */
export const ERROR_DOCS_PATH = '/docs/errors';

/** The relative URL of a code's entry, e.g. `/docs/errors#not_found`. */
export function errorDocsUrl(code: ErrorCode): string {
  return `${ERROR_DOCS_PATH}#${code}`;
}
