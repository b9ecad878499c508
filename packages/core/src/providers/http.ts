/**
 * The HTTP transport every model provider shares: one undici `Agent` (a keep-alive pool) per
 * provider, connect / first-byte / idle timeouts, and retries with exponential backoff and
 * jitter on 429, 5xx and connection errors, but only until the first byte of the answer has
 * reached the caller: after that a retry would stream the beginning of the answer twice.
 * The turn's AbortSignal goes to undici, so a cancel destroys the upstream connection (the
 * provider sees it close and stops generating, which is what stops the billing).
 * Every failure becomes SentinelError `upstream_error` with a message that says what happened
 * and what to configure, never the API key.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { invalidRequest, isSentinelError, SentinelError, upstream } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import { discardBody } from '../undici-body.js';
import { context } from '@opentelemetry/api';
import { injectTraceHeaders } from '../telemetry/tracing.js';

/** Timeouts of provider requests. */
export interface ProviderTimeouts {
  /** TCP + TLS connect, in ms. Default 10000. */
  connectMs?: number;
  /** From sending the request to the response headers (the "first byte"), in ms. Default 60000. */
  headersMs?: number;
  /** Longest silence while the answer streams (undici `bodyTimeout`), in ms. Default 60000. */
  idleMs?: number;
}

/** Retries of provider requests (429, 5xx, connection errors; before the first streamed byte only). */
export interface ProviderRetryPolicy {
  /** Attempts in all, the first included; 1 disables retries. Default 3. */
  attempts?: number;
  /** Backoff before the 2nd attempt, doubled for each further one, with jitter, in ms. Default 500. */
  baseDelayMs?: number;
  /** Longest wait before a retry, also capping `retry-after`, in ms. Default 30000. */
  maxDelayMs?: number;
}

export const DEFAULT_PROVIDER_TIMEOUTS: Readonly<Required<ProviderTimeouts>> = Object.freeze({ connectMs: 10_000, headersMs: 60_000, idleMs: 60_000 });
export const DEFAULT_PROVIDER_RETRIES: Readonly<Required<ProviderRetryPolicy>> = Object.freeze({ attempts: 3, baseDelayMs: 500, maxDelayMs: 30_000 });

/** What to tell the operator, per kind of failure. */
export interface UpstreamHints {
  /** Added to 401/403 errors, e.g. `check OPENAI_API_KEY`. */
  auth: string;
  /** The setting that picks the endpoint, named in connection errors and 404s, e.g. `OPENAI_BASE_URL`. */
  endpoint: string;
}

export interface ProviderHttpClientOptions {
  /** The provider's name, first word of every error message (`openai: …`). */
  provider: string;
  hints: UpstreamHints;
  /** Default {@link DEFAULT_PROVIDER_TIMEOUTS}. */
  timeouts?: ProviderTimeouts;
  /** Default {@link DEFAULT_PROVIDER_RETRIES}. */
  retries?: ProviderRetryPolicy;
  /** Strings that must never appear in an error message (the API key), replaced by `[redacted]`. Default none. */
  secrets?: readonly string[];
  /** Where retries are logged (warn). Default: silent. */
  logger?: Logger;
  /** Jitter source in [0, 1). Default `Math.random`. */
  random?: () => number;
}

/** One streaming POST to a provider. */
export interface UpstreamRequest {
  url: string;
  headers: Record<string, string>;
  /** The JSON body, already serialized. */
  body: string;
  /** Aborting it destroys the connection, during a retry wait too. */
  signal: AbortSignal;
  /** Names what a 404 is likely about, e.g. `model "gpt-4o"`. Default none. */
  subject?: string;
}

/** Most bytes of an error response read to explain it. */
const MAX_ERROR_BODY_BYTES = 16 * 1024;
/** Most characters of upstream text put in an error message. */
const MAX_UPSTREAM_TEXT = 300;

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  529: 'Overloaded',
};

