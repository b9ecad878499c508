/**
 * `createSentinelApi`: the composition root of the core. It opens the data directory and the
 * Store, makes the token key, wires the services and compiles the route table once; the
 * transports (HTTP, WebSocket) use only what it returns.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { AgentService } from './agents/service.js';
import { compileRoute, defaultDataDir, invokeRoute, type CredentialSurface, type SentinelApiOptions, type SentinelApiSurface } from './api.js';
import { resolveTokenSecret } from './auth/secret.js';
import { ApiKeyService } from './auth/api-keys.js';
import { AuditLog } from './auth/audit-log.js';
import type { AuditRecorder } from './contract/audit.js';
import { OidcVerifier } from './auth/oidc.js';
import { QuotaService } from './auth/quotas.js';
import { AuthService } from './auth/service.js';
import { RateLimiter } from './auth/rate-limit.js';
import { CredentialRevocations, TokenRevocations } from './auth/revocations.js';
import { TicketService } from './auth/tickets.js';
import { TokenService } from './auth/tokens.js';
import { UserService } from './auth/users.js';
import { decodeBody } from './body.js';
import { createLocalEventBus, type EventBus } from './bus.js';
import type { RedisScaleOut } from './redis/index.js';
import { dataDirectoryUnusable, SentinelError } from './contract/errors.js';
import { ImageService } from './images/service.js';
import { AgentJournal } from './journal.js';
import { silentLogger } from './contract/logger.js';
import { createModelProviders, describeProviderSettings, resolveProviderSettings } from './providers/config.js';
import { EchoProvider } from './providers/echo.js';
import { ProviderCatalog } from './providers/catalog.js';
import type { RegistryBackend } from './registry/backends/types.js';
import { RegistryService } from './registry/service.js';
import { buildRouteTable } from './routes/index.js';
import { AgentChatService } from './protocol/chat.js';
import { createEventRetention, withEventRetention } from './runtime/event-retention.js';
import { AgentEventsService } from './protocol/events.js';
import type { ChatService, EventsService } from './protocol/frames.js';
import { AgentRuntime } from './runtime/runtime.js';
import { RunJournal } from './runs/journal.js';
import { RunService } from './runs/service.js';
import { openSqliteStore, SqliteStore } from './store/sqlite/store.js';
import type { Store } from './store/types.js';
import { calculatorTool } from './tools/calculator.js';
import { currentTimeTool } from './tools/current-time.js';
import { createHttpFetchTool } from './tools/http-fetch.js';
import { ToolSet } from './tools/tool-set.js';
import { createWebSearchTool } from './tools/web-search.js';
import { sentinelVersion } from './version.js';
import { deliverRunWebhooks, WebhookDispatcher } from './webhooks/dispatcher.js';
import { WebhookSecrets } from './webhooks/secrets.js';
import { AgentWebhookDefaults } from './webhooks/agent-webhooks.js';
import { countBusPublishes } from './telemetry/instrument-bus.js';
import { instrumentStore } from './telemetry/instrument-store.js';
import { SentinelMetrics } from './telemetry/metrics.js';
import { instrumentBus, instrumentStore as traceStore } from './telemetry/tracing.js';

export interface SentinelApi extends SentinelApiSurface, CredentialSurface {
  readonly store: Store;
  readonly users: UserService;
  /** Per-user quotas on turns, tokens and agents (counters in Redis with a bus). */
  readonly quotas: QuotaService;
  readonly authService: AuthService;
  /** Scoped API keys (`Bearer sk_sentinel_…`): create, list, revoke, resolve. */
  readonly apiKeys: ApiKeyService;
  readonly tokens: TokenService;
  /** The revoked-token list (logout). */
  readonly tokenRevocations: TokenRevocations;
  /** One-time WebSocket tickets. */
  readonly tickets: TicketService;
  readonly agents: AgentService;
  readonly images: ImageService;
  readonly bus: EventBus;
  readonly journal: AgentJournal;
  /**
   * The audit log (store table `audit_log`): routes record logins, user, password and image
   * changes through it; `record()` for an embedding app's own actions, `list()` to read it
   * (as `GET /v1/audit` does). Closed (its queue written) by `close()`.
   */
  readonly audit: AuditLog;
  /** The chat protocol (`/v1/agents/{id}/chat`) for transports. */
  readonly chat: ChatService;
  /** The events stream (`/v1/agents/{id}/events`) for transports. */
  readonly events: EventsService;
  /** Runs agents' turns. */
  readonly runtime: AgentRuntime;
  /** Runs (docs/ARCHITECTURE.md#runs): create, get, list, wait, cancel, subscribe to a run's frames. */
  readonly runs: RunService;
  /** The users' webhook signing secrets (`whsec_…`), made on first use. */
  readonly webhookSecrets: WebhookSecrets;
  /** Delivers runs' webhooks (signed, retried, recorded); every instance's dispatcher takes part. Closed by `close()`. */
  readonly webhooks: WebhookDispatcher;
  /**
   * Tools agents may call (built-ins: `calculator`, `current_time`, `http_fetch`, `web_search`);
   * register your own with `api.tools.register({ name, description, parameters, run })`
   * (see {@link ToolSet}); images that list the name may then use it.
   */
  readonly tools: ToolSet;
  /** Model providers by name (built-in: `echo`, `openai`, `anthropic`, `ollama`); register your own here. */
  readonly providers: ProviderCatalog;
  /** Push, pull and search agent images (the default registry, or the embedded one: in PostgreSQL with that store, else under `<dataDir>/registry`). */
  readonly registry: RegistryService;
  /**
   * Ends every turn with reason `shutdown` (partial answers are kept), then closes chat
   * sessions and event subscriptions with `shutdown` (WebSocket 1001). Refuses new ones.
   * Idempotent; `close()` calls it first.
   */
  shutdown(): Promise<void>;
  /** The data directory in use (created only when the SQLite file or the token secret lives there). */
  readonly dataDir: string;
  /** This instance's Prometheus metrics (`GET /metrics`); undefined with `metrics: false`. */
  readonly metrics: SentinelMetrics | undefined;
  /** Set only when this start created the admin with a generated password (print it once; never log it). */
  readonly generatedAdminPassword?: string;
}

