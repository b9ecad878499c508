/**
 * The one table of `sentinel api` flags. The parser, `--help` and the README's flag table are
 * all generated from (or checked against) this list, so a flag is described exactly once.
 */

/** The typed values `sentinel api` runs with, after flags, environment and defaults are merged. */
export interface ApiFlagValues {
  /** Port to listen on; 0 picks a free port. Default 8080. */
  port: number;
  /** Host name or address to listen on. Default `localhost`. */
  host: string;
  /** PEM certificate file; with `tlsKey`, serve HTTPS. Default none (HTTP). */
  tlsCert: string | undefined;
  /** PEM private key file; with `tlsCert`, serve HTTPS. Default none (HTTP). */
  tlsKey: string | undefined;
  /** JWT signing secret (at least 16 characters). Default: generated once and kept in the data directory. */
  tokenAuthSecret: string | undefined;
  /** Answer CORS requests and preflights. Default true. */
  cors: boolean;
  /** One JSON log line per request on stdout. Default true. */
  logRequests: boolean;
  /** Record message text (prompts, answers, tool arguments and results) in OpenTelemetry spans. Default false. */
  otelCaptureContent: boolean;
  /** Serve the web console at /console/ (and redirect / there). */
  console: boolean;
  /** Directory of the SQLite database and the generated token secret. Default `~/.sentinel`. */
  dataDir: string;
  /** PostgreSQL URL shared by several instances. Default none: SQLite in `dataDir`. */
  store: string | undefined;
  /** Redis URL shared by several instances (event bus, turn locks, login throttle). Default none: in process. */
  bus: string | undefined;
  /** Default registry `http(s)://host[:port][/namespace]` for push/pull/search. Default none: the embedded registry in `<data-dir>/registry`. */
  registry: string | undefined;
  /** Username for the default registry. Default none (anonymous). */
  registryUsername: string | undefined;
  /** Password or token for the default registry. Default none. */
  registryPassword: string | undefined;
  /** Seconds a whole registry push or pull may take; 0 for no deadline. Default 600. */
  registryTimeout: number;
  /** Bytes per second a registry push or pull must average over each `registryRateWindow`; 0 for no minimum. Default 1024. */
  registryMinRate: number;
  /** Seconds the minimum registry rate is averaged over. Default 30. */
  registryRateWindow: number;
  /** Let requests name registries on loopback/private addresses. Default false. */
  registryAllowPrivate: boolean;
  /** Deliver webhooks to loopback/private/link-local addresses (for testing). Default false. */
  webhookAllowPrivate: boolean;
  /** Base URL of the `openai` provider (any OpenAI-compatible server). Default `OPENAI_BASE_URL`, else `https://api.openai.com/v1`. */
  openaiBaseUrl: string | undefined;
  /** Base URL of the `anthropic` provider. Default `ANTHROPIC_BASE_URL`, else `https://api.anthropic.com`. */
  anthropicBaseUrl: string | undefined;
  /** Where the `ollama` provider finds Ollama. Default `OLLAMA_HOST`, else `http://127.0.0.1:11434`. */
  ollamaHost: string | undefined;
  /** Comma-separated hosts the `http_fetch` tool may fetch from. Default none (the tool is off). */
  httpFetchAllowHosts: string | undefined;
  /** SearXNG-compatible URL for the `web_search` tool. Default none (the tool says it is not configured). */
  webSearchUrl: string | undefined;
  /** Concurrent connections overall (WebSockets included); extra ones are closed at accept. Default 10000. */
  maxConnections: number;
  /** Concurrent connections from one client address; extra ones are closed at accept. Default 256. */
  maxConnectionsPerAddress: number;
  /** OpenID Connect issuer whose access tokens are accepted. Default none (only our own tokens). */
  oidcIssuer: string | undefined;
  /** The audience OIDC access tokens must name. Default none (required with `oidcIssuer`). */
  oidcAudience: string | undefined;
  /** Claim that grants admin when it holds `oidcAdminValue`. Default none. */
  oidcAdminClaim: string | undefined;
  /** Value of `oidcAdminClaim` that grants admin. Default none. */
  oidcAdminValue: string | undefined;
  /** Read requests (GET) a minute per caller, burst equal; 0 turns the limit off. Default 1200. */
  rateLimitRead: number;
  /** Write requests (POST, PUT, PATCH, DELETE) a minute per caller; 0 off. Default 600. */
  rateLimitWrite: number;
  /** Logins (and other `auth` routes) a minute per client address; 0 off. Default 120. */
  rateLimitAuth: number;
  /** Chat `message` and `tool_request` frames a minute per caller; 0 off. Default 120. */
  rateLimitChat: number;
  /** Take the client address from X-Forwarded-For (right-most entry) and believe X-Forwarded-Proto/-Host. Default false. */
  trustProxy: boolean;
  /** How long a run waits for a person to decide a tool approval before it fails with `approval_timeout`, ms. Default 3600000 (1 h). */
  approvalTimeoutMs: number;
  /** Prometheus metrics: recorded, and served at `GET /metrics` to `metrics:read` (admin) credentials. Default true. */
  metrics: boolean;
  /** A second listener serving `GET /metrics` without auth on this port. Default none. */
  metricsPort: number | undefined;
  /** Interface of the `metricsPort` listener. Default `127.0.0.1` (loopback). */
  metricsHost: string;
}

