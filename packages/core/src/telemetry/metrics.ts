/**
 * Prometheus metrics (issue 18, docs/ARCHITECTURE.md#observability): one `prom-client` Registry
 * per API instance, never the library's global one, so two APIs in one process keep their own
 * series. The instrumentation points (HTTP listener, WebSocket connections, turn runner, store,
 * journal, bus) call the small methods below; each hands out label children cached once per
 * label combination, so the hot paths do a map lookup and an observe, nothing more.
 *
 * Label values are bounded by construction: route templates (never raw paths), WebSocket
 * channel names, turn end reasons, provider names (those registered), error codes (the
 * ErrorCode list), store method names, and model names capped at {@link DEFAULT_MODEL_LABEL_CAP}
 * distinct values (the rest are `other`). No user names, agent ids or paths.
 */
import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isSentinelError } from '../contract/errors.js';
import { HotCounter, HotHistogram } from './hot-metrics.js';

/** Distinct `gen_ai_request_model` values kept before new models are counted as `other`. */
export const DEFAULT_MODEL_LABEL_CAP = 100;

/** The label value of models past the cap, of requests no route matched, and of unknown methods. */
export const OTHER_LABEL = 'other';

/** Options of {@link SentinelMetrics}. */
export interface SentinelMetricsOptions {
  /** Also export prom-client's default process metrics (CPU, heap, event loop lag, GC). Default true. */
  processMetrics?: boolean;
  /** Distinct `gen_ai_request_model` label values before new ones become `other`. Default 100. */
  modelLabelCap?: number;
}

/** The WebSocket channels (the endpoint names of protocol/endpoints.ts). */
export type WebSocketChannel = 'chat' | 'events';

/** The counters of one WebSocket channel, resolved once per transport. */
export interface WebSocketChannelMetrics {
  opened(): void;
  closed(): void;
  /** One frame from the client. */
  received(): void;
  /** One frame to the client. */
  sent(): void;
  /** A socket closed with 1008 because its consumer was too slow. */
  slowConsumerClosed(): void;
}

/** What one provider call records; from {@link SentinelMetrics.providerCall}. */
export interface ProviderCallMetrics {
  /** The call's duration (first request byte to the last event), in seconds. */
  duration(seconds: number): void;
  /** Tokens the provider reported for this call. */
  tokens(input: number, output: number): void;
}

/** Snapshot of the runtime's queues, read at scrape time. */
export interface TurnQueueStats {
  /** Turns waiting behind a running one, over every agent. */
  queued: number;
  /** Turns running (holding or waiting for their agent's lock). */
  running: number;
}

// Seconds. A health check answers in tens of µs, a registry push can take minutes.
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// The OTel GenAI semantic conventions' advised boundaries (gen_ai.client.operation.duration, gen_ai.client.token.usage).
const GEN_AI_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const GEN_AI_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
// A turn spans model rounds and tool calls: from an echo turn (ms) to minutes.
const TURN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
// SQLite answers in µs, PostgreSQL in ms.
const STORE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

// Node's HTTP parser accepts only these (and a few more WebDAV ones), so the label stays bounded anyway.
const KNOWN_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

type Observe = (seconds: number) => void;

let processRegistry: Registry | undefined;

/**
 * prom-client's default metrics, once per process, in a registry of ours (not the library's
 * global one). They describe the process, which every API instance in it shares; collecting
 * them per instance would leave a GC observer and an event-loop monitor behind for each API
 * ever created (prom-client offers no way to stop them), which a test run creating hundreds
 * of APIs in one worker pays for on every GC.
 */