const ERRNO_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOTDIR: 'a path component is not a directory',
  EEXIST: 'a file is in the way',
  ENOSPC: 'no space left on device',
  ENOENT: 'it cannot be created there',
};

function shortReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && ERRNO_REASONS[code]) return ERRNO_REASONS[code];
  return err instanceof Error ? err.message : String(err);
}

/**
 * The registry back end a store offers for the embedded registry (the PostgreSQL store's
 * `registryBackend()`), found by shape so this module never imports the pg-backed code.
 */
function embeddedRegistryOf(store: Store): RegistryBackend | undefined {
  const offer = (store as Partial<{ registryBackend: () => RegistryBackend }>).registryBackend;
  return typeof offer === 'function' ? offer.call(store) : undefined;
}

/**
 * `mkdir -p`, one component at a time from the root down. Node's `mkdir({recursive: true})`
 * retries forever at 100 % CPU where a parent exists but refuses children with ENOENT (procfs,
 * sysfs: `--data-dir /proc/x`); here every component is tried once, so a bad path fails at once.
 */
async function makeDirs(dir: string): Promise<void> {
  const absolute = resolve(dir);
  const parts: string[] = [];
  for (let current = absolute; ; current = dirname(current)) {
    parts.unshift(current);
    if (dirname(current) === current) break;
  }
  for (const part of parts) {
    try {
      await mkdir(part, { mode: 0o700 });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'EEXIST') throw err;
      if (!(await stat(part)).isDirectory()) throw Object.assign(new Error(`${part} is not a directory`), { code: 'ENOTDIR' });
    }
  }
}

/** Creates the directory (mode 0700: it holds the token secret and every user's data) and checks it is writable. */
async function prepareDataDir(dir: string): Promise<void> {
  try {
    await makeDirs(dir);
    await access(dir, fsConstants.W_OK);
  } catch (err) {
    throw dataDirectoryUnusable(dir, shortReason(err), err);
  }
}

/**
 * Starts the core: data directory (default `SENTINEL_DATA_DIR` or `~/.sentinel`), Store
 * (`options.store`, else PostgreSQL at `options.storeUrl`, else SQLite at
 * `<dataDir>/sentinel.db`), token key, services, the first admin (only
 * when the Store has no users), the starter image `sentinel/echo:latest`, and the compiled
 * route table. `shutdown()` ends turns and streams; `close()` (idempotent) calls it, then
 * closes the bus and the Store: a Store passed in through `options.store` is closed too (the
 * API owns it from then on). If start-up fails, a Store opened here is closed; a Store passed
 * in is left open for its caller.
 * Errors: SentinelError `unavailable` when the data directory or the Store cannot be used,
 * `invalid_request` when `storeUrl` is not a postgres:// URL.
 */
