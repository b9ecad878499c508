/**
 * OpenTelemetry traces (docs/ARCHITECTURE.md#observability), through `@opentelemetry/api` only:
 * without a registered SDK every call here is the API's no-op, so an embedding app that traces
 * nothing pays a function call, and one that registers its own SDK gets our spans in its traces.
 * The instrumentation points (HTTP request, WebSocket upgrade and message, turn, provider call,
 * tool call, store operation, bus publish) call the small functions below and nothing else, so
 * the span names and attributes live in one file.
 *
 * Names follow the semantic conventions: HTTP server spans `{method} {route}`, GenAI client
 * spans `{gen_ai.operation.name} {gen_ai.request.model}` (kind CLIENT), tool spans
 * `execute_tool {gen_ai.tool.name}`, database spans `{db.operation.name}`. No prompt, completion
 * or tool argument text is recorded unless `captureContent` is on.
 *
 * Nothing here relies on the context surviving an await: `sentinel api` registers a context
 * manager without async tracking (Node 20's AsyncLocalStorage costs too much per request), so
 * the spans that matter take their parent explicitly (`parent` arguments, `Turn.traceContext`),
 * and callers re-enter a kept context with {@link runInContext} after their awaits.
 */
import {
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
} from '@opentelemetry/api';
import { isSentinelError } from '../contract/errors.js';

/** How the core traces, as `createSentinelApi({ tracing })` takes it. */
export interface TracingOptions {
  /**
   * Record message text in spans: the conversation sent and the answer (`gen_ai.input.messages`,
   * `gen_ai.output.messages`) and tool arguments and results. They may hold personal data and
   * secrets; turn on only for debugging. Default `false`.
   */
  captureContent?: boolean;
}

/** The instrumentation scope of every span the server makes. */
export const TRACER_NAME = '@sentinel/api-core';

// The proxy tracer: it delegates to whichever SDK is registered, even one registered after this
// module loaded (an embedding app that starts its SDK late still gets spans).
const tracer = trace.getTracer(TRACER_NAME);

let registered = false;

/**
 * True once an SDK is registered. Until then every entry point below returns at once: that is
 * the whole cost of tracing for a server nobody traces (no inert span allocated per request).
 * Asked on every call until it holds, since an app may register its SDK after this module loaded.
 */
function sdkRegistered(): boolean {
  if (registered) return true;
  const provider = trace.getTracerProvider();
  // Another API copy's provider, not the proxy: assume it traces.
  registered = !(provider instanceof ProxyTracerProvider) || provider.getDelegateTracer(TRACER_NAME) !== undefined;
  return registered;
}

type HeaderBag = Record<string, string | string[] | undefined>;

const headerGetter: TextMapGetter<HeaderBag> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** Most characters of captured content per attribute: a span is not a transcript store. */
const MAX_CAPTURED_CHARS = 16_384;

function capped(text: string): string {
  return text.length > MAX_CAPTURED_CHARS ? `${text.slice(0, MAX_CAPTURED_CHARS - 1)}…` : text;
}

/** What a message on a socket opened outside any trace gets: nothing to record, nothing to end. */
const INERT_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
const INERT: ServerSpan = Object.freeze({ span: INERT_SPAN, context: undefined });

/** A span that records nothing and carries no trace: nothing to put in a context. */
function isInert(span: Span): boolean {
  return !span.isRecording() && !isSpanContextValid(span.spanContext());
}

/** True when a span that records is active: cheap instrumentation (store, bus) only runs then. */
export function recordingSpanActive(): boolean {
  return trace.getActiveSpan()?.isRecording() === true;
}

/**
 * Adds the W3C `traceparent` (and `tracestate`, baggage: whatever the registered propagator
 * writes) of `ctx` (default: the active context) to `headers` and returns them; unchanged
 * without a trace. For outgoing requests: model providers, registries, webhooks. Pass `ctx`
 * when the request is sent after an `await` (see {@link captureTraceContext}).
 */
export function injectTraceHeaders<T extends Record<string, string>>(headers: T, ctx: Context = context.active()): T {
  const active = trace.getSpan(ctx);
  if (active === undefined || !isSpanContextValid(active.spanContext())) return headers;
  propagation.inject(ctx, headers);
  return headers;
}

/** `trace_id` and `span_id` of the active span for a log line; undefined without one. */
export function activeTraceFields(): { trace_id: string; span_id: string } | undefined {
  const span = trace.getActiveSpan();
  return span === undefined ? undefined : traceFieldsOf(span);
}

