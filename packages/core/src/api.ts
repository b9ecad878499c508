/** The knobs of runs, as `createSentinelApi({ runs })` takes them. */
export interface RunsOptions {
  /**
   * Journal every frame of a run in the Store. Default true. `false` exists only as the
   * benchmark's baseline (frames are then not written, so a run cannot be resumed once it
   * ended, nor from another instance); do not turn it off in production.
   */
  journal?: boolean;
  /** Longest time a frame of a live run waits before it is written, in ms. Default 200. */
  flushIntervalMs?: number;
  /** How long a `message_id` / `Idempotency-Key` names one run, in ms. Default 86400000 (24 h). */
  idempotencyWindowMs?: number;
  /** With several instances: this instance's liveness heartbeat, in ms (its key lives 3 beats). Default 5000. */
  heartbeatMs?: number;
  /** With several instances: how often runs of instances that are gone are failed `interrupted`, in ms. Default 10000. */
  sweepIntervalMs?: number;
  /** How long a run waits for a person to decide a tool approval before it fails `approval_timeout`, in ms. Default 3600000 (1 h). */
  approvalTimeoutMs?: number;
  /** How often runs whose approval expired are looked for, in ms. Default 5000. */
  approvalSweepIntervalMs?: number;
}

/**
 * The seam a transport holds (docs/ARCHITECTURE.md#the-seam): `SentinelApiSurface` (the
 * compiled route table, `authenticate`, `invoke`), how one route is compiled and invoked
 * (schemas, JSON limits, result shape), and the options of `createSentinelApi`. The
 * composition root that wires the services and builds a surface is create-api.ts.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { adminRequired, authenticationRequired, insufficientScope, invalidRequest, sessionRequired, withResponseHeaders } from './contract/errors.js';
import { rateLimited, rateLimitHeaders, ratePartitionOf, type RateDecision, type RateLimiter, type RateLimitSettings } from './auth/rate-limit.js';
import type { RateClass } from './contract/rate-class.js';
import { hasScope } from './contract/scopes.js';
import type { AuditRecorder } from './contract/audit.js';
import type { Logger } from './contract/logger.js';
import type { OidcOptions } from './auth/oidc.js';
import type { Principal } from './contract/models.js';
import type { CredentialRevocationFeed } from './auth/revocations.js';
import type { WebSocketEndpointName } from './protocol/endpoints.js';
import type { RegistrySettings } from './registry/service.js';
import type { ProviderOptions } from './providers/config.js';
import { isPreparedJson, isRouteReply, type BodyFormat, type RouteContext, type RouteDef } from './contract/route.js';
import type { RuntimeOptions } from './runtime/runtime.js';
import type { Store } from './store/types.js';
import type { SentinelMetrics, SentinelMetricsOptions } from './telemetry/metrics.js';
import type { HttpFetchToolOptions } from './tools/http-fetch.js';
import type { WebSearchToolOptions } from './tools/web-search.js';
import type { WebhookOptions } from './webhooks/dispatcher.js';
import { checkJsonDepth, compileJsonLimits, type JsonLimitsCheck } from './contract/json-limits.js';
import { compileValidator, type Validator } from './contract/validation.js';
import type { TracingOptions } from './telemetry/tracing.js';

export interface SentinelApiOptions {
  /** Directory for the SQLite file and the generated token secret. Default `~/.sentinel`. */
  dataDir?: string;
  /** A ready Store. Default: SQLite at `<dataDir>/sentinel.db`. */
  store?: Store;
  /**
   * PostgreSQL for running several instances on one database (`postgres://user:password@host:5432/db`,
   * or `postgresql://`; libpq query parameters such as `sslmode` work). Ignored when `store` is given.
   * Default none: SQLite at `<dataDir>/sentinel.db`.
   */
  storeUrl?: string;
  /** JWT HS256 secret (at least 16 characters). Default: generated once and kept in `<dataDir>/token-secret` (mode 0600). */
  tokenSecret?: string;
  /** Token lifetime in seconds. Default 86400 (24 h). */
  tokenTtlSeconds?: number;
  /** Lifetime of a one-time WebSocket ticket (`POST /v1/ws-tickets`) in ms. Default 30000 (30 s). */
  wsTicketTtlMs?: number;
  /** Name of the admin created on first start. Default `SENTINEL_ADMIN_USER` or `admin`. */
  adminUsername?: string;
  /** Password of the admin created on first start. Default `SENTINEL_ADMIN_PASSWORD`, else generated (see `generatedAdminPassword`). */
  adminPassword?: string;
  /** Where the core logs. Default: silent. */
  logger?: Logger;
  /** Agent runtime knobs (queue, tool rounds and timeout, history budget, echo delay). Default: see {@link RuntimeOptions}. */
  runtime?: RuntimeOptions;
  /** Runs (docs/ARCHITECTURE.md#runs): journaling, idempotency window, interrupted-run sweep. Default: see {@link RunsOptions}. */
  runs?: RunsOptions;
  /**
   * OpenTelemetry spans (sent wherever the SDK the app registered sends them; none without one).
   * Default `{ captureContent: false }`: no message text in spans.
   */
  tracing?: TracingOptions;
  /** Events kept per agent; older ones are pruned (a `since` before them gets `resync_required`). Default 10000. */
  eventRetention?: number;
  /**
   * Redis for running several instances (`redis://[user[:password]@]host[:port][/db][?prefix=name&turn_lease_ms=n]`,
   * `rediss://` for TLS): the event bus, per-agent turn locks, login throttling and user
   * invalidation are shared through it. Default none: everything in process (one instance).
   */
  busUrl?: string;
  /**
   * The default registry for push/pull/search: `url` `http(s)://host[:port][/namespace]` with
   * optional `username`/`password` (never logged). Default: the embedded registry: in the
   * database with the PostgreSQL store (shared by every instance on it), else the OCI
   * image layouts under `<dataDir>/registry`.
   */
  registry?: RegistrySettings;
  /**
   * Model provider settings (base URLs, API keys, timeouts, retries); never taken from images.
   * Default: per setting, the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `ANTHROPIC_API_KEY`,
   * `ANTHROPIC_BASE_URL`, `OLLAMA_HOST`), then `<dataDir>/providers.json`, then the providers' defaults.
   */
  providers?: ProviderOptions;
  /** The built-in `http_fetch` tool (allowed hosts, caps). Default: no host allowed, so every call fails with "not enabled". */
  httpFetch?: HttpFetchToolOptions;
  /**
   * Webhook delivery (docs/ARCHITECTURE.md#webhooks): `allowPrivateAddresses` (default false:
   * loopback/private/link-local targets are refused, as for `http_fetch`), the attempt timeout
   * (default 10 s), retry backoff base/cap (default 5 s / 1 h), how long retries go on (default
   * 24 h), poll interval (default 1 s), lease (default 60 s). Default: those defaults.
   */
  webhooks?: WebhookOptions;
  /** The built-in `web_search` tool (a SearXNG-compatible URL). Default: not configured, so every call fails with "not configured". */
  webSearch?: WebSearchToolOptions;
  /**
   * Accept access tokens of an OpenID Connect issuer (`issuer`, `audience`, optional
   * `adminClaim`/`adminValue`) beside our own login tokens; their subjects map to local users
   * created on first use. Default none: only our own tokens.
   */
  oidc?: Omit<OidcOptions, 'logger'>;
  /** Where security-relevant actions (API keys created and revoked, ...) are recorded. Default: nowhere ({@link noAudit}). */
  audit?: AuditRecorder;
  /**
   * Token-bucket rate limits per caller and route class (per minute; burst = the per-minute
   * number unless a rule says otherwise; 0 turns a class off; `false` turns every class off).
   * Buckets live in Redis with `busUrl`, in process otherwise. Default: read 1200, write 600,
   * auth 120 (login, per client address), chat 120 (chat frames).
   */
  rateLimits?: RateLimitSettings | false;
  /**
   * Prometheus metrics (`api.metrics`, served by the HTTP transport at `GET /metrics`): a
   * prom-client registry of this instance's own, never the global one. Options: process
   * metrics, the model label cap. Default `true` (on, with process metrics); `false`: none.
   */
  metrics?: boolean | SentinelMetricsOptions;
}