/** `duration`: a number with a unit (`500ms`, `30s`, `5m`, `2h`; a bare number is seconds), parsed to milliseconds. */
export type FlagType = 'string' | 'int' | 'bool' | 'duration';

export interface FlagSpec {
  /** Long name without the leading dashes (`--port` → `port`). */
  readonly name: string;
  /** One-letter short form without the dash (`-p` → `p`). Default none. */
  readonly alias?: string;
  readonly type: FlagType;
  /** Environment variable that sets the flag when it is not given on the command line. */
  readonly env: string;
  /** Value when neither the flag nor its variable is set; undefined means "not set". */
  readonly default: string | number | boolean | undefined;
  /** How `--help` shows the default when it is computed rather than literal. Default: the literal. */
  readonly defaultLabel?: string;
  /** One line for `--help` and the README. */
  readonly description: string;
  /** Where the parsed value lands in {@link ApiFlagValues}. */
  readonly key: keyof ApiFlagValues;
  /** Inclusive range of an `int` flag (of a `duration` flag, in ms). Default: any safe integer. */
  readonly range?: readonly [min: number, max: number];
}

/** Every flag of `sentinel api`, in the order `--help` lists them. */
export const API_FLAGS: readonly FlagSpec[] = [
  {
    name: 'port',
    alias: 'p',
    type: 'int',
    env: 'SENTINEL_PORT',
    default: 8080,
    description: 'Port to listen on; 0 picks a free port',
    key: 'port',
    range: [0, 65535],
  },
  {
    name: 'host',
    type: 'string',
    env: 'SENTINEL_HOST',
    default: 'localhost',
    description: 'Host name or address to listen on (0.0.0.0 or :: for every interface)',
    key: 'host',
  },
  {
    name: 'tls-cert',
    type: 'string',
    env: 'SENTINEL_TLS_CERT',
    default: undefined,
    defaultLabel: 'none (HTTP)',
    description: 'TLS certificate file (PEM); with --tls-key the server speaks HTTPS',
    key: 'tlsCert',
  },
  {
    name: 'tls-key',
    type: 'string',
    env: 'SENTINEL_TLS_KEY',
    default: undefined,
    defaultLabel: 'none (HTTP)',
    description: 'TLS private key file (PEM); with --tls-cert the server speaks HTTPS',
    key: 'tlsKey',
  },
  {
    name: 'token-auth-secret',
    type: 'string',
    env: 'SENTINEL_TOKEN_SECRET',
    default: undefined,
    defaultLabel: 'generated once, kept in <data-dir>/token-secret',
    description: 'Secret that signs login tokens (JWT HS256, at least 16 characters)',
    key: 'tokenAuthSecret',
  },
  {
    name: 'cors',
    type: 'bool',
    env: 'SENTINEL_CORS',
    default: true,
    description: 'Answer cross-origin requests and preflights (--no-cors or --cors=false turns it off)',
    key: 'cors',
  },
  {
    name: 'log-requests',
    type: 'bool',
    env: 'SENTINEL_LOG_REQUESTS',
    default: true,
    description: 'Write one JSON line per request to stdout (--no-log-requests turns it off)',
    key: 'logRequests',
  },
  {
    name: 'otel-capture-content',
    type: 'bool',
    env: 'OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT',
    default: false,
    description: 'Put prompts, answers and tool arguments/results in the trace spans (they may hold personal data; tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set)',
    key: 'otelCaptureContent',
  },
  {
    name: 'console',
    type: 'bool',
    env: 'SENTINEL_CONSOLE',
    default: true,
    description: 'Serve the web console at /console/ and redirect / there (--no-console turns it off)',
    key: 'console',
  },
  {
    name: 'data-dir',
    type: 'string',
    env: 'SENTINEL_DATA_DIR',
    default: '~/.sentinel',
    description: 'Directory of the SQLite database and the generated token secret',
    key: 'dataDir',
  },
  {
    name: 'store',
    type: 'string',
    env: 'SENTINEL_STORE_URL',
    default: undefined,
    defaultLabel: 'SQLite in <data-dir>',
    description: 'PostgreSQL shared by several instances: postgres://user:password@host[:port]/db (prefer the variable: flags show in ps)',
    key: 'store',
  },
  {
    name: 'bus',
    type: 'string',
    env: 'SENTINEL_BUS_URL',
    default: undefined,
    defaultLabel: 'none (in process)',
    description: 'Redis shared by several instances: redis://[user:password@]host[:port][/db][?prefix=name]',
    key: 'bus',
  },
  {
    name: 'registry',
    type: 'string',
    env: 'SENTINEL_REGISTRY',
    default: undefined,
    defaultLabel: 'embedded, in <data-dir>/registry',
    description: 'OCI registry for push, pull and search: http(s)://host[:port][/namespace]',
    key: 'registry',
  },
  {
    name: 'registry-username',
    type: 'string',
    env: 'SENTINEL_REGISTRY_USERNAME',
    default: undefined,
    defaultLabel: 'none (anonymous)',
    description: 'Username for --registry (basic auth, or to obtain bearer tokens)',
    key: 'registryUsername',
  },
  {
    name: 'registry-password',
    type: 'string',
    env: 'SENTINEL_REGISTRY_PASSWORD',
    default: undefined,
    defaultLabel: 'none',
    description: 'Password or access token for --registry (prefer the variable: flags show in ps)',
    key: 'registryPassword',
  },
  {
    name: 'registry-timeout',
    type: 'int',
    env: 'SENTINEL_REGISTRY_TIMEOUT',
    default: 600,
    description: 'Seconds a whole registry push or pull may take before it fails with upstream_timeout; 0 for no deadline',
    key: 'registryTimeout',
    range: [0, 86_400],
  },
  {
    name: 'registry-min-rate',
    type: 'int',
    env: 'SENTINEL_REGISTRY_MIN_RATE',
    default: 1024,
    description: 'Bytes/s a registry push or pull must average over --registry-rate-window, else upstream_timeout; 0 for no minimum',
    key: 'registryMinRate',
    range: [0, 1_073_741_824],
  },
  {
    name: 'registry-rate-window',
    type: 'int',
    env: 'SENTINEL_REGISTRY_RATE_WINDOW',
    default: 30,
    description: 'Seconds --registry-min-rate is averaged over',
    key: 'registryRateWindow',
    range: [1, 3_600],
  },
  {
    name: 'registry-allow-private',
    type: 'bool',
    env: 'SENTINEL_REGISTRY_ALLOW_PRIVATE',
    default: false,
    description: 'Let requests name registries on loopback/private addresses (--registry itself is always allowed)',
    key: 'registryAllowPrivate',
  },
  {
    name: 'webhook-allow-private',
    type: 'bool',
    env: 'SENTINEL_WEBHOOK_ALLOW_PRIVATE',
    default: false,
    description: 'Let webhooks target loopback/private/link-local addresses (for testing; refused by default like http_fetch)',
    key: 'webhookAllowPrivate',
  },
  {
    name: 'openai-base-url',
    type: 'string',
    env: 'SENTINEL_OPENAI_BASE_URL',
    default: undefined,
    defaultLabel: 'OPENAI_BASE_URL, else https://api.openai.com/v1',
    description: 'Base URL of the openai provider: OpenAI or any compatible server (Ollama /v1, vLLM, llama.cpp, LM Studio, OpenRouter)',
    key: 'openaiBaseUrl',
  },
  {
    name: 'anthropic-base-url',
    type: 'string',
    env: 'SENTINEL_ANTHROPIC_BASE_URL',
    default: undefined,
    defaultLabel: 'ANTHROPIC_BASE_URL, else https://api.anthropic.com',
    description: 'Base URL of the anthropic provider (Messages API)',
    key: 'anthropicBaseUrl',
  },
  {
    name: 'ollama-host',
    type: 'string',
    env: 'SENTINEL_OLLAMA_HOST',
    default: undefined,
    defaultLabel: 'OLLAMA_HOST, else http://127.0.0.1:11434',
    description: 'Where the ollama provider finds Ollama (host:port or URL)',
    key: 'ollamaHost',
  },
  {
    name: 'http-fetch-allow-hosts',
    type: 'string',
    env: 'SENTINEL_HTTP_FETCH_ALLOW_HOSTS',
    default: undefined,
    defaultLabel: 'none (http_fetch is off)',
    description: 'Comma-separated hosts the http_fetch tool may fetch from: name, *.domain or * (private addresses stay refused)',
    key: 'httpFetchAllowHosts',
  },
  {
    name: 'web-search-url',
    type: 'string',
    env: 'SENTINEL_WEB_SEARCH_URL',
    default: undefined,
    defaultLabel: 'none (web_search is not configured)',
    description: 'SearXNG-compatible search service for the web_search tool (GET <url>/search?q=…&format=json)',
    key: 'webSearchUrl',
  },
  {
    name: 'max-connections',
    type: 'int',
    env: 'SENTINEL_MAX_CONNECTIONS',
    default: 10_000,
    description: 'Concurrent connections, all clients together, WebSockets included; extra ones are closed at once',
    key: 'maxConnections',
    range: [1, 1_000_000],
  },
  {
    name: 'max-connections-per-address',
    type: 'int',
    env: 'SENTINEL_MAX_CONNECTIONS_PER_ADDRESS',
    default: 256,
    description: 'Concurrent connections from one client address; extra ones are closed at once (raise it behind a reverse proxy)',
    key: 'maxConnectionsPerAddress',
    range: [1, 1_000_000],
  },
  {
    name: 'oidc-issuer',
    type: 'string',
    env: 'SENTINEL_OIDC_ISSUER',
    default: undefined,
    defaultLabel: 'none (only our own login tokens)',
    description: 'OpenID Connect issuer whose access tokens are accepted too (https URL, exactly as in the tokens\' iss)',
    key: 'oidcIssuer',
  },
  {
    name: 'oidc-audience',
    type: 'string',
    env: 'SENTINEL_OIDC_AUDIENCE',
    default: undefined,
    defaultLabel: 'none (required with --oidc-issuer)',
    description: 'Audience OIDC access tokens must name in aud (this API\'s identifier at the issuer)',
    key: 'oidcAudience',
  },
  {
    name: 'oidc-admin-claim',
    type: 'string',
    env: 'SENTINEL_OIDC_ADMIN_CLAIM',
    default: undefined,
    defaultLabel: 'none (no admin by claim)',
    description: 'Token claim that makes its user an admin when it holds --oidc-admin-value (dotted names reach nested claims)',
    key: 'oidcAdminClaim',
  },
  {
    name: 'oidc-admin-value',
    type: 'string',
    env: 'SENTINEL_OIDC_ADMIN_VALUE',
    default: undefined,
    defaultLabel: 'none',
    description: 'Value of --oidc-admin-claim (equal, or one element of an array) that grants admin',
    key: 'oidcAdminValue',
  },
  {
    name: 'rate-limit-read',
    type: 'int',
    env: 'SENTINEL_RATE_LIMIT_READ',
    default: 1200,
    description: 'Read requests (GET) a minute per user or API key (per address when anonymous), as a burst too; over it 429 rate_limited; 0 turns it off',
    key: 'rateLimitRead',
    range: [0, 1_000_000_000],
  },
  {
    name: 'rate-limit-write',
    type: 'int',
    env: 'SENTINEL_RATE_LIMIT_WRITE',
    default: 600,
    description: 'Write requests (POST, PUT, PATCH, DELETE) a minute per user or API key, as a burst too; 0 turns it off',
    key: 'rateLimitWrite',
    range: [0, 1_000_000_000],
  },
  {
    name: 'rate-limit-auth',
    type: 'int',
    env: 'SENTINEL_RATE_LIMIT_AUTH',
    default: 120,
    description: 'Login requests a minute per client address, as a burst too (failed logins are throttled besides); 0 turns it off',
    key: 'rateLimitAuth',
    range: [0, 1_000_000_000],
  },
  {
    name: 'rate-limit-chat',
    type: 'int',
    env: 'SENTINEL_RATE_LIMIT_CHAT',
    default: 120,
    description: 'Chat message and tool_request frames a minute per user or API key, as a burst too; over it an error frame rate_limited; 0 turns it off',
    key: 'rateLimitChat',
    range: [0, 1_000_000_000],
  },
  {
    name: 'trust-proxy',
    type: 'bool',
    env: 'SENTINEL_TRUST_PROXY',
    default: false,
    description: 'Behind your own reverse proxy: the client address is the right-most X-Forwarded-For entry (for rate limits and login throttling); off, the header is ignored',
    key: 'trustProxy',
  },
  {
    name: 'approval-timeout',
    type: 'duration',
    env: 'SENTINEL_APPROVAL_TIMEOUT',
    default: 3_600_000,
    defaultLabel: '1h',
    description: 'How long a run waits for a person to approve or refuse a tool call (e.g. 30s, 15m, 2h) before it fails with approval_timeout',
    key: 'approvalTimeoutMs',
    range: [1_000, 7 * 86_400_000],
  },
  {
    name: 'metrics',
    type: 'bool',
    env: 'SENTINEL_METRICS',
    default: true,
    description: 'Prometheus metrics at GET /metrics for admin credentials with scope metrics:read (--no-metrics turns them off)',
    key: 'metrics',
  },
  {
    name: 'metrics-port',
    type: 'int',
    env: 'SENTINEL_METRICS_PORT',
    default: undefined,
    defaultLabel: 'none',
    description: 'Also serve GET /metrics without auth on this port (on --metrics-host); 0 picks a free port',
    key: 'metricsPort',
    range: [0, 65535],
  },
  {
    name: 'metrics-host',
    type: 'string',
    env: 'SENTINEL_METRICS_HOST',
    default: '127.0.0.1',
    description: 'Interface of the --metrics-port listener (it has no auth: keep it on loopback or a private network)',
    key: 'metricsHost',
  },
];

/** Environment variables read by `sentinel api` that have no flag (secrets stay out of `ps`). */
export const API_ENV_ONLY: readonly { readonly env: string; readonly description: string; readonly defaultLabel: string }[] = [
  {
    env: 'SENTINEL_ADMIN_USER',
    description: 'Name of the admin user created on the first start',
    defaultLabel: 'admin',
  },
  {
    env: 'SENTINEL_ADMIN_PASSWORD',
    description: 'Password of that admin user',
    defaultLabel: 'generated and printed once to stderr',
  },
  {
    env: 'OPENAI_API_KEY',
    description: 'API key of the openai provider (also settable in <data-dir>/providers.json)',
    defaultLabel: 'none (needed for api.openai.com)',
  },
  {
    env: 'ANTHROPIC_API_KEY',
    description: 'API key of the anthropic provider (also settable in <data-dir>/providers.json)',
    defaultLabel: 'none (needed for api.anthropic.com)',
  },
];
