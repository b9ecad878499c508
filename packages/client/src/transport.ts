/**
 * How the SDK reaches a server: URLs, the credential, JSON requests with the server's error
 * shape mapped to SentinelApiError, NDJSON streams read as they arrive, and WebSocket URLs and
 * subprotocols. Browser-safe: global fetch, the global (or a given) WebSocket, no node: imports.
 */
import { abortedError, SentinelApiError } from './errors.js';

/** The part of the WHATWG WebSocket the SDK uses (the browser's, Node 22's or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8080` (a path prefix is kept). */
  baseUrl: string;
  /** A login token (from `login`). Default none. */
  token?: string;
  /** An API key (`sk_sentinel_…`); used when no token is set. Default none. */
  apiKey?: string;
  /** The fetch to use. Default: the global fetch. */
  fetch?: typeof globalThis.fetch;
  /** The WebSocket class to use. Default: the global WebSocket (the Node entry falls back to `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Extra headers on every request (not on WebSocket upgrades, which browsers cannot set). */
  headers?: Record<string, string>;
}

export type QueryValue = string | number | boolean | undefined;

export interface RequestOptions {
  query?: Record<string, QueryValue>;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as is, with `contentType` (e.g. a Sentinelfile as application/yaml). */
  rawBody?: string;
  contentType?: string;
  accept?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** The WebSocket subprotocol every server speaks; the credential rides beside it. */
export const SUBPROTOCOL = 'sentinel.v1';

export class Transport {
  readonly #base: URL;
  readonly #fetch: typeof globalThis.fetch;
  readonly #headers: Record<string, string>;
  readonly #apiKey: string | undefined;
  #token: string | undefined;
  readonly WebSocket: WebSocketConstructor | undefined;

  constructor(options: ClientOptions) {
    const base = new URL(options.baseUrl);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`baseUrl must be http: or https:, not ${base.protocol}`);
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.#base = base;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('no fetch: pass options.fetch');
    this.#fetch = fetchImpl.bind(globalThis);
    this.#headers = { ...options.headers };
    this.#token = options.token;
    this.#apiKey = options.apiKey;
    this.WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  }

  /** The bearer credential sent now: the token, else the API key, else none. */
  get credential(): string | undefined {
    return this.#token ?? this.#apiKey;
  }

  setToken(token: string | undefined): void {
    this.#token = token;
  }

  /** The absolute URL of an API path (`/v1/...`) with its query (undefined values left out). */
  url(path: string, query: Record<string, QueryValue> = {}): string {
    const url = new URL(path.replace(/^\//, ''), this.#base);
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, String(value));
    return url.toString();
  }

  /** The same, as a ws:/wss: URL. */
  wsUrl(path: string, query: Record<string, QueryValue> = {}): string {
    const url = new URL(this.url(path, query));
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.toString();
  }

  /** Subprotocols of an upgrade: ours, and the credential as `bearer.<credential>` (browsers cannot set headers). */
  protocols(): string[] {
    const credential = this.credential;
    return credential === undefined ? [SUBPROTOCOL] : [SUBPROTOCOL, `bearer.${credential}`];
  }

  /** Sends a request and returns the raw Response once its status is a success; errors become SentinelApiError. */
  async send(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...this.#headers, accept: options.accept ?? 'application/json', ...options.headers };
    const credential = this.credential;
    if (credential !== undefined) headers.authorization = `Bearer ${credential}`;
    let body: string | undefined;
    if (options.rawBody !== undefined) {
      body = options.rawBody;
      headers['content-type'] = options.contentType ?? 'text/plain';
    } else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    if (options.signal?.aborted) throw abortedError(options.signal);
    let response: Response;
    try {
      response = await this.#fetch(this.url(path, options.query), { method, headers, ...(body === undefined ? {} : { body }), ...(options.signal ? { signal: options.signal } : {}) });
    } catch (err) {
      if (options.signal?.aborted) throw abortedError(options.signal);
      throw new SentinelApiError({ status: 0, code: 'network_error', message: `cannot reach ${this.#base.origin}: ${describe(err)}`, cause: err });
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  /** A JSON request: the parsed body, or undefined for 204/304. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.send(method, path, options);
    if (response.status === 204 || response.status === 304) return undefined as T;
    const text = await readText(response, options.signal);
    if (text.length === 0) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new SentinelApiError({ status: response.status, code: 'invalid_response', message: 'the server answered something that is not JSON', cause: err });
    }
  }

  /**
   * An NDJSON answer, one parsed object per line as it arrives. Breaking out of the loop (or the
   * signal) cancels the response body.
   */
  async *lines<T>(method: string, path: string, options: RequestOptions = {}): AsyncGenerator<T> {
    const response = await this.send(method, path, { ...options, accept: options.accept ?? 'application/x-ndjson' });
    if (response.body === null) return;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (options.signal?.aborted) throw abortedError(options.signal);
          throw new SentinelApiError({ status: 0, code: 'network_error', message: `the stream broke: ${describe(err)}`, cause: err });
        }
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line.length > 0) yield parseLine<T>(line, response.status);
        }
      }
      const rest = (buffer + decoder.decode()).trim();
      if (rest.length > 0) yield parseLine<T>(rest, response.status);
    } finally {
      reader.cancel().catch(() => undefined);
    }
  }
}

function parseLine<T>(line: string, status: number): T {
  try {
    return JSON.parse(line) as T;
  } catch (err) {
    throw new SentinelApiError({ status, code: 'invalid_response', message: 'the stream carried a line that is not JSON', cause: err });
  }
}

async function readText(response: Response, signal: AbortSignal | undefined): Promise<string> {
  try {
    return await response.text();
  } catch (err) {
    if (signal?.aborted) throw abortedError(signal);
    throw new SentinelApiError({ status: response.status, code: 'network_error', message: `the answer broke off: ${describe(err)}`, cause: err });
  }
}

/** The server's `{error, code, docs?, details?}` as a SentinelApiError (any other body: its status). */
async function errorFrom(response: Response): Promise<SentinelApiError> {
  const requestId = response.headers.get('x-request-id') ?? undefined;
  const retry = response.headers.get('retry-after');
  const retryAfter = retry === null || !/^\d+$/.test(retry) ? undefined : Number(retry);
  let body: { error?: unknown; code?: unknown; docs?: unknown; details?: unknown } = {};
  try {
    body = JSON.parse(await response.text()) as typeof body;
  } catch {
    // Not our JSON (a proxy's page, say): the status speaks.
  }
  return new SentinelApiError({
    status: response.status,
    code: typeof body.code === 'string' ? body.code : `http_${response.status}`,
    message: typeof body.error === 'string' ? body.error : `HTTP ${response.status} ${response.statusText}`.trim(),
    ...(typeof body.docs === 'string' ? { docs: body.docs } : {}),
    ...(body.details === undefined ? {} : { details: body.details }),
    ...(requestId === undefined ? {} : { requestId }),
    ...(retryAfter === undefined ? {} : { retryAfter }),
  });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}