function sharedProcessRegistry(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
type CounterChild = ReturnType<Counter<string>['labels']>;

/**
 * The metrics of one API instance: `createSentinelApi` makes it (unless `metrics: false`), the
 * transports and the core record into it, and `GET /metrics` serves {@link text}.
 */
export class SentinelMetrics {
  /** The instance's own registry (never prom-client's global `register`); the process metrics are in {@link processRegistry}. */
  readonly registry: Registry;
  /** The process metrics (CPU, memory, event loop lag, GC), one registry per process; undefined with `processMetrics: false`. */
  readonly processRegistry: Registry | undefined;
  /** The `Content-Type` of {@link text} (Prometheus text exposition format 0.0.4). */
  readonly contentType: string;

  readonly #http: HotHistogram;
  /** method → route → status → observer: no string is built per request. */
  readonly #httpChildren = new Map<string, Map<string, Map<number, Observe>>>();
  readonly #wsConnections: Gauge<'channel'>;
  readonly #wsMessages: HotCounter<'channel' | 'direction'>;
  readonly #wsSlowCloses: Counter;
  readonly #turns: Counter<'status'>;
  readonly #turnChildren = new Map<string, CounterChild>();
  readonly #turnDuration: Histogram;
  readonly #genAiDuration: Histogram<'gen_ai_provider_name' | 'gen_ai_request_model'>;
  readonly #genAiTokens: Histogram<'gen_ai_provider_name' | 'gen_ai_request_model' | 'gen_ai_token_type'>;
  /** provider → model (capped) → the call's children. */
  readonly #providerCalls = new Map<string, Map<string, ProviderCallMetrics>>();
  readonly #models = new Set<string>();
  readonly #modelCap: number;
  readonly #providerErrors: Counter<'provider' | 'code'>;
  readonly #storeDuration: HotHistogram;
  readonly #eventAppends: Counter;
  readonly #busPublishes: Counter;
  readonly #busReconnects: Counter;
  #queueStats: (() => TurnQueueStats) | undefined;

  constructor(options: SentinelMetricsOptions = {}) {
    const registry = new Registry();
    this.registry = registry;
    this.contentType = registry.contentType;
    this.#modelCap = options.modelLabelCap ?? DEFAULT_MODEL_LABEL_CAP;
    const registers = [registry];
    // The per-request and per-frame metrics are hot-metrics.ts's (an observation in ns, not µs).
    this.#http = new HotHistogram({
      name: 'http_server_request_duration_seconds',
      help: 'Duration of HTTP requests, by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      buckets: HTTP_BUCKETS,
      registry,
    });
    this.#wsConnections = new Gauge({ name: 'sentinel_ws_connections', help: 'Open WebSocket connections, by channel', labelNames: ['channel'], registers });
    this.#wsMessages = new HotCounter({
      name: 'sentinel_ws_messages_total',
      help: 'WebSocket frames, by channel and direction (in: from the client, out: to it)',
      labelNames: ['channel', 'direction'],
      registry,
    });
    this.#wsSlowCloses = new Counter({ name: 'sentinel_ws_slow_consumer_closes_total', help: 'WebSockets closed with 1008 because the client read too slowly', registers });
    this.#turns = new Counter({ name: 'sentinel_turns_total', help: 'Finished agent turns, by how they ended (stop, length, tool_rounds, cancelled, error, ...)', labelNames: ['status'], registers });
    this.#turnDuration = new Histogram({ name: 'sentinel_turn_duration_seconds', help: 'Duration of agent turns, queueing excluded', buckets: TURN_BUCKETS, registers });
    // Read at scrape time: the queues already know, so the turn path pays nothing for these.
    const readQueues = (): TurnQueueStats => this.#queueStats?.() ?? { queued: 0, running: 0 };
    new Gauge({
      name: 'sentinel_turn_queue_depth',
      help: 'Turns waiting behind the running one, over every agent of this instance',
      registers,
      collect() {
        this.set(readQueues().queued);
      },
    });
    new Gauge({
      name: 'sentinel_turns_running',
      help: 'Turns running on this instance',
      registers,
      collect() {
        this.set(readQueues().running);
      },
    });
    this.#genAiDuration = new Histogram({
      name: 'gen_ai_client_operation_duration_seconds',
      help: 'GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration): one model call of a turn',
      labelNames: ['gen_ai_provider_name', 'gen_ai_request_model'],
      buckets: GEN_AI_DURATION_BUCKETS,
      registers,
    });
    this.#genAiTokens = new Histogram({
      name: 'gen_ai_client_token_usage',
      help: 'Tokens per model call (OpenTelemetry gen_ai.client.token.usage), by gen_ai_token_type input or output',
      labelNames: ['gen_ai_provider_name', 'gen_ai_request_model', 'gen_ai_token_type'],
      buckets: GEN_AI_TOKEN_BUCKETS,
      registers,
    });
    this.#providerErrors = new Counter({
      name: 'sentinel_provider_errors_total',
      help: 'Failed model calls, by provider and error code',
      labelNames: ['provider', 'code'],
      registers,
    });
    this.#storeDuration = new HotHistogram({
      name: 'sentinel_store_operation_duration_seconds',
      help: 'Duration of Store operations, by backend and operation (the Store method)',
      labelNames: ['backend', 'operation'],
      buckets: STORE_BUCKETS,
      registry,
    });
    this.#eventAppends = new Counter({ name: 'sentinel_event_log_appends_total', help: 'Events appended to agents\' event logs', registers });
    this.#busPublishes = new Counter({ name: 'sentinel_bus_publish_total', help: 'Messages published on the event bus (in process or Redis)', registers });
    this.#busReconnects = new Counter({ name: 'sentinel_bus_reconnects_total', help: 'Reconnections of the Redis bus connections', registers });
    this.processRegistry = options.processMetrics ?? true ? sharedProcessRegistry() : undefined;
  }

  /** The exposition text of every metric, the process metrics included (what `GET /metrics` answers). */
  async text(): Promise<string> {
    const [own, processText] = await Promise.all([this.registry.metrics(), this.processRegistry?.metrics()]);
    return processText === undefined ? own : `${own}\n${processText}`;
  }

  /** Records one HTTP request: `route` is the route template (`/v1/agents/:id`), never the raw path. */
  observeHttpRequest(method: string, route: string, status: number, seconds: number): void {
    const methodLabel = KNOWN_METHODS.has(method) ? method : OTHER_LABEL;
    let byRoute = this.#httpChildren.get(methodLabel);
    if (byRoute === undefined) this.#httpChildren.set(methodLabel, (byRoute = new Map()));
    let byStatus = byRoute.get(route);
    if (byStatus === undefined) byRoute.set(route, (byStatus = new Map()));
    let observe = byStatus.get(status);
    if (observe === undefined) byStatus.set(status, (observe = this.#http.child(methodLabel, route, String(status))));
    observe(seconds);
  }

  /** The counters of one WebSocket channel (resolve once, then call per frame). */
  webSocketChannel(channel: WebSocketChannel): WebSocketChannelMetrics {
    const connections = this.#wsConnections.labels(channel);
    const received = this.#wsMessages.child({ channel, direction: 'in' });
    const sent = this.#wsMessages.child({ channel, direction: 'out' });
    const slow = this.#wsSlowCloses;
    // Series exist from the start, so a rate() over them has a zero to start from.
    connections.inc(0);
    return {
      opened: () => connections.inc(),
      closed: () => connections.dec(),
      received: () => received.inc(),
      sent: () => sent.inc(),
      slowConsumerClosed: () => slow.inc(),
    };
  }

  /** Where the queue gauges read from at scrape time (the runtime's queues). */
  watchTurnQueues(stats: () => TurnQueueStats): void {
    this.#queueStats = stats;
  }

  /** One finished turn: `status` is its end reason (`stop`, `error`, ...), `seconds` its duration. */
  turnEnded(status: string, seconds: number): void {
    let child = this.#turnChildren.get(status);
    if (child === undefined) this.#turnChildren.set(status, (child = this.#turns.labels(status)));
    child.inc();
    this.#turnDuration.observe(seconds);
  }

  /** The recorder of calls to `provider` for `model` (models past the cap count as `other`). */
  providerCall(provider: string, model: string): ProviderCallMetrics {
    let byModel = this.#providerCalls.get(provider);
    if (byModel === undefined) this.#providerCalls.set(provider, (byModel = new Map()));
    const cached = byModel.get(model);
    if (cached !== undefined) return cached;
    const modelLabel = this.#models.has(model) || this.#models.size < this.#modelCap ? model : OTHER_LABEL;
    if (modelLabel === model) this.#models.add(model);
    const existing = byModel.get(modelLabel);
    if (existing !== undefined) return existing;
    const duration = this.#genAiDuration.labels(provider, modelLabel);
    const input = this.#genAiTokens.labels(provider, modelLabel, 'input');
    const output = this.#genAiTokens.labels(provider, modelLabel, 'output');
    const call: ProviderCallMetrics = {
      duration: (seconds) => duration.observe(seconds),
      tokens: (inputTokens, outputTokens) => {
        input.observe(inputTokens);
        output.observe(outputTokens);
      },
    };
    // Models past the cap share the `other` recorder and are not remembered one by one.
    byModel.set(modelLabel, call);
    return call;
  }

  /** One failed model call: `code` is the SentinelError code (`upstream_error`, `unavailable`, ...). */
  providerError(provider: string, code: string): void {
    this.#providerErrors.labels(provider, code).inc();
  }

  /** The duration recorder of one Store operation (resolve once per method). */
  storeOperation(backend: string, operation: string): (seconds: number) => void {
    return this.#storeDuration.child(backend, operation);
  }

  /** `count` events appended to agents' event logs. */
  eventsAppended(count = 1): void {
    this.#eventAppends.inc(count);
  }

  /** One message published on the bus. */
  busPublished(): void {
    this.#busPublishes.inc();
  }

  /** One reconnection of a Redis bus connection. */
  busReconnected(): void {
    this.#busReconnects.inc();
  }
}

/** One model call in progress, from {@link providerCallTimer}. */
export interface ProviderCallTimer {
  /** Adds tokens the provider reported (a call may report in several events). */
  tokens(input: number, output: number): void;
  /** The call failed (not aborted): counted in `sentinel_provider_errors_total` by its SentinelError code. */
  failed(err: unknown): void;
  /** The call is over: records its duration and, when any were reported, its tokens. Idempotent. */
  end(): void;
}

/** Starts timing one call of `provider` for `model` (the turn runner's provider-call instrumentation point). */
export function providerCallTimer(metrics: SentinelMetrics, provider: string, model: string): ProviderCallTimer {
  const started = performance.now();
  const recorder = metrics.providerCall(provider, model);
  let input = 0;
  let output = 0;
  let reported = false;
  let ended = false;
  return {
    tokens(i, o) {
      // Providers report counts; anything else (NaN, negative) would poison the sums.
      if (Number.isFinite(i) && i > 0) input += Math.floor(i);
      if (Number.isFinite(o) && o > 0) output += Math.floor(o);
      reported = true;
    },
    failed(err) {
      metrics.providerError(provider, isSentinelError(err) ? err.code : 'internal');
    },
    end() {
      if (ended) return;
      ended = true;
      recorder.duration((performance.now() - started) / 1000);
      if (reported) recorder.tokens(input, output);
    },
  };
}
