/**
 * `toNodeListener`: the api as a plain `(req, res, next?)` function, mountable on node:http,
 * Express, Fastify or anything else that hands out Node's request and response. Per request:
 * request id → CORS/preflight → route → authenticate (before any body byte is read) → body →
 * `api.invoke` → response (JSON, or a stream: NDJSON / SSE). Nothing thrown or rejected in
 * here escapes to the host.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  apiVersionHeader,
  API_VERSION_HEADER,
  bodyFormatsOf,
  deprecationHeaders,
  hasScope,
  insufficientScope,
  endHttpServerSpan,
  runInContext,
  setActiveHttpRoute,
  startHttpServerSpan,
  traceFieldsOf,
  type ServerSpan,
  isSentinelError,
  isStreamResult,
  SentinelError,
  toPublicError,
  type CompiledRoute,
  type Logger,
  type RawRouteInput,
  type SentinelApiSurface,
} from '@sentinel/api-core';
import { bodyFormatOf } from './body-format.js';
import { createConsoleSite, resolveConsoleDir, type ConsoleOptions } from './console.js';
import { createDocsSite } from './docs.js';
import { isPreflight, resolveCors, setCorsHeaders, setPreflightHeaders, type CorsOptions } from './cors.js';
import { announcesBody, ClientGoneError, DEFAULT_MAX_BODY_BYTES, readBodyText } from './read-body.js';
import { createRequestContext, type RequestContext } from './request-context.js';
import { requestIdFor } from './request-id.js';
import { sendEmpty, sendError, sendRouteResponse, setResponseHeaders } from './respond.js';
import { METRICS_PATH, sendMetrics } from './metrics.js';
import { createRouter } from './router.js';
import { createStreamTracker, sendStream, type StreamOptions } from './stream.js';

export interface NodeListenerOptions extends StreamOptions {
  /** CORS for browsers on other origins. Default `true`: any origin, no credentials, preflights cached 600 s. `false`: no CORS headers. */
  cors?: boolean | CorsOptions;
  /**
   * Serve the API reference under `/docs` (no auth): `/docs` (OpenAPI, rendered by Scalar from
   * the installed `@scalar/api-reference`), `/docs/asyncapi` (the WebSocket protocol) and
   * `/docs/errors` (the error codes that error bodies point at). Default `true`. `false`: `/docs`
   * is not the api's (an Express-style host's own routes get it through `next()`, otherwise 404).
   */
  docs?: boolean;
  /**
   * Serve the web console under `/console` (no auth for its files; the app logs in through the
   * API): `{ dir }` serves that directory's `index.html` and `assets/`. Default: the installed
   * `@sentinel/console`'s built files when there are any, otherwise no console. `false`: `/console`
   * is not the api's (a host's own routes get it through `next()`, otherwise 404).
   */
  console?: false | ConsoleOptions;
  /**
   * Serve `GET /metrics` (Prometheus text) to credentials with scope `metrics:read` (admins), and
   * record `http_server_request_duration_seconds`, when the api has metrics (`api.metrics`).
   * Default `true`. `false`: neither (`/metrics` is then not the api's).
   */
  metrics?: boolean;
  /** Log one `request` line per request at info level. Default `true`. */
  logRequests?: boolean;
  /** Where request lines and unexpected errors go. Default `api.logger`. */
  logger?: Logger;
  /** Body size cap in bytes for routes without their own `maxBodyBytes`. Default 1 MiB (1 048 576). */
  maxBodyBytes?: number;
  /**
   * Believe X-Forwarded-Proto, -Host and -For (only behind your own reverse proxy): the client
   * address is then the right-most X-Forwarded-For entry, the one your proxy appended (entries
   * left of it are whatever the client sent), and Proto/Host their right-most values too.
   * Default `false`: the headers are ignored and the address is the socket's peer.
   */
  trustProxy?: boolean;
}

/**
 * A Node request listener. With `next` (Express-style hosts), paths outside the api's route
 * prefixes (`/v1`), its docs (`/docs`) and its console (`/console`), unless turned off, are handed to `next()`; without it
 * they get a 404.
 */
export interface NodeListener {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  /**
   * Ends every streamed response in progress (logs follow, events over SSE) and aborts their
   * producers. A host calls it when it shuts down, so `server.close()` does not wait for
   * streams that never end by themselves; `listen()`'s close() does it for you.
   */
  closeStreams(): void;
  /** Streamed responses in progress. */
  readonly openStreams: number;
}

