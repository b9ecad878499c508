/**
 * `sentinel api`: composes the core, the HTTP transport and the WebSocket transport into a
 * running server. Usable programmatically too; process concerns (signals, exit codes) stay in
 * bin.ts.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { createBatchedLineWriter, createJsonLogger, createSentinelApi, type Logger, type SentinelApi, type SentinelApiOptions } from '@sentinel/api-core';
import { listen, listenMetrics, type MetricsServer, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { CommandError, UsageError, describeFsError, oneLineMessage } from './errors.js';
import { parseApiArgs, type ApiConfig } from './parse-args.js';
import { startTracing, type TracingHandle } from './tracing.js';
import { cliVersion, shortCommit } from './version.js';

/** Anything text can be written to (process.stdout, a test buffer). */
export interface TextSink {
  write(text: string): unknown;
}

/** Where the command writes: the URL line and JSON logs to stdout, human notices to stderr. */
export interface CommandIo {
  stdout: TextSink;
  stderr: TextSink;
}

/** A started `sentinel api`. */
export interface RunningApi {
  /** Base URL the server listens on, e.g. `http://127.0.0.1:8080` (IPv6 hosts bracketed). */
  readonly url: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  readonly host: string;
  /** The composed core (services, store). */
  readonly api: SentinelApi;
  readonly server: RunningServer;
  /** The WebSocket transport (chat and events) attached to the same server. */
  readonly ws: WebSocketHandle;
  /** The `--metrics-port` listener (`GET /metrics` without auth); undefined without the flag. */
  readonly metricsServer: MetricsServer | undefined;
  /** The JSON-lines logger writing to stdout. */
  readonly logger: Logger;
  /** The OpenTelemetry SDK this start registered (OTEL_EXPORTER_OTLP_ENDPOINT set); undefined otherwise. */
  readonly tracing: TracingHandle | undefined;
  /** Set only when this start created the admin user with a generated password. */
  readonly generatedAdminPassword: string | undefined;
  /**
   * Graceful stop: stop accepting connections, end the agents' turns (`stream_end` with reason
   * `shutdown`) and close the WebSockets with 1001, let in-flight HTTP requests finish, then
   * close the api (store). Idempotent: every call returns the same promise.
   */
  close(): Promise<void>;
}

/** `~` and `~/x` as a shell would expand them (an `=`-joined flag value is never shell-expanded), then absolute. */
export function resolveUserPath(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return resolve(path);
}

/** Removes OpenSSL's `error:0480006C:PEM routines::` prefix: the reason is what a user can act on. */
function openSslReason(err: unknown): string {
  return oneLineMessage(err).replace(/^error:[0-9A-Fa-f]+:[^:]*:[^:]*:/, '');
}

interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

/**
 * Reads and checks the certificate and key before anything else starts, so a wrong path or
 * a swapped file is reported by name instead of as an OpenSSL error from deep in listen().
 */
async function loadTls(certPath: string | undefined, keyPath: string | undefined): Promise<TlsMaterial | undefined> {
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) throw new UsageError('both --tls-cert and --tls-key are needed for HTTPS');
  const read = async (flag: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(resolveUserPath(path));
    } catch (err) {
      throw new CommandError(`cannot read ${flag} file ${path}: ${describeFsError(err)}`, { cause: err });
    }
  };
  const [cert, key] = await Promise.all([read('--tls-cert', certPath), read('--tls-key', keyPath)]);
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new CommandError(`--tls-cert file ${certPath} is not a PEM certificate: ${openSslReason(err)}`, { cause: err });
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new CommandError(`--tls-key file ${keyPath} is not an unencrypted PEM private key: ${openSslReason(err)}`, { cause: err });
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new CommandError(`--tls-cert and --tls-key do not belong together: ${openSslReason(err)}`, { cause: err });
  }
  return { cert, key };
}