/** Connection-level failures worth another attempt. DNS "not found" and TLS failures are not: they will not heal in a second. */
const RETRIABLE_CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** The error code of a Node or undici error (first of an AggregateError's errors: happy-eyeballs connects fail that way). */
export function errorCodeOf(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  let current: unknown = err;
  while (typeof current === 'object' && current !== null && !seen.has(current)) {
    seen.add(current);
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const nested = (current as { errors?: unknown }).errors;
    if (Array.isArray(nested) && nested.length > 0) {
      current = nested[0];
      continue;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** `scheme://host:port` of a URL, without credentials, path or query (where keys sometimes hide). */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/** Removes every secret from `text`, squeezes whitespace and caps it at 300 characters. */
export function sanitizeUpstreamText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join('[redacted]');
  // Bearer tokens an upstream echoes back are secrets too, whoever's they are.
  out = out.replace(/(bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, '$1[redacted]');
  out = out.replace(/\s+/g, ' ').trim();
  return out.length > MAX_UPSTREAM_TEXT ? `${out.slice(0, MAX_UPSTREAM_TEXT - 1)}…` : out;
}

/** The human part of a provider's error body: `error.message`, `error` (string), `message`, `detail`, or the text itself. */
export function upstreamErrorDetail(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return '';
  try {
    const body = JSON.parse(trimmed) as unknown;
    if (typeof body === 'object' && body !== null) {
      const record = body as Record<string, unknown>;
      const error = record.error;
      if (typeof error === 'string') return error;
      if (typeof error === 'object' && error !== null) {
        const message = (error as Record<string, unknown>).message;
        const type = (error as Record<string, unknown>).type;
        if (typeof message === 'string') return typeof type === 'string' && type !== '' && !message.includes(type) ? `${type}: ${message}` : message;
      }
      if (typeof record.message === 'string') return record.message;
      if (typeof record.detail === 'string') return record.detail;
    }
  } catch {
    // Not JSON: the text is the detail (an HTML error page from a proxy, plain text).
  }
  return trimmed;
}

/**
 * How long the server asked us to wait, in ms: `retry-after-ms` (OpenAI), else `retry-after`
 * as seconds or an HTTP date. Undefined when absent or unreadable.
 */
export function retryAfterMs(headers: Record<string, string | string[] | undefined>, now: number = Date.now()): number | undefined {
  const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
  const ms = first(headers['retry-after-ms']);
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms.trim())) return Number(ms.trim());
  const after = first(headers['retry-after'])?.trim();
  if (after === undefined || after === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(after)) return Number(after) * 1000;
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** A provider's keep-alive pool and its request policy. */
export class ProviderHttpClient {
  readonly provider: string;
  private readonly agent: Agent;
  private readonly hints: UpstreamHints;
  private readonly timeouts: Required<ProviderTimeouts>;
  private readonly retries: Required<ProviderRetryPolicy>;
  private readonly secrets: readonly string[];
  private readonly logger: Logger;
  private readonly random: () => number;

  constructor(options: ProviderHttpClientOptions) {
    this.provider = options.provider;
    this.hints = options.hints;
    this.timeouts = { ...DEFAULT_PROVIDER_TIMEOUTS, ...definedOnly(options.timeouts) };
    this.retries = { ...DEFAULT_PROVIDER_RETRIES, ...definedOnly(options.retries) };
    if (!Number.isSafeInteger(this.retries.attempts) || this.retries.attempts < 1) throw new RangeError(`retries.attempts must be a positive integer, got ${this.retries.attempts}`);
    for (const [name, value] of Object.entries({ ...this.timeouts, baseDelayMs: this.retries.baseDelayMs, maxDelayMs: this.retries.maxDelayMs })) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`provider option ${name} must be a non-negative number, got ${value}`);
    }
    this.secrets = (options.secrets ?? []).filter((s) => s.length > 0);
    this.logger = options.logger ?? silentLogger;
    this.random = options.random ?? Math.random;
    this.agent = new Agent({
      connect: { timeout: this.timeouts.connectMs },
      headersTimeout: this.timeouts.headersMs,
      bodyTimeout: this.timeouts.idleMs,
      keepAliveTimeout: 30_000,
    });
  }

  /**
   * POSTs the request and yields the response body as it arrives. Retries (429, 5xx,
   * connection errors, a body that fails before its first byte) happen inside, before anything
   * is yielded; once a chunk was yielded, a failure ends the stream with `upstream_error`.
   * An abort rethrows the signal's reason and closes the connection.
   */
  async *stream(req: UpstreamRequest): AsyncGenerator<Uint8Array, void, undefined> {
    const { signal } = req;
    // Taken before the first await (the generator's first step runs inside the provider call's
    // span), so every attempt carries it without async context tracking.
    const traceContext = context.active();
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      let response: Dispatcher.ResponseData;
      try {
        // The turn's trace goes on to the provider (W3C traceparent), when there is one.
        response = await request(req.url, { dispatcher: this.agent, method: 'POST', headers: injectTraceHeaders({ ...req.headers }, traceContext), body: req.body, signal });
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        const code = errorCodeOf(err);
        if (code !== undefined && RETRIABLE_CONNECTION_CODES.has(code) && attempt < this.retries.attempts) {
          await this.backoff(attempt, undefined, signal, { code });
          continue;
        }
        throw this.connectionError(err, req.url, attempt);
      }

      const status = response.statusCode;
      if (status < 200 || status >= 300) {
        const text = await readErrorText(response.body);
        if (signal.aborted) throw signal.reason;
        if ((status === 429 || status >= 500) && attempt < this.retries.attempts) {
          await this.backoff(attempt, retryAfterMs(response.headers), signal, { status });
          continue;
        }
        throw this.statusError(status, text, req, attempt);
      }

      const body = response.body;
      const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      let first: IteratorResult<Buffer>;
      try {
        first = await chunks.next();
      } catch (err) {
        discardBody(body);
        if (signal.aborted) throw signal.reason;
        const code = errorCodeOf(err);
        if (code !== undefined && RETRIABLE_CONNECTION_CODES.has(code) && attempt < this.retries.attempts) {
          await this.backoff(attempt, undefined, signal, { code });
          continue;
        }
        throw this.streamError(err);
      }
      // From here on the caller has bytes: no more retries.
      try {
        if (first.done) return;
        yield first.value;
        for (;;) {
          const next = await chunks.next();
          if (next.done) return;
          yield next.value;
        }
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw isSentinelError(err) ? err : this.streamError(err);
      } finally {
        // The caller stopped early (or failed): an unfinished body must not keep the socket.
        discardBody(body);
      }
    }
  }

  /** Closes the pool, destroying connections still open (their requests were aborted first by the runtime). */
  async close(): Promise<void> {
    await this.agent.destroy().catch(() => undefined);
  }

  /** A message for an error detail from upstream: secrets removed, capped. */
  sanitize(text: string): string {
    return sanitizeUpstreamText(text, this.secrets);
  }

  private async backoff(attempt: number, retryAfter: number | undefined, signal: AbortSignal, why: { status?: number; code?: string }): Promise<void> {
    const exponential = this.retries.baseDelayMs * 2 ** (attempt - 1);
    // "Full jitter" over the upper half: spreads retries of many agents without ever retrying at once.
    const jittered = exponential / 2 + (this.random() * exponential) / 2;
    const delay = Math.min(this.retries.maxDelayMs, retryAfter ?? jittered);
    this.logger.warn('model provider request failed; retrying', {
      provider: this.provider,
      ...(why.status === undefined ? {} : { status: why.status }),
      ...(why.code === undefined ? {} : { error_code: why.code }),
      attempt,
      delay_ms: Math.round(delay),
    });
    try {
      await sleep(delay, undefined, { signal });
    } catch {
      throw signal.reason;
    }
  }

  private statusError(status: number, text: string, req: UpstreamRequest, attempts: number): SentinelError {
    const detail = this.sanitize(upstreamErrorDetail(text));
    let message = `${this.provider}: ${status} ${STATUS_TEXT[status] ?? 'Error'}`;
    if (detail) message += `: ${detail}`;
    if (status === 401 || status === 403) message += ` — ${this.hints.auth}`;
    else if (status === 404) message += ` — check ${req.subject ? `the ${req.subject} and ` : ''}${this.hints.endpoint} (${originOf(req.url)})`;
    else if (status === 429) message += ` — rate limited; gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}`;
    else if (status >= 500) message += ` (after ${attempts} attempt${attempts === 1 ? '' : 's'})`;
    return new SentinelError('upstream_error', message);
  }

  private connectionError(err: unknown, url: string, attempts: number): SentinelError {
    const code = errorCodeOf(err) ?? 'unknown error';
    const origin = originOf(url);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      return upstream(this.provider, `no response from ${origin} within ${seconds(this.timeouts.headersMs)}`, { cause: err });
    }
    if (code === 'UND_ERR_BODY_TIMEOUT') return this.streamError(err);
    if (code.startsWith('ERR_TLS') || code.includes('CERT') || code.startsWith('ERR_SSL')) {
      return upstream(this.provider, `TLS failure talking to ${origin}: ${code} — check ${this.hints.endpoint}`, { cause: err });
    }
    const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
    return upstream(this.provider, `cannot connect to ${origin}: ${code}${tries} — check ${this.hints.endpoint}`, { cause: err });
  }

  private streamError(err: unknown): SentinelError {
    const code = errorCodeOf(err);
    if (code === 'UND_ERR_BODY_TIMEOUT') {
      return upstream(this.provider, `the stream stalled: no data for ${seconds(this.timeouts.idleMs)}`, { cause: err });
    }
    return upstream(this.provider, `the connection was lost mid-stream (${code ?? 'closed'})`, { cause: err });
  }
}

