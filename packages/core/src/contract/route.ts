import { internal, type ErrorCode } from './errors.js';
import type { Logger } from './logger.js';
import type { Principal } from './models.js';
import type { Scope } from './scopes.js';
import type { RateClass } from './rate-class.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Who may call a route: anyone, any logged-in user, or admins only. */
export type AuthLevel = 'public' | 'user' | 'admin';

/** Body formats a route accepts; the transport maps content types onto these. */
export type BodyFormat = 'json' | 'yaml';

/** A JSON Schema (draft 2020-12 subset understood by ajv). */
export type JsonSchema = Record<string, unknown>;

/**
 * The marker of a schema the OpenAPI document names once, under `components.schemas`, and
 * refers to everywhere else (a run appears in five operations): `{[COMPONENT_NAME]: 'Run', ...}`.
 * An `x-` key, which OpenAPI allows in a Schema Object; the named copy leaves it out, and the
 * core's validators take it as an annotation.
 */
export const COMPONENT_NAME = 'x-sentinel-component';

/** How the client reached the server, so resources can carry absolute URLs (agent endpoints). */
export interface RequestOrigin {
  /** True under TLS (`https:` / `wss:`). */
  secure: boolean;
  /** `host[:port]` as the client addressed it (the Host header). */
  host: string;
}

export interface RouteContext {
  /** Null only on `public` routes. */
  principal: Principal | null;
  requestId: string;
  /** Aborted when the client goes away or the server shuts down. */
  signal: AbortSignal;
  log: Logger;
  origin: RequestOrigin;
  /** Client address, for throttling (login). */
  remoteAddress: string;
  /**
   * The request's `Accept` header, for routes that stream only when asked to (registry push and
   * pull send NDJSON progress for `application/x-ndjson`). Default: undefined (not given, or a
   * transport without one).
   */
  accept?: string;
  /**
   * A request header by its lower-case name (a repeated header's values joined with `, `), for
   * routes that read one (`Idempotency-Key`). Default: undefined (a transport without headers:
   * every header reads as absent).
   */
  header?(name: string): string | undefined;
}

/**
 * The caller of a `user` or `admin` route. `invokeRoute` refuses such a route before its handler
 * runs when there is no principal (`unauthorized`), so handlers need no guard of their own; a
 * null here means the route is declared `public` yet asks for a caller, a bug, hence `internal`.
 */
export function principalOf(ctx: RouteContext): Principal {
  if (!ctx.principal) throw internal('a handler asked for the caller of a request without one: is its route declared public?');
  return ctx.principal;
}

export interface RouteInput<P = Record<string, string>, Q = Record<string, unknown>, B = unknown> {
  params: P;
  query: Q;
  body: B;
}

/**
 * A handler's result: a plain value sent as JSON with the route's `status`, `undefined` for an
 * empty response (204), a {@link PreparedJson} (bytes serialized once, with a strong ETag) or a
 * {@link StreamResult}.
 */
export type RouteResult = unknown;