/** Raw, unvalidated input as a transport extracted it. */
export interface RawRouteInput {
  params: Record<string, string>;
  /** Query string values; repeated keys become arrays. */
  query: Record<string, string | string[]>;
  /** The body text and the format the transport matched its content type to. */
  body?: { format: BodyFormat; text: string };
}

export interface RouteResponse {
  status: number;
  /** Undefined for an empty response. */
  body: unknown;
  /**
   * `body` already serialized, with its strong ETag, when the handler returned a PreparedJson:
   * a transport writes these bytes (or a 304 for a matching `If-None-Match`) instead of
   * serializing `body`. Default: absent (serialize `body`).
   */
  prepared?: { bytes: Buffer; etag: string };
  /**
   * Response headers the seam or the route adds (the RateLimit fields of a limited route); a
   * transport that speaks HTTP sets each of them. Default none.
   */
  headers?: Readonly<Record<string, string>>;
}

/** A route with its validators compiled once. */
export interface CompiledRoute extends RouteDef {
  /** The rate-limit class resolved from `rateClass` and the method; null: never limited. */
  limitClass: RateClass | null;
  /** `bodyLimits`: the depth/size check run on the decoded body before its schema (default: depth only). */
  validate: { params?: Validator; query?: Validator; body?: Validator; bodyLimits?: JsonLimitsCheck };
}