/** `trace_id` and `span_id` of `span`; undefined when it carries no trace. */
export function traceFieldsOf(span: Span): { trace_id: string; span_id: string } | undefined {
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : undefined;
}

/** Runs `fn` with `ctx` active (a plain call when there is nothing to carry). */
export function runInContext<T>(ctx: Context | undefined, fn: () => T): T {
  return ctx === undefined ? fn() : context.with(ctx, fn);
}

/** The active context, to carry work that runs later (a queued turn) under the span that asked for it. */
export function captureTraceContext(): Context | undefined {
  const ctx = context.active();
  return ctx === ROOT_CONTEXT ? undefined : ctx;
}

// ---- HTTP ---------------------------------------------------------------------------------

/** An HTTP server span and the context its handler runs in. */
export interface ServerSpan {
  readonly span: Span;
  /** Undefined when the span is inert (no SDK, nothing to propagate). */
  readonly context: Context | undefined;
}

/**
 * Starts the SERVER span of an incoming request, a child of the caller's W3C `traceparent` when
 * it sent one. `path` is the pathname only (a query can carry secrets); the span is named
 * `{method}` until {@link setActiveHttpRoute} names the route.
 */
export function startHttpServerSpan(method: string, path: string, headers: HeaderBag, scheme: 'http' | 'https', route?: string): ServerSpan {
  if (!sdkRegistered()) return INERT;
  const parent = propagation.extract(ROOT_CONTEXT, headers, headerGetter);
  const span = tracer.startSpan(route === undefined ? method : `${method} ${route}`, { kind: SpanKind.SERVER }, parent);
  if (isInert(span)) return { span, context: undefined };
  if (span.isRecording()) {
    span.setAttributes({ 'http.request.method': method, 'url.path': path, 'url.scheme': scheme });
    if (route !== undefined) span.setAttribute('http.route', route);
  }
  return { span, context: trace.setSpan(parent, span) };
}

/**
 * Names the HTTP server span of `ctx` (default: the active context) after the matched route
 * template (`/v1/agents/:id`), never the raw path.
 */
export function setActiveHttpRoute(method: string, route: string, ctx: Context | undefined = context.active()): void {
  if (ctx === undefined) return;
  const span = trace.getSpan(ctx);
  if (span === undefined || !span.isRecording()) return;
  span.updateName(`${method} ${route}`);
  span.setAttribute('http.route', route);
}

/** Ends an HTTP server span with the status sent (5xx marks it an error, per the HTTP conventions). */
export function endHttpServerSpan(span: Span, status: number, aborted = false): void {
  if (span.isRecording()) {
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    if (aborted) span.setAttribute('error.type', 'aborted');
  }
  span.end();
}

// ---- WebSocket ----------------------------------------------------------------------------

/**
 * The SERVER span of one client frame on a socket, a child of the upgrade's span: the turn a
 * message starts is carried under it. `channel` is `chat` or `events`.
 */
export function startWebSocketMessageSpan(parent: Context | undefined, channel: string, agentId: string): ServerSpan {
  if (parent === undefined) return INERT;
  const span = tracer.startSpan(`ws.message ${channel}`, { kind: SpanKind.SERVER }, parent);
  if (isInert(span)) return { span, context: undefined };
  if (span.isRecording()) span.setAttributes({ 'sentinel.ws.channel': channel, 'sentinel.agent.id': agentId });
  return { span, context: trace.setSpan(parent, span) };
}

// ---- turns, providers, tools --------------------------------------------------------------

/** What a turn span records about the turn; ids only, never text. */
export interface TurnSpanInfo {
  agentId: string;
  messageId: string;
  responseId: string;
}

/**
 * Runs one turn under a `sentinel.turn` span, a child of `parent` (the context the message
 * arrived in: the turn waits in the queue and runs later, in whatever context freed it).
 */
export async function traceTurn(turn: { traceContext: Context | undefined }, info: TurnSpanInfo, run: () => Promise<void>): Promise<void> {
  const parent = turn.traceContext;
  if (parent === undefined && !sdkRegistered()) return run();
  const base = parent ?? ROOT_CONTEXT;
  const span = tracer.startSpan('sentinel.turn', { kind: SpanKind.INTERNAL }, base);
  if (isInert(span)) {
    // No trace to carry; the queued turn must still not run in the context that freed it.
    return parent === undefined ? run() : context.with(parent, run);
  }
  if (span.isRecording()) {
    span.setAttributes({ 'sentinel.agent.id': info.agentId, 'sentinel.message.id': info.messageId, 'gen_ai.response.id': info.responseId });
  }
  // The turn's own work (provider and tool calls, its store reads) takes this as its parent
  // explicitly: after the turn's first await the active context is not it under a context
  // manager without async tracking (the one `sentinel api` registers).
  const turnContext = trace.setSpan(base, span);
  turn.traceContext = turnContext;
  try {
    await context.with(turnContext, run);
  } finally {
    span.end();
  }
}