/** A route is data (docs/ARCHITECTURE.md#the-seam): the transports route, validate and map errors from it. */
export interface RouteDef {
  method: HttpMethod;
  /** Path with `:name` parameters, e.g. `/v1/agents/:id`. */
  path: string;
  auth: AuthLevel;
  /**
   * The scope a credential needs for this route (contract/scopes.ts), checked after `auth`.
   * Default: none (any authenticated caller, e.g. `GET /v1/auth/me`). Every non-public route
   * declares one unless it is about the caller itself.
   */
  scope?: Scope;
  /**
   * `session`: only a login session may call the route, never an API key or a ticket (changing
   * a password). Default `any`.
   */
  credentials?: 'any' | 'session';
  /**
   * The rate-limit bucket class of the route (auth/rate-limit.ts): requests take a unit from the
   * caller's bucket of this class (the client address's on public routes), `none` is never
   * limited (health probes). Default `read` for GET, `write` for other methods.
   */
  rateClass?: RateClass | 'none';
  /** One line for the OpenAPI document. */
  summary: string;
  /** Success status. Default 200 (204 when the handler returns undefined). */
  status?: number;
  /** JSON Schemas for each input part; query and params are coerced from strings. */
  schemas?: { params?: JsonSchema; query?: JsonSchema; body?: JsonSchema; response?: JsonSchema };
  /** Formats accepted for the body. Default `['json']` on POST/PUT/PATCH, none otherwise. */
  bodyFormats?: BodyFormat[];
  /** Body size cap in bytes for this route. Default: the transport's cap. */
  maxBodyBytes?: number;
  /**
   * Streamed answers the route can give besides JSON, for the OpenAPI document: `ndjson`
   * (`application/x-ndjson`), `sse` (`text/event-stream`). Default: none.
   */
  streams?: Array<'ndjson' | 'sse'>;
  /**
   * The JSON Schema of one streamed item (an NDJSON line, or the `data:` of one SSE event), for
   * the OpenAPI document and the contract checker. A stream that fails after its headers ends
   * with an `{error, code}` item, which the document adds by itself. Default: any JSON object.
   */
  streamItem?: JsonSchema;
  /**
   * Error codes the route can answer beyond the ones its shape implies (401 without public auth,
   * 403 for admin, 404 with path parameters, 400/413/415 with a body, 500, 503), for the OpenAPI
   * document. Default: none.
   */
  errors?: ErrorCode[];
  /**
   * True when the route answers with a {@link PreparedJson} (strong ETag): the document then
   * declares the `If-None-Match` parameter, the `ETag` header and `304`. Default false.
   */
  etag?: boolean;
  /**
   * Request headers the route reads (through `ctx.header`), for the OpenAPI document; the
   * handler validates them. Default none.
   */
  requestHeaders?: RouteHeaderDoc[];
  /**
   * The success answers, for the OpenAPI document, when the route has more than the one of
   * `status` (a 202 with the resource, a 200 stream when asked): each lists its body kinds
   * (`json`: `schemas.response`; `ndjson`/`sse`: items of `streamItem`) and its headers. The
   * handler picks status and headers with {@link routeReply}. Default: one answer, `status`,
   * with JSON and `streams`.
   */
  successResponses?: RouteSuccessDoc[];
  /** Examples for the OpenAPI document (checked against the schemas by its test). Default none. */
  examples?: { body?: unknown; response?: unknown };
  /** Descriptions of error responses for the OpenAPI document (status → when), replacing the generic ones. Default none. */
  errorDescriptions?: Readonly<Record<number, string>>;
  /**
   * Marks the route deprecated (docs/VERSIONING.md): the OpenAPI operation gets `deprecated: true`
   * and every response of the route (success and error) carries `Deprecation` (RFC 9745), plus
   * `Sunset` (RFC 8594) and `Link` headers when a date or a link is given. `true`: deprecated, no
   * dates. Default: not deprecated.
   */
  deprecated?: true | RouteDeprecation;
  handler(input: RouteInput<any, any, any>, ctx: RouteContext): Promise<RouteResult> | RouteResult;
}

/** A header a route reads or sends, as the OpenAPI document describes it. */
export interface RouteHeaderDoc {
  /** As written in documents, e.g. `Idempotency-Key`. */
  name: string;
  description: string;
  schema: JsonSchema;
}

/** One success answer of a route (see `RouteDef.successResponses`). */
export interface RouteSuccessDoc {
  status: number;
  description: string;
  /** What the body can be. */
  content: Array<'json' | 'ndjson' | 'sse'>;
  /** Response headers of this answer. Default none. */
  headers?: RouteHeaderDoc[];
}

/** When and why a route is deprecated. */
export interface RouteDeprecation {
  /** ISO 8601 date or date-time the route is deprecated from (RFC 9745 `Deprecation: @<epoch>`). Default: undated (`@0`). */
  since?: string;
  /** ISO 8601 date or date-time after which the route may be removed (RFC 8594 `Sunset`). Default: none announced. */
  sunset?: string;
  /** URL of a page that says what to use instead (`Link: <url>; rel="deprecation"`). Default: none. */
  link?: string;
}

function epochSecondsOf(iso: string, field: string, route: Pick<RouteDef, 'method' | 'path'>): number {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) throw internal(`route ${route.method} ${route.path}: deprecated.${field} "${iso}" is not an ISO 8601 date`);
  return Math.floor(ms / 1000);
}

/**
 * The response headers a deprecated route sends, computed once per route by the transports;
 * an empty list for a route that is not deprecated. `Deprecation` is an RFC 9745 sf-date,
 * `@<unix seconds>` of `since`. RFC 9745 has no undated form, so a route without `since` (or
 * `deprecated: true`) sends `@0`: a date in the past, which readers take as "deprecated now".
 * `Sunset` is an RFC 8594 HTTP-date. A date that does not parse is a bug in the route table.
 */