export async function createSentinelApi(options: SentinelApiOptions = {}): Promise<SentinelApi> {
  const logger = options.logger ?? silentLogger;
  const dataDir = options.dataDir ?? defaultDataDir();
  // An embedding app that brings its own Store and secret needs no directory on disk.
  if (!options.store || options.tokenSecret === undefined) await prepareDataDir(dataDir);

  // Per instance: two APIs in one process must not share (or collide in) prom-client's global registry.
  const metrics = options.metrics === false ? undefined : new SentinelMetrics(options.metrics === true ? {} : options.metrics);
  let store: Store;
  if (options.store) {
    store = options.store;
  } else if (options.storeUrl !== undefined) {
    // Scale-out (docs/ARCHITECTURE.md#scale-out): the PostgreSQL store and its driver load only when asked for.
    const { openPostgresStore } = await import('./store/postgres/index.js');
    const postgres = await openPostgresStore({ url: options.storeUrl, logger });
    logger.info('store on postgres', { url: postgres.url });
    store = postgres;
  } else {
    try {
      store = await openSqliteStore({ path: join(dataDir, 'sentinel.db') });
    } catch (err) {
      throw dataDirectoryUnusable(dataDir, shortReason(err), err);
    }
  }
  // Scale-out (docs/ARCHITECTURE.md#scale-out): with a bus URL, Redis (loaded only then) carries the bus, the
  // per-agent turn lock, the login throttle and user invalidations between instances.
  let redis: RedisScaleOut | undefined;
  if (options.busUrl !== undefined) {
    try {
      redis = await (await import('./redis/index.js')).openRedisScaleOut({ url: options.busUrl, logger, ...(metrics ? { onReconnect: () => metrics.busReconnected() } : {}) });
    } catch (err) {
      if (!options.store) await store.close().catch(() => undefined);
      throw err;
    }
    logger.info('event bus on redis', { url: redis.bus.displayUrl, key_prefix: redis.bus.keyPrefix });
  }
  const storeKind = options.store ? 'custom' : options.storeUrl !== undefined ? 'postgres' : 'sqlite';
  if (metrics) store = instrumentStore(store, metrics, storeKind);
  // Spans per store operation and bus publish, made only inside a recorded trace.
  store = traceStore(store, storeKind === 'postgres' ? 'postgresql' : storeKind);
  const rawBus = redis?.bus ?? createLocalEventBus({ logger });
  // Retention watches every event on its way through the bus, whoever wrote it.
  const bus = instrumentBus(
    withEventRetention(
      metrics ? countBusPublishes(rawBus, metrics) : rawBus,
      createEventRetention({ store, logger, ...(options.eventRetention === undefined ? {} : { keepLast: options.eventRetention }) }),
    ),
    redis ? 'redis' : 'sentinel',
  );
  try {
    // openPostgresStore and openSqliteStore migrate before they return (so a schema problem is
    // reported as "cannot open database"); only a Store passed in may still need it. Calling it
    // again cost a second transaction and advisory-lock round trip on PostgreSQL at every start.
    if (options.store) await store.migrate();
    const key = await resolveTokenSecret({ dataDir, ...(options.tokenSecret === undefined ? {} : { secret: options.tokenSecret }) });
    const tokens = new TokenService({ key, ...(options.tokenTtlSeconds === undefined ? {} : { ttlSeconds: options.tokenTtlSeconds }) });
    const users = new UserService({ store, logger, ...(redis ? { changes: redis.bus.userChanges } : {}) });
    const audit = new AuditLog({ store, logger });
    // An embedding app's recorder sees every event too; the store's log keeps them either way.
    const extraAudit = options.audit;
    const auditRecorder: AuditRecorder = extraAudit === undefined ? audit : { record: (event) => { audit.record(event); extraAudit.record(event); } };
    // Every way a credential stops being valid ends here, for the transports to close what it opened.
    const credentialRevocations = new CredentialRevocations({ logger });
    users.watch((username) => credentialRevocations.emit(username === null ? {} : { username }));
    const tokenRevocations = new TokenRevocations({
      store,
      logger,
      onRevoked: (revocation) => credentialRevocations.emit(revocation),
      ...(redis ? { feed: redis.revocations } : {}),
    });
    await tokenRevocations.load();
    // Key revocations ride the user-change feed: every instance drops the owner's cached keys.
    const apiKeys = new ApiKeyService({
      store, users, logger,
      onRevoked: (revocation) => credentialRevocations.emit(revocation),
      ...(redis ? { changes: redis.bus.userChanges } : {}),
    });
    const oidc = options.oidc === undefined ? undefined : new OidcVerifier({ ...options.oidc, logger });
    const authService = new AuthService({
      users, tokens, logger, keys: apiKeys, revocations: tokenRevocations,
      ...(redis ? { throttle: redis.loginLimiter } : {}),
      ...(oidc ? { oidc } : {}),
      audit: auditRecorder,
    });
    if (oidc) logger.info('openid connect tokens accepted', { issuer: oidc.issuer, audience: oidc.audience });
    const tickets = new TicketService({ ...(redis ? { store: redis.tickets } : {}), ...(options.wsTicketTtlMs === undefined ? {} : { ttlMs: options.wsTicketTtlMs }) });
    // Counters in Redis with a bus, so every instance counts a user's day against the same numbers.
    const quotas = new QuotaService({ users, store, logger, ...(redis ? { counters: redis.usageCounters } : {}) });
    const journal = new AgentJournal({ store, bus, logger, ...(metrics ? { metrics } : {}) });
    const rateLimiter =
      options.rateLimits === false ? undefined : new RateLimiter({ limits: options.rateLimits ?? {}, ...(redis ? { store: redis.rateLimitStore } : {}) });
    const { echoChunkDelayMs, ...runtimeKnobs } = options.runtime ?? {};
    const providers = new ProviderCatalog().register(new EchoProvider(echoChunkDelayMs === undefined ? {} : { chunkDelayMs: echoChunkDelayMs }));
    const providerSettings = await resolveProviderSettings(options.providers ?? {}, dataDir);
    for (const provider of createModelProviders(providerSettings, { logger })) providers.register(provider);
    logger.info('model providers configured', describeProviderSettings(providerSettings));
    const tools = new ToolSet()
      .register(calculatorTool)
      .register(currentTimeTool)
      .register(createHttpFetchTool(options.httpFetch))
      .register(createWebSearchTool(options.webSearch));
    // The live registries: a build naming a tool or provider this server lacks is refused, and
    // what an embedding app registers later counts from then on.
    const images = new ImageService({ store, logger, journal, tools, providers });
    const runtime = new AgentRuntime({ ...runtimeKnobs, captureContent: options.tracing?.captureContent === true, store, journal, images, providers, tools, logger, bus, quota: quotas, ...(redis ? { turnLock: redis.turnLock } : {}), ...(metrics ? { metrics } : {}) });
    const webhookSecrets = new WebhookSecrets({ store });
    const webhooks = new WebhookDispatcher({ ...options.webhooks, store, secrets: webhookSecrets, logger: logger.child({ component: 'webhooks' }) });
    // The edge checks webhook URLs with the policy the dispatcher delivers under.
    const webhookPolicy = { allowPrivateAddresses: webhooks.allowPrivateAddresses, ...(options.webhooks?.resolver ? { resolver: options.webhooks.resolver } : {}) };
    const agents = new AgentService({ store, images, journal, runtime, logger, quota: quotas, webhookPolicy });
    const agentWebhookDefaults = new AgentWebhookDefaults(store);
    const runsOptions = options.runs ?? {};
    const runJournal = new RunJournal({
      store,
      bus,
      logger,
      ...(runsOptions.journal === undefined ? {} : { enabled: runsOptions.journal }),
      ...(runsOptions.flushIntervalMs === undefined ? {} : { flushIntervalMs: runsOptions.flushIntervalMs }),
    });
    const liveness = redis ? (await import('./redis/instance-liveness.js')).createRedisInstanceLiveness(redis.bus) : undefined;
    const runs = new RunService({
      store,
      agents,
      runtime,
      journal: runJournal,
      bus,
      logger,
      instanceId: randomUUID(),
      webhookPolicy,
      agentWebhook: (agentId: string) => agentWebhookDefaults.get(agentId),
      // One group commit per turn of the loop, in issue order: a keyless run's row joins its turn's first commit.
      orderedWrites: store instanceof SqliteStore,
      ...(liveness ? { liveness } : {}),
      ...(runsOptions.idempotencyWindowMs === undefined ? {} : { idempotencyWindowMs: runsOptions.idempotencyWindowMs }),
      ...(runsOptions.heartbeatMs === undefined ? {} : { heartbeatMs: runsOptions.heartbeatMs }),
      ...(runsOptions.sweepIntervalMs === undefined ? {} : { sweepIntervalMs: runsOptions.sweepIntervalMs }),
      ...(runsOptions.approvalTimeoutMs === undefined ? {} : { approvalTimeoutMs: runsOptions.approvalTimeoutMs }),
      ...(runsOptions.approvalSweepIntervalMs === undefined ? {} : { approvalSweepIntervalMs: runsOptions.approvalSweepIntervalMs }),
    });
    // Subscribed before the start-up sweep, so runs it ends `interrupted` are announced too
    // (stored now, delivered once the dispatcher starts).
    deliverRunWebhooks(runs, webhooks, logger);
    // Before anything is served: runs an earlier start (or a dead instance) left running end `interrupted`.
    await runs.start();
    const chat = new AgentChatService({ agents, runtime, runs, bus, logger, ...(rateLimiter ? { rateLimiter } : {}) });
    const events = new AgentEventsService({ store, bus, agents, logger });
    // With the PostgreSQL store the embedded registry lives in the database, so instances that
    // share it share their registry too; otherwise it is the OCI layouts under the data dir.
    const sharedRegistry = options.registry?.url ? undefined : embeddedRegistryOf(store);
    const registry = new RegistryService({
      store,
      images,
      embeddedRoot: join(dataDir, 'registry'),
      logger,
      ...(options.registry ? { registry: options.registry } : {}),
      ...(sharedRegistry ? { embedded: sharedRegistry } : {}),
    });

    const adminPassword = options.adminPassword ?? process.env.SENTINEL_ADMIN_PASSWORD;
    const admin = await users.ensureAdmin({
      username: options.adminUsername ?? process.env.SENTINEL_ADMIN_USER ?? 'admin',
      ...(adminPassword ? { password: adminPassword } : {}),
    });
    await images.ensureStarterImage();

    const routes = buildRouteTable({
      auth: authService, users, quotas, agents, images, bus, events, runs, registry, store, keys: apiKeys, audit: auditRecorder, auditLog: audit, tickets,
      webhooks: { secrets: webhookSecrets, runs, store },
      version: { store: storeKind, bus: redis ? 'redis' : 'local' },
      openapi: { version: sentinelVersion() },
    }).map(compileRoute);
    let shuttingDown: Promise<void> | undefined;
    let closing: Promise<void> | undefined;
    const shutdown = () =>
      (shuttingDown ??= (async () => {
        // Turns first, so their last frames (reason "shutdown") go out before the sessions close.
        await runtime.shutdown();
        // Runs ended by the shutdown (failed / interrupted) are written before the sessions close.
        await runs.close();
        chat.shutdown();
        events.shutdown();
      })());
    const api: SentinelApi = {
      routes,
      logger,
      store,
      users,
      quotas,
      authService,
      apiKeys,
      tokens,
      tokenRevocations,
      tickets,
      credentialRevocations,
      agents,
      images,
      bus,
      journal,
      audit,
      chat,
      events,
      runtime,
      runs,
      webhookSecrets,
      webhooks,
      tools,
      providers,
      registry,
      shutdown,
      dataDir,
      metrics,
      ...(admin.generatedPassword === undefined ? {} : { generatedAdminPassword: admin.generatedPassword }),
      authenticate: (authorization) => authService.authenticate(authorization),
      authenticateTicket: async (ticket, channel, agentRef) => {
        const consumed = await tickets.consume(ticket, channel);
        if (consumed.claims !== undefined) {
          // The token the ticket was minted with must still be good: logged out, or its tokens revoked, since?
          const state = await authService.checkClaims(consumed.claims);
          if (state.role !== consumed.principal.role) throw new SentinelError('unauthorized', 'the account changed since this ticket was issued');
          authService.bindClaims(consumed.principal, consumed.claims);
        }
        let agentId: string;
        try {
          agentId = (await agents.getRecord(consumed.principal, agentRef)).id;
        } catch {
          throw new SentinelError('unauthorized', 'ticket is for another agent');
        }
        if (agentId !== consumed.agentId) throw new SentinelError('unauthorized', 'ticket is for another agent');
        return consumed.principal;
      },
      recheckCredential: (principal) => authService.recheck(principal),
      invoke: (route, raw, ctx) => invokeRoute(route, raw, ctx, decodeBody, rateLimiter),
      close: () =>
        (closing ??= (async () => {
          await shutdown();
          // After the turns ended, so their last transitions' deliveries are stored; attempts under way finish (each bounded by its timeout).
          await webhooks.close();
          // After the turns ended: their upstream requests were aborted, so the pools hold only idle sockets.
          tokenRevocations.close();
          await providers.close();
          await registry.close();
          rateLimiter?.close();
          // The last "last used" times, while the store is still open.
          await apiKeys.close();
          await bus.close();
          // Last before the store: whatever the shutdown itself recorded is written too.
          await audit.close();
          await store.close();
        })()),
    };
    webhooks.start();
    logger.info('sentinel api ready', { data_dir: dataDir, routes: routes.length, admin_created: admin.created, registry: registry.defaultRegistry });
    return api;
  } catch (err) {
    await bus.close();
    if (!options.store) await store.close().catch(() => undefined);
    throw err;
  }
}