/** How the turn ended, on the turn span of `ctx` (the turn's {@link traceTurn} context). */
export function recordTurnEnd(ctx: Context | undefined, end: { reason: string; inputTokens: number; outputTokens: number; errorCode?: string }): void {
  const span = ctx === undefined ? undefined : trace.getSpan(ctx);
  if (span === undefined || !span.isRecording()) return;
  span.setAttributes({
    'sentinel.turn.reason': end.reason,
    'gen_ai.usage.input_tokens': end.inputTokens,
    'gen_ai.usage.output_tokens': end.outputTokens,
  });
  if (end.errorCode !== undefined) {
    span.setAttribute('error.type', end.errorCode);
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
}

/** One model call as the GenAI conventions describe it. */
export interface ProviderCallInfo {
  /** `gen_ai.provider.name`: the image's `model.provider` (`openai`, `anthropic`, `ollama`, `echo`). */
  provider: string;
  /** `gen_ai.request.model`. */
  model: string;
  /** Recorded only with `captureContent`: the messages sent. */
  messages?: unknown;
}

/** What a provider call returned, for its span. */
export interface ProviderCallResult {
  inputTokens: number;
  outputTokens: number;
  finishReason?: string;
  /** Recorded only with `captureContent`: the answer's text. */
  output?: string;
}

/**
 * Runs one streaming model call under a CLIENT span `chat {model}`, a child of `parent` (default:
 * the active context); `result` reads what it returned. `call` starts inside the span's context,
 * so what it does before its first await (the provider's request and its traceparent) is in it.
 */
export async function traceProviderCall<T>(info: ProviderCallInfo, call: () => Promise<T>, result: (value: T) => ProviderCallResult, parent?: Context): Promise<T> {
  if (!sdkRegistered()) return call();
  const base = parent ?? context.active();
  const span = tracer.startSpan(`chat ${info.model}`, { kind: SpanKind.CLIENT }, base);
  if (isInert(span)) return call();
  if (span.isRecording()) {
    span.setAttributes({ 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': info.provider, 'gen_ai.request.model': info.model });
    if (info.messages !== undefined) span.setAttribute('gen_ai.input.messages', capped(JSON.stringify(info.messages)));
  }
  try {
    const value = await context.with(trace.setSpan(base, span), call);
    if (span.isRecording()) {
      const r = result(value);
      const attributes: Attributes = { 'gen_ai.usage.input_tokens': r.inputTokens, 'gen_ai.usage.output_tokens': r.outputTokens };
      if (r.finishReason !== undefined) attributes['gen_ai.response.finish_reasons'] = [r.finishReason];
      if (r.output !== undefined) attributes['gen_ai.output.messages'] = capped(JSON.stringify([{ role: 'assistant', parts: [{ type: 'text', content: r.output }] }]));
      span.setAttributes(attributes);
    }
    return value;
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** One tool run, as the GenAI conventions describe it. */
export interface ToolCallInfo {
  tool: string;
  /** The model's call id; absent for a client's direct `tool_request`. */
  callId?: string;
  /** Recorded only with `captureContent`. */
  arguments?: unknown;
}

/**
 * Runs one tool under an INTERNAL span `execute_tool {name}`, a child of `parent` (default: the
 * active context); `outcome` says whether it failed (and, with `captureContent`, what it returned).
 */
export async function traceToolCall<T>(info: ToolCallInfo, run: () => Promise<T>, outcome: (value: T) => { error?: string; result?: unknown }, parent?: Context): Promise<T> {
  if (!sdkRegistered()) return run();
  const base = parent ?? context.active();
  const span = tracer.startSpan(`execute_tool ${info.tool}`, { kind: SpanKind.INTERNAL }, base);
  if (isInert(span)) return run();
  if (span.isRecording()) {
    span.setAttributes({ 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': info.tool, 'gen_ai.tool.type': 'function' });
    if (info.callId !== undefined) span.setAttribute('gen_ai.tool.call.id', info.callId);
    if (info.arguments !== undefined) span.setAttribute('gen_ai.tool.call.arguments', capped(JSON.stringify(info.arguments)));
  }
  try {
    const value = await context.with(trace.setSpan(base, span), run);
    if (span.isRecording()) {
      const o = outcome(value);
      if (o.error !== undefined) {
        span.setAttribute('error.type', 'tool_error');
        span.setStatus({ code: SpanStatusCode.ERROR, message: o.error });
      } else if (o.result !== undefined) {
        span.setAttribute('gen_ai.tool.call.result', capped(JSON.stringify(o.result) ?? ''));
      }
    }
    return value;
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}

function failSpan(span: Span, err: unknown): void {
  if (!span.isRecording()) return;
  const code = (err as { code?: unknown } | null)?.code;
  span.setAttribute('error.type', typeof code === 'string' ? code : err instanceof Error ? err.name : 'error');
  // A SentinelError's message is written for clients (upstream text already sanitized), so it is
  // fit for a trace too; any other error's message may carry internals and stays out.
  span.setStatus({ code: SpanStatusCode.ERROR, ...(isSentinelError(err) && err.code !== 'internal' ? { message: err.message } : {}) });
}

// ---- store and bus ------------------------------------------------------------------------

/**
 * `target` with every method wrapped: while a recording span is active, a call of a method that
 * `traced` accepts runs under a CLIENT span made by `name`; otherwise it is the plain call (one
 * check of the active span). Methods run with `target` as `this`, so classes with private fields
 * keep working, and properties that are not functions are read through.
 */
function instrumentMethods<T extends object>(target: T, traced: (method: string) => boolean, spanFor: (method: string) => { name: string; kind: SpanKind; attributes: Attributes }): T {
  const wrapper = Object.create(target) as Record<string, unknown>;
  const seen = new Set<string>();
  for (let proto: object | null = target; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key === 'constructor' || seen.has(key)) continue;
      seen.add(key);
      const descriptor = Object.getOwnPropertyDescriptor(proto, key);
      if (descriptor?.get !== undefined) {
        // Read on the target: a getter over private fields fails with the wrapper as `this`.
        Object.defineProperty(wrapper, key, { get: () => (target as Record<string, unknown>)[key], enumerable: descriptor.enumerable ?? false });
        continue;
      }
      if (typeof descriptor?.value !== 'function') continue;
      // Looked up on the target at each call, not taken from the prototype now: a target that is
      // a Proxy (tests do that) or whose methods are replaced later keeps working.
      const call = (args: unknown[]): unknown => (Reflect.get(target, key) as (...a: unknown[]) => unknown).apply(target, args);
      if (!traced(key)) {
        wrapper[key] = (...args: unknown[]): unknown => call(args);
        continue;
      }
      const { name, kind, attributes } = spanFor(key);
      wrapper[key] = (...args: unknown[]): unknown => {
        if (!recordingSpanActive()) return call(args);
        const span = tracer.startSpan(name, { kind, attributes });
        let result: unknown;
        try {
          result = context.with(trace.setSpan(context.active(), span), () => call(args));
        } catch (err) {
          failSpan(span, err);
          span.end();
          throw err;
        }
        if (result instanceof Promise) {
          return result.then(
            (value: unknown) => {
              span.end();
              return value;
            },
            (err: unknown) => {
              failSpan(span, err);
              span.end();
              throw err;
            },
          );
        }
        span.end();
        return result;
      };
    }
  }
  return wrapper as T;
}

/** Store methods that are not data operations (no span). */
const UNTRACED_STORE_METHODS = new Set(['close', 'migrate', 'registryBackend']);

/**
 * The store with a CLIENT span per operation (`db.system.name`: `sqlite` or `postgresql`;
 * `db.operation.name`: the Store method), made only while a recording span is active, so an
 * untraced request pays one check per call.
 */
export function instrumentStore<T extends object>(store: T, system: string): T {
  return instrumentMethods(
    store,
    (method) => !UNTRACED_STORE_METHODS.has(method) && !method.startsWith('_'),
    (method) => ({ name: method, kind: SpanKind.CLIENT, attributes: { 'db.system.name': system, 'db.operation.name': method } }),
  );
}

/** The bus with a PRODUCER span per publish (`messaging.system`: `redis` or `sentinel` for the in-process bus), only while a recording span is active. */
export function instrumentBus<T extends { publish(...args: never[]): void }>(bus: T, system: string): T {
  return instrumentMethods(
    bus,
    (method) => method === 'publish',
    () => ({
      name: 'send agent',
      kind: SpanKind.PRODUCER,
      attributes: { 'messaging.system': system, 'messaging.operation.name': 'send', 'messaging.operation.type': 'send', 'messaging.destination.name': 'agent' },
    }),
  );
}