/** Default route body formats: JSON for methods that carry a body. */
export function bodyFormatsOf(route: RouteDef): BodyFormat[] {
  if (route.bodyFormats) return route.bodyFormats;
  return route.method === 'POST' || route.method === 'PUT' || route.method === 'PATCH' ? ['json'] : [];
}

export function compileRoute(route: RouteDef): CompiledRoute {
  const where = `${route.method} ${route.path}`;
  const s = route.schemas ?? {};
  const limitClass = route.rateClass === 'none' ? null : (route.rateClass ?? (route.method === 'GET' ? 'read' : 'write'));
  return {
    ...route,
    limitClass,
    validate: {
      params: s.params ? compileValidator(s.params, `path parameters of ${where}`, { coerce: true }) : undefined,
      query: s.query ? compileValidator(s.query, 'query', { coerce: true }) : undefined,
      body: s.body ? compileValidator(s.body, 'body') : undefined,
      bodyLimits: compileJsonLimits(s.body, 'body'),
    },
  };
}

export function defaultDataDir(): string {
  return process.env.SENTINEL_DATA_DIR || join(homedir(), '.sentinel');
}

/**
 * Runs one route for a transport: checks the principal against the route's auth level and
 * scope, takes a unit from the caller's rate-limit bucket (`limiter`, default none: no limits;
 * synchronous in process, so no await is added there), decodes and validates every input part,
 * calls the handler. Throws SentinelError; on a limited route the success and every error
 * carry the RateLimit headers.
 */
export async function invokeRoute(
  route: CompiledRoute,
  raw: RawRouteInput,
  ctx: RouteContext,
  decode: (format: BodyFormat, text: string) => unknown,
  limiter?: RateLimiter,
): Promise<RouteResponse> {
  if (route.auth !== 'public') {
    if (!ctx.principal) throw authenticationRequired();
    if (route.auth === 'admin' && ctx.principal.role !== 'admin') throw adminRequired();
    if (route.scope !== undefined && !hasScope(ctx.principal, route.scope)) throw insufficientScope(route.scope);
    if (route.credentials === 'session' && (ctx.principal.via ?? 'session') !== 'session') throw sessionRequired();
  }
  const rule = limiter !== undefined && route.limitClass !== null ? limiter.ruleFor(route.limitClass) : undefined;
  if (rule === undefined) return runRoute(route, raw, ctx, decode);
  const taken = limiter!.take(rule, ratePartitionOf(ctx.principal, ctx.remoteAddress));
  const decision: RateDecision = taken instanceof Promise ? await taken : taken;
  const headers = rateLimitHeaders(rule, decision);
  if (!decision.allowed) throw rateLimited(rule, decision, headers);
  let response: RouteResponse;
  try {
    response = await runRoute(route, raw, ctx, decode);
  } catch (err) {
    throw withResponseHeaders(err, headers);
  }
  response.headers = response.headers === undefined ? headers : { ...response.headers, ...headers };
  return response;
}