function definedOnly<T extends object>(value: T | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (!value) return out;
  for (const [key, v] of Object.entries(value)) if (v !== undefined) (out as Record<string, unknown>)[key] = v;
  return out;
}

/** Reads at most 16 KiB of an error response as text (a failure to read is an empty detail), then drops the rest. */
async function readErrorText(body: Dispatcher.ResponseData['body']): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      parts.push(chunk);
      size += chunk.length;
      if (size >= MAX_ERROR_BODY_BYTES) break;
    }
  } catch {
    // The error status is the news; a body that failed too adds nothing.
  } finally {
    discardBody(body);
  }
  return new TextDecoder('utf-8').decode(Buffer.concat(parts).subarray(0, MAX_ERROR_BODY_BYTES));
}

/**
 * Checks a configured base URL (`http:` or `https:`, no credentials, no query) and returns it
 * without trailing slashes. Throws SentinelError `invalid_request` naming `setting`, never
 * echoing the value (it might hold a key pasted in by mistake).
 */
export function checkBaseUrl(value: string, setting: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalidRequest(`${setting} is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidRequest(`${setting} must be an http:// or https:// URL`);
  if (url.username !== '' || url.password !== '') throw invalidRequest(`${setting} must not hold credentials; configure the API key instead`);
  if (url.search !== '' || url.hash !== '') throw invalidRequest(`${setting} must not have a query or fragment`);
  return value.replace(/\/+$/, '');
}

/** `base` + `path` with exactly one slash between them. */
export function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}
