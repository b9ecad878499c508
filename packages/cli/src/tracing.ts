/**
 * OpenTelemetry for `sentinel api` (docs/ARCHITECTURE.md#observability): the Node SDK with the
 * OTLP exporter, registered only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Everything else comes from the SDK's own reading
 * of the standard variables: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
 * `OTEL_TRACES_SAMPLER`(`_ARG`), `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` (`http/protobuf` by
 * default, `http/json`, `grpc`), `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `OTEL_PROPAGATORS`.
 * The core only uses `@opentelemetry/api`; an app that embeds the library registers its own SDK.
 */
import { ROOT_CONTEXT, type Context, type ContextManager } from '@opentelemetry/api';
import type { NodeSDK } from '@opentelemetry/sdk-node';

/**
 * A context manager without async tracking: `with` makes a context active for the synchronous
 * run of its function only, like the web SDK's StackContextManager. The SDK's default
 * (AsyncLocalStorage) enables Node 20's promise hooks for every promise of the process, which
 * cost about a third of the CPU of a cheap request (docs/BENCHMARKS.md#tracing); the core
 * carries the context across its own awaits instead (the request, the upgrade, the turn, the
 * provider and tool calls take their parent explicitly), so it needs none. What a context does
 * not reach after an await is a store read or bus publish deep in a handler: no span then.
 */
export class SyncContextManager implements ContextManager {
  #current: Context = ROOT_CONTEXT;

  active(): Context {
    return this.#current;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    const previous = this.#current;
    this.#current = ctx;
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.#current = previous;
    }
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as unknown as (...args: unknown[]) => unknown;
    const run = this.with.bind(this);
    // A plain function, not an arrow: the bound function keeps the `this` it is called with.
    return function (this: unknown, ...args: unknown[]) {
      return run(ctx, () => fn.apply(this, args));
    } as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.#current = ROOT_CONTEXT;
    return this;
  }
}

/** A registered SDK. */
export interface TracingHandle {
  /** Where spans go (for the start-up log line; no credentials, the endpoint only). */
  readonly endpoint: string;
  /** Exports the spans still buffered, then unregisters. Never rejects (a collector that is down must not fail the shutdown). */
  shutdown(): Promise<void>;
}

/** The name spans are exported under when `OTEL_SERVICE_NAME` does not say otherwise. */
export const DEFAULT_SERVICE_NAME = 'sentinel-api';

function isSet(value: string | undefined): value is string {
  return value !== undefined && value.trim() !== '';
}

/**
 * Starts the Node SDK when `env` names an OTLP endpoint (and `OTEL_SDK_DISABLED` is not
 * `true`); resolves to undefined otherwise, and nothing is loaded. The SDK itself reads
 * `process.env`, so `env` should be it.
 */
export async function startTracing(env: NodeJS.ProcessEnv, serviceVersion: string): Promise<TracingHandle | undefined> {
  const endpoint = isSet(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) ? env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT : env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!isSet(endpoint) || env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  // Loaded only when asked for: the SDK and its exporters are a few MB the default start skips.
  const { NodeSDK: Sdk, resources } = await import('@opentelemetry/sdk-node');
  const sdk: NodeSDK = new Sdk({
    // Our spans only: no auto-instrumentation of node:http or undici (the core makes the spans
    // it wants and puts traceparent on what it sends), no OTel metrics (Prometheus serves them)
    // and no OTel logs (the JSON lines on stdout carry trace_id and span_id instead).
    instrumentations: [],
    contextManager: new SyncContextManager(),
    metricReaders: [],
    logRecordProcessors: [],
    // Merged under what the environment detector finds, so OTEL_RESOURCE_ATTRIBUTES wins.
    resource: resources.defaultResource().merge(resources.resourceFromAttributes({ 'service.name': DEFAULT_SERVICE_NAME, 'service.version': serviceVersion })),
  });
  sdk.start();
  let stopped: Promise<void> | undefined;
  return {
    endpoint: safeEndpoint(endpoint),
    shutdown: () => (stopped ??= sdk.shutdown().catch(() => undefined)),
  };
}

/** `scheme://host:port/path` without credentials or query, for a log line. */
function safeEndpoint(value: string): string {
  try {
    const url = new URL(value);
    return `${url.origin}${url.pathname === '/' ? '' : url.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