/** The one line a bind failure deserves; other errors keep their own message. */
function describeListenError(err: unknown, host: string, port: number): string {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is already in use`;
    case 'EACCES':
      return `permission denied binding ${host}:${port}`;
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAFNOSUPPORT':
      return `cannot listen on host ${host}`;
    default:
      return oneLineMessage(err);
  }
}

/** The OpenID Connect settings, or undefined without `--oidc-issuer`; the flags that only make sense together are checked here. */
function oidcSettings(config: ApiConfig): { issuer: string; audience: string; adminClaim?: string; adminValue?: string } | undefined {
  if (config.oidcIssuer === undefined) {
    if (config.oidcAudience !== undefined || config.oidcAdminClaim !== undefined || config.oidcAdminValue !== undefined) {
      throw new UsageError('--oidc-audience, --oidc-admin-claim and --oidc-admin-value need --oidc-issuer');
    }
    return undefined;
  }
  if (config.oidcAudience === undefined) throw new UsageError('--oidc-issuer needs --oidc-audience');
  if ((config.oidcAdminClaim === undefined) !== (config.oidcAdminValue === undefined)) {
    throw new UsageError('--oidc-admin-claim and --oidc-admin-value go together');
  }
  return {
    issuer: config.oidcIssuer,
    audience: config.oidcAudience,
    ...(config.oidcAdminClaim === undefined ? {} : { adminClaim: config.oidcAdminClaim }),
    ...(config.oidcAdminValue === undefined ? {} : { adminValue: config.oidcAdminValue }),
  };
}

/**
 * Starts the server from an already parsed configuration. Order matters: TLS files are checked
 * first (cheap, nothing to undo), then the core opens the store, then the port is bound; if
 * binding fails the core is closed again so the store is not left open.
 */
export async function startApi(config: ApiConfig, io: CommandIo, overrides: ApiOverrides = {}, env: NodeJS.ProcessEnv = process.env): Promise<RunningApi> {
  if (config.metricsPort !== undefined && !config.metrics) throw new UsageError('--metrics-port needs metrics: drop --no-metrics (or SENTINEL_METRICS=false)');
  const tls = await loadTls(config.tlsCert, config.tlsKey);
  const oidc = oidcSettings(config);
  // Before the core starts, so the store's first operations are traced like every later one.
  const tracing = await startTracing(env, cliVersion());
  // One stdout write per turn of the event loop, not per line (the request log is a line per
  // request); pending lines are written on close and at process exit.
  const logLines = createBatchedLineWriter((text) => void io.stdout.write(text));
  const logger = createJsonLogger({ write: logLines.write });

  const api = await createSentinelApi({
    dataDir: resolveUserPath(config.dataDir),
    tokenSecret: config.tokenAuthSecret,
    adminUsername: config.adminUsername,
    adminPassword: config.adminPassword,
    ...(config.store === undefined ? {} : { storeUrl: config.store }),
    ...(config.bus === undefined ? {} : { busUrl: config.bus }),
    registry: {
      url: config.registry,
      username: config.registryUsername,
      password: config.registryPassword,
      timeoutMs: config.registryTimeout * 1000,
      minBytesPerSecond: config.registryMinRate,
      rateWindowMs: config.registryRateWindow * 1000,
      allowPrivateHosts: config.registryAllowPrivate,
    },
    // Keys are never flags (they would show in `ps`): the core reads them from the environment or providers.json.
    providers: {
      ...(config.openaiBaseUrl === undefined ? {} : { openai: { baseUrl: config.openaiBaseUrl } }),
      ...(config.anthropicBaseUrl === undefined ? {} : { anthropic: { baseUrl: config.anthropicBaseUrl } }),
      ...(config.ollamaHost === undefined ? {} : { ollama: { host: config.ollamaHost } }),
    },
    httpFetch: { allowHosts: (config.httpFetchAllowHosts ?? '').split(',').map((host) => host.trim()).filter((host) => host !== '') },
    webSearch: config.webSearchUrl === undefined ? {} : { url: config.webSearchUrl },
    webhooks: { allowPrivateAddresses: config.webhookAllowPrivate },
    ...(oidc === undefined ? {} : { oidc }),
    rateLimits: { read: config.rateLimitRead, write: config.rateLimitWrite, auth: config.rateLimitAuth, chat: config.rateLimitChat },
    runs: { approvalTimeoutMs: config.approvalTimeoutMs },
    metrics: config.metrics,
    tracing: { captureContent: config.otelCaptureContent },
    logger,
    ...(overrides.runs === undefined ? {} : { runs: overrides.runs }),
  }).catch(async (err: unknown) => {
    await tracing?.shutdown();
    logLines.close();
    throw err;
  });
  if (tracing !== undefined) logger.info('opentelemetry traces exported', { endpoint: tracing.endpoint, capture_content: config.otelCaptureContent });
  // Printed before binding: the admin is already stored, so even if the port turns out to be
  // taken, this is the only chance to learn the password.
  if (api.generatedAdminPassword !== undefined) {
    io.stderr.write(
      `created admin user "${config.adminUsername}" with generated password: ${api.generatedAdminPassword} ` +
        '(shown once; set SENTINEL_ADMIN_PASSWORD to choose it)\n',
    );
  }

  let server: RunningServer;
  try {
    server = await listen(api, {
      port: config.port,
      host: config.host,
      tls,
      cors: config.cors,
      logRequests: config.logRequests,
      // Off: no /console and no redirect of /. On: the console shipped with this CLI (bundled next to it).
      ...(config.console ? {} : { console: false as const }),
      logger,
      maxConnections: config.maxConnections,
      maxConnectionsPerAddress: config.maxConnectionsPerAddress,
      trustProxy: config.trustProxy,
    });
  } catch (err) {
    await api.close().catch(() => undefined);
    await tracing?.shutdown();
    logLines.close();
    throw new CommandError(describeListenError(err, config.host, config.port), { cause: err });
  }
  let metricsServer: MetricsServer | undefined;
  if (config.metricsPort !== undefined) {
    try {
      if (api.metrics === undefined) throw new Error('metrics are off');
      metricsServer = await listenMetrics(api.metrics, { port: config.metricsPort, host: config.metricsHost });
    } catch (err) {
      await server.close();
      await api.close().catch(() => undefined);
      logLines.close();
      throw new CommandError(`metrics listener: ${describeListenError(err, config.metricsHost, config.metricsPort)}`, { cause: err });
    }
  }
  // Same server, same port: wss:// under TLS, and the agents' `endpoints` already say so.
  const ws = attachWebSocket(server.server, api, { logger });
  logLines.flush();
  // The docs (and console) URLs on the line people read first: one click away.
  const consoleNote = server.consoleDir !== undefined ? `, console at ${server.url}/console/` : '';
  io.stdout.write(`SentinelStacks API listening on ${server.url} (version ${cliVersion()}, commit ${shortCommit()}), docs at ${server.url}/docs${consoleNote}\n`);
  if (metricsServer !== undefined) io.stdout.write(`Metrics (no auth) at ${metricsServer.url}/metrics\n`);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // Order matters: server.close() stops accepting at once but only resolves once every
      // connection is gone, and upgraded sockets are connections too. So the turns end first
      // (clients get their terminal frame), then the sockets close with 1001, then the HTTP
      // requests still in flight are awaited, and only then the store closes under nobody.
      const httpClosed = server.close();
      const metricsClosed = metricsServer?.close();
      try {
        await api.shutdown();
        await ws.close();
        await httpClosed;
        await metricsClosed;
      } finally {
        await api.close();
        // Last: the spans of the shutdown itself are exported too.
        await tracing?.shutdown();
        logLines.close();
      }
    })();
    return closing;
  };

  return {
    url: server.url,
    port: server.port,
    host: server.host,
    api,
    server,
    ws,
    metricsServer,
    logger,
    tracing,
    generatedAdminPassword: api.generatedAdminPassword,
    close,
  };
}

/**
 * Core options no flag sets, for programs that start `sentinel api` in-process: only the
 * benchmark's baseline (`runs: { journal: false }`). Default none.
 */
export interface ApiOverrides {
  runs?: SentinelApiOptions['runs'];
}

/**
 * Runs `sentinel api` with `argv` (the arguments after `api`) and `env`: parses, starts, prints
 * `SentinelStacks API listening on <url> (…), docs at <url>/docs` to stdout (and a generated admin password to stderr)
 * and resolves to the running server. Rejects with {@link UsageError} for bad arguments
 * (including `--help`/`--version`, which print text and start nothing: handle them with
 * `parseApiArgs` first) and with a one-line Error for runtime failures.
 */
export async function runApiCommand(argv: string[], env: NodeJS.ProcessEnv, io: CommandIo, overrides: ApiOverrides = {}): Promise<RunningApi> {
  const parsed = parseApiArgs(argv, env);
  if (parsed.kind !== 'run') {
    throw new UsageError(`--${parsed.kind} starts no server; check parseApiArgs() for it before calling runApiCommand`);
  }
  return startApi(parsed.config, io, overrides, env);
}