export function deprecationHeaders(route: Pick<RouteDef, 'method' | 'path' | 'deprecated'>): Array<[string, string]> {
  const deprecation = route.deprecated;
  if (deprecation === undefined) return [];
  const info: RouteDeprecation = deprecation === true ? {} : deprecation;
  const headers: Array<[string, string]> = [
    ['Deprecation', info.since === undefined ? '@0' : `@${epochSecondsOf(info.since, 'since', route)}`],
  ];
  if (info.sunset !== undefined) headers.push(['Sunset', new Date(epochSecondsOf(info.sunset, 'sunset', route) * 1000).toUTCString()]);
  const links: string[] = [];
  if (info.link !== undefined) links.push(`<${info.link}>; rel="deprecation"`);
  if (info.link !== undefined && info.sunset !== undefined) links.push(`<${info.link}>; rel="sunset"`);
  if (links.length > 0) headers.push(['Link', links.join(', ')]);
  return headers;
}

const STREAM = Symbol.for('sentinel.stream');

/** One item of a streamed response: a JSON text, and for SSE an optional id and event name. */
export interface StreamItem {
  json: string;
  /** SSE `id:` (e.g. the event seq, so `Last-Event-ID` can resume). */
  id?: string;
  /** SSE `event:` name. Default: none (the `message` event). */
  event?: string;
}

/**
 * A streamed result (logs follow, events over SSE): the transport writes each item as it comes
 * (NDJSON, or SSE when the client asks for `text/event-stream`), respecting backpressure, and
 * calls `return()` on the iterator when the client goes away (ctx.signal aborts too).
 */
export interface StreamResult {
  readonly [STREAM]: true;
  readonly items: AsyncIterable<StreamItem>;
  /**
   * The one format this stream is sent in, whatever the client's `Accept` (a run's stream is
   * SSE: its `id:` lines are how a client resumes). Default: chosen by `Accept` (SSE for
   * `text/event-stream`, NDJSON otherwise).
   */
  readonly format?: 'ndjson' | 'sse';
}

/** Marks an async iterable of items as a streamed route result; `options.format` (default: by `Accept`) fixes the format. */
export function streamResult(items: AsyncIterable<StreamItem>, options: { format?: 'ndjson' | 'sse' } = {}): StreamResult {
  return options.format === undefined ? { [STREAM]: true, items } : { [STREAM]: true, items, format: options.format };
}

/** Brand check (works across duplicated module copies). */
export function isStreamResult(value: unknown): value is StreamResult {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[STREAM] === true;
}

const PREPARED = Symbol.for('sentinel.prepared-json');

/**
 * A JSON result already serialized, with a strong entity tag of exactly these bytes. List routes
 * return one (see `PreparedJsonCache`) so a transport writes bytes built once per version of the
 * data and answers `If-None-Match` with 304; `invoke` still hands in-process callers `value`.
 */
export interface PreparedJson {
  readonly [PREPARED]: true;
  /** The data the bytes encode (read-only: it may be shared between requests). */
  readonly value: unknown;
  /** UTF-8 JSON of `value`. */
  readonly bytes: Buffer;
  /** Strong ETag, quoted (`"…"`): equal tags mean byte-identical bodies. */
  readonly etag: string;
}

/** Wraps already serialized JSON and its ETag as a route result. */
export function preparedJson(value: unknown, bytes: Buffer, etag: string): PreparedJson {
  return { [PREPARED]: true, value, bytes, etag };
}

/** Brand check (works across duplicated module copies). */
export function isPreparedJson(value: unknown): value is PreparedJson {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[PREPARED] === true;
}

const REPLY = Symbol.for('sentinel.route-reply');

/**
 * A handler's result with the status and headers of this answer (a 202 with `Location`, a
 * replayed 200 with `Idempotency-Replayed`): `value` is sent as a plain result would be (JSON,
 * a StreamResult, or a PreparedJson).
 */
export interface RouteReply {
  readonly [REPLY]: true;
  readonly value: RouteResult;
  /** Default: the route's `status`. */
  readonly status?: number;
  /** Default none. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Wraps a result with its status and headers (see {@link RouteReply}). */
export function routeReply(value: RouteResult, options: { status?: number; headers?: Readonly<Record<string, string>> }): RouteReply {
  return { [REPLY]: true, value, ...options };
}

/** Brand check (works across duplicated module copies). */
export function isRouteReply(value: unknown): value is RouteReply {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[REPLY] === true;
}