/**
 * Routes whose query declares an integer `since` get the `Last-Event-ID` header as `since` when
 * the query has none: that is how an SSE client (EventSource) resumes after a reconnect.
 * Other routes never see the header (the logs route's `since` is a time, not a seq).
 */
function resumesFromLastEventId(route: CompiledRoute): boolean {
  const properties = (route.schemas?.query as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
  return properties?.since?.type === 'integer';
}

function parseQuery(raw: string): Record<string, string | string[]> {
  // Null prototype: `?__proto__=x` must stay an ordinary key.
  const query = Object.create(null) as Record<string, string | string[]>;
  if (raw === '') return query;
  for (const [key, value] of new URLSearchParams(raw)) {
    const previous = query[key];
    if (previous === undefined) query[key] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else query[key] = [previous, value];
  }
  return query;
}

/** What the response's 'close' listener needs to know about its request. */
interface Exchange {
  readonly requestId: string;
  readonly method: string;
  readonly path: string;
  /** performance.now() at arrival (0 when requests are neither logged nor measured). */
  readonly started: number;
  /** The `route` label: the matched route's template, a site's prefix, or `unmatched`. */
  route: string;
  readonly context: RequestContext;
  readonly clientGone: () => void;
  /** The request's SERVER span (the API's no-op one without an SDK). */
  readonly traced: ServerSpan;
}

// Per-request state hangs off the response under this symbol, so one 'close' listener per
// listener (not a closure per request) serves every response: allocation per request is
// most of what a cheap route like /v1/health costs beyond Node's own work.
const EXCHANGE = Symbol('sentinel.exchange');
type TrackedResponse = ServerResponse & { [EXCHANGE]?: Exchange };

/** The `route` label of requests no route, site or `/metrics` answered (404s, OPTIONS): never the raw path. */
const UNMATCHED_ROUTE = 'unmatched';

/** Sets the `route` label of the request `res` answers. */
function labelRoute(res: ServerResponse, route: string): void {
  const exchange = (res as TrackedResponse)[EXCHANGE];
  if (exchange !== undefined) exchange.route = route;
}

function errorFields(err: unknown): Record<string, unknown> {
  // An `internal` SentinelError wraps the real failure in `cause`: log that one.
  const original = isSentinelError(err) && err.cause !== undefined ? err.cause : err;
  if (original instanceof Error) return { error: original.message, error_name: original.name, stack: original.stack };
  return { error: String(original) };
}

/** Turns `api` into a request listener (see {@link NodeListenerOptions} for the defaults). */
export function toNodeListener(api: SentinelApiSurface, options: NodeListenerOptions = {}): NodeListener {
  const router = createRouter(api.routes);
  const logger = options.logger ?? api.logger;
  const cors = resolveCors(options.cors);
  const logRequests = (options.logRequests ?? true) && logger.isLevelEnabled('info');
  const defaultMaxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const trustProxy = options.trustProxy ?? false;
  const sseHeartbeatMs = options.sseHeartbeatMs ?? 15_000;
  const streams = createStreamTracker();
  const docs = options.docs === false ? undefined : createDocsSite();
  const consoleDir = resolveConsoleDir(options.console);
  const consoleSite = consoleDir === undefined ? undefined : createConsoleSite({ dir: consoleDir });
  const resumable = new Set(api.routes.filter(resumesFromLastEventId));
  // Computed once per route instead of once per request.
  const bodyFormatsByRoute = new Map(api.routes.map((route) => [route, bodyFormatsOf(route)]));
  // Deprecated routes only (docs/VERSIONING.md): their Deprecation/Sunset/Link headers, built once.
  const deprecationByRoute = new Map(api.routes.map((route) => [route, deprecationHeaders(route)] as const).filter(([, headers]) => headers.length > 0));
  const apiVersion = apiVersionHeader();
  const metrics = options.metrics === false ? undefined : api.metrics;

  /** Answers the request; never rejects (failures become error responses through `fail`). */
  async function respond(req: IncomingMessage, res: ServerResponse, method: string, path: string, rawQuery: string, ctx: RequestContext, abortProducer: () => void) {
    try {
      await answer(req, res, method, path, rawQuery, ctx, abortProducer);
    } catch (err) {
      try {
        fail(res, err, ctx, method, path);
      } catch {
        res.destroy();
      }
    }
  }

  async function answer(req: IncomingMessage, res: ServerResponse, method: string, path: string, rawQuery: string, ctx: RequestContext, abortProducer: () => void) {
    const origin = req.headers.origin;
    if (cors && origin !== undefined) setCorsHeaders(res, cors, origin);

    if (metrics !== undefined && path === METRICS_PATH) {
      labelRoute(res, METRICS_PATH);
      ctx.principal = await api.authenticate(req.headers.authorization);
      if (!hasScope(ctx.principal, 'metrics:read')) throw insufficientScope('metrics:read');
      await sendMetrics(res, method, metrics);
      return;
    }
    if (docs?.owns(path)) {
      labelRoute(res, '/docs');
      await docs.serve(res, method, path, req.headers['if-none-match']);
      return;
    }
    if (consoleSite?.owns(path)) {
      labelRoute(res, '/console');
      await consoleSite.serve(res, method, path, req.headers['if-none-match'], ctx.origin);
      return;
    }

    if (method === 'OPTIONS') {
      const allow = router.allowedMethods(path);
      if (!allow) throw new SentinelError('not_found', `no route for OPTIONS ${path}`);
      // Preflights never need auth: the browser sends them without credentials.
      if (cors && isPreflight(req)) setPreflightHeaders(res, cors, req, allow);
      res.setHeader('Allow', allow.join(', '));
      sendEmpty(res, 204);
      return;
    }

    const match = router.match(method, path);
    if (match.kind === 'not_found') throw new SentinelError('not_found', `no route for ${method} ${path}`);
    if (match.kind === 'method_not_allowed') {
      throw new SentinelError('method_not_allowed', `method ${method} is not allowed on ${path}`, { allow: match.allow });
    }
    const { route, params } = match;
    labelRoute(res, route.path);
    // The request span's context, taken from the exchange rather than the active context: after
    // an await the active context is the root under a manager without async tracking (`sentinel
    // api` registers one), so the handler is re-entered in it explicitly below.
    const traceContext = (res as TrackedResponse)[EXCHANGE]?.traced.context;
    setActiveHttpRoute(method, route.path, traceContext);
    // Before anything can fail: a deprecated route's errors carry the headers too.
    const deprecation = deprecationByRoute.get(route);
    if (deprecation !== undefined) for (const [name, value] of deprecation) res.setHeader(name, value);

    // Before the body: an anonymous client must not make us read (or wait for) a body.
    if (route.auth !== 'public') ctx.principal = await runInContext(traceContext, () => api.authenticate(req.headers.authorization));

    const raw: RawRouteInput = { params, query: parseQuery(rawQuery) };
    const lastEventId = req.headers['last-event-id'];
    if (typeof lastEventId === 'string' && raw.query.since === undefined && resumable.has(route)) raw.query.since = lastEventId.trim();
    const formats = bodyFormatsByRoute.get(route) ?? bodyFormatsOf(route);
    // Routes without body formats leave any body unread; Node drains it after the response.
    if (formats.length > 0 && announcesBody(req)) {
      const format = bodyFormatOf(req.headers['content-type'], formats);
      const text = await readBodyText(req, route.maxBodyBytes ?? defaultMaxBodyBytes);
      if (text.length > 0) raw.body = { format, text };
    }

    const response = await runInContext(traceContext, () => api.invoke(route, raw, ctx));
    // setHeader, so writeHead (JSON, empty, prepared) and a stream's head all carry them.
    if (response.headers !== undefined) setResponseHeaders(res, response.headers);
    if (isStreamResult(response.body)) {
      // Even when the client already left: the stream's producer must be released.
      await sendStream(req, res, response.body, {
        status: response.status,
        omitBody: method === 'HEAD',
        tracker: streams,
        log: ctx.log,
        abortProducer,
        heartbeatMs: sseHeartbeatMs,
      });
      return;
    }
    if (res.destroyed) return;
    const conditional = method === 'GET' || method === 'HEAD' ? req.headers['if-none-match'] : undefined;
    sendRouteResponse(res, response, method === 'HEAD', conditional);
  }

  function fail(res: ServerResponse, err: unknown, ctx: RequestContext, method: string, path: string): void {
    if (err instanceof ClientGoneError) return;
    const publicError = toPublicError(err);
    const clientLeft = res.destroyed && !res.writableFinished;
    // The seam may have wrapped the original (to add headers): the abort is then its cause.
    const original = isSentinelError(err) && err.code === 'internal' && err.cause !== undefined ? err.cause : err;
    if (publicError.code === 'internal' && !(clientLeft && original instanceof Error && original.name === 'AbortError')) {
      ctx.log.error('request failed', { method, path, ...errorFields(err) });
    } else if (publicError.cause instanceof Error && !isSentinelError(publicError.cause)) {
      // A client error with a lower-level cause (a store refusing a value): the client gets the
      // fixed message, the operator the cause's own text (no stack: it is not a bug).
      ctx.log.warn('request refused', { method, path, code: publicError.code, error: publicError.cause.message, error_name: publicError.cause.name });
    }
    if (res.headersSent || res.destroyed) {
      // Half a response cannot be turned into an error response: cut the connection so the
      // client sees a failure instead of a truncated success.
      res.destroy();
      return;
    }
    try {
      sendError(res, publicError, method === 'HEAD');
    } catch {
      res.destroy();
    }
  }

  function onResponseClose(this: TrackedResponse): void {
    const exchange = this[EXCHANGE];
    if (exchange === undefined) return;
    this[EXCHANGE] = undefined;
    const finished = this.writableFinished;
    if (!finished) exchange.clientGone();
    // 499 (nginx's "client closed request") when the client left before a status was sent.
    const status = this.headersSent ? this.statusCode : 499;
    if (metrics !== undefined) metrics.observeHttpRequest(exchange.method, exchange.route, status, (performance.now() - exchange.started) / 1000);
    endHttpServerSpan(exchange.traced.span, status, !finished);
    if (!logRequests) return;
    const fields: Record<string, unknown> = {
      request_id: exchange.requestId,
      method: exchange.method,
      // The pathname only: query strings can carry secrets.
      path: exchange.path,
      status,
      duration_ms: Math.round((performance.now() - exchange.started) * 1000) / 1000,
      remote: exchange.context.remoteAddress,
      ...(finished ? {} : { aborted: true }),
    };
    // 'close' may run outside the request's context: the line names the request's span itself.
    if (exchange.traced.context !== undefined) {
      const ids = traceFieldsOf(exchange.traced.span);
      if (ids !== undefined) {
        fields.trace_id = ids.trace_id;
        fields.span_id = ids.span_id;
      }
    }
    logger.info('request', fields);
  }

  const sentinelListener = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void => {
    try {
      handleRequest(req, res, next);
    } catch (err) {
      // Only a host that already answered this request gets here (setHeader after send).
      logger.error('request listener failed', errorFields(err));
      res.destroy();
    }
  };
  return Object.defineProperties(sentinelListener, {
    closeStreams: { value: () => streams.endAll() },
    openStreams: { get: () => streams.size },
  }) as NodeListener;

  function handleRequest(req: IncomingMessage, res: ServerResponse, next: ((err?: unknown) => void) | undefined): void {
    const url = req.url ?? '/';
    const queryStart = url.indexOf('?');
    const path = queryStart === -1 ? url : url.slice(0, queryStart);
    if (next && !router.owns(path) && !docs?.owns(path) && !consoleSite?.owns(path) && !(metrics !== undefined && path === METRICS_PATH)) {
      next();
      return;
    }
    const method = req.method ?? 'GET';
    const requestId = requestIdFor(req.headers['x-request-id']);
    res.setHeader('X-Request-Id', requestId);
    // On every response the api answers (errors, 404s, OPTIONS, streams): set before any of them.
    res.setHeader(API_VERSION_HEADER, apiVersion);
    const { context, clientGone } = createRequestContext(req, requestId, logger, trustProxy);
    const started = logRequests || metrics !== undefined ? performance.now() : 0;
    // A child of the caller's traceparent; the handler (store calls, log lines) runs inside it.
    const traced = startHttpServerSpan(method, path, req.headers, (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http');

    // 'close' comes once per response: `on` spares the wrapper `once` would allocate.
    (res as TrackedResponse)[EXCHANGE] = { requestId, method, path, started, route: UNMATCHED_ROUTE, context, clientGone, traced };
    res.on('close', onResponseClose);

    const rawQuery = queryStart === -1 ? '' : url.slice(queryStart + 1);
    runInContext(traced.context, () => void respond(req, res, method, path, rawQuery, context, clientGone));
  }
}