async function runRoute(
  route: CompiledRoute,
  raw: RawRouteInput,
  ctx: RouteContext,
  decode: (format: BodyFormat, text: string) => unknown,
): Promise<RouteResponse> {
  const params = route.validate.params ? route.validate.params(raw.params) : raw.params;
  const query = route.validate.query ? route.validate.query(raw.query) : raw.query;
  let body: unknown = undefined;
  if (raw.body !== undefined && raw.body.text.length > 0) body = decode(raw.body.format, raw.body.text);
  // Before the schema: ajv, the handler and the store all recurse over what they are given.
  if (body !== undefined) {
    if (route.validate.bodyLimits) route.validate.bodyLimits(body);
    else checkJsonDepth(body, 'body');
  }
  if (route.validate.body) {
    if (body === undefined) throw invalidRequest('request body is required');
    body = route.validate.body(body);
  }
  const result = await route.handler({ params, query, body } as never, ctx);
  if (isRouteReply(result)) {
    const response = responseOf(route, result.value, result.status);
    if (result.headers !== undefined) response.headers = result.headers;
    return response;
  }
  return responseOf(route, result, undefined);
}

function responseOf(route: CompiledRoute, result: unknown, status: number | undefined): RouteResponse {
  if (result === undefined) return { status: status ?? 204, body: undefined };
  if (isPreparedJson(result)) return { status: status ?? route.status ?? 200, body: result.value, prepared: { bytes: result.bytes, etag: result.etag } };
  return { status: status ?? route.status ?? 200, body: result };
}

/** What `createSentinelApi` returns; transports depend on this shape only. */
export interface SentinelApiSurface {
  readonly routes: readonly CompiledRoute[];
  /** Resolves the Authorization header to a principal; throws `unauthorized`. */
  authenticate(authorization: string | undefined): Promise<Principal>;
  /** Runs a route (see {@link invokeRoute}). */
  invoke(route: CompiledRoute, raw: RawRouteInput, ctx: RouteContext): Promise<RouteResponse>;
  readonly logger: Logger;
  /** This instance's metrics, which the transports record into and `GET /metrics` serves; undefined when turned off. */
  readonly metrics?: SentinelMetrics;
  close(): Promise<void>;
}

/**
 * What a WebSocket transport uses to authenticate tickets and to keep open sockets in step
 * with their credentials. `SentinelApi` has all of it; an embedding app's stand-in may omit it
 * (then tickets are refused and sockets are not closed on revocation).
 */
export interface CredentialSurface {
  /**
   * Consumes a one-time ticket (`?ticket=` on the upgrade) for `channel` of agent `agentRef`
   * (an id or a reference the agent resolves from): the principal it carries. Unknown, used,
   * expired, for another agent or channel, or minted with a credential revoked since: `unauthorized`.
   */
  authenticateTicket(ticket: string, channel: WebSocketEndpointName, agentRef: string): Promise<Principal>;
  /** Throws `unauthorized` when the credential behind `principal` is no longer valid (expired, logged out, revoked, user gone). */
  recheckCredential(principal: Principal): Promise<void>;
  /** Revocations as they happen (this instance's and, through the bus, the others'): what to recheck or close. */
  readonly credentialRevocations: CredentialRevocationFeed;
}

