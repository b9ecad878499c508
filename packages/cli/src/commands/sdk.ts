/**
 * The SDK calls the commands make, in the shape of `@sentinel/api-client`'s namespaces
 * (`agents`, `images`, `registry`, `me`). Each is one Transport call of the SDK, so every failure
 * is already a SentinelApiError; once the SDK's own namespaces are merged, each function here
 * becomes a one-line delegation (or this file goes and the commands call `client.agents…`).
 */
import { SentinelApiError, type SentinelClient } from '@sentinel/api-client';

/** An agent resource as the API returns it (only the fields the commands read are named). */
export interface Agent {
  id: string;
  name: string;
  image: string;
  image_id: string;
  status: string;
  created_at: string;
  model: string;
  owner: string;
  [field: string]: unknown;
}

/** An image resource as the API returns it. */
export interface Image {
  id: string;
  short_id: string;
  name: string;
  tag: string;
  tags: string[];
  created_at: string;
  size: number;
  base_model: string;
  description: string;
  [field: string]: unknown;
}

export interface LogRecord {
  agent_id: string;
  seq: number;
  timestamp: string;
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

/** One NDJSON line of a push or pull before its result. */
export interface TransferProgress {
  status: string;
  digest: string;
  kind: string;
  bytes: number;
  total: number;
  overall: { bytes: number; total: number };
}

export interface TransferResult {
  name: string;
  tag?: string;
  digest: string;
  status: string;
  registry?: string;
  [field: string]: unknown;
}

export interface SearchResult {
  name: string;
  tags: string[];
  tag?: string;
  description?: string;
  digest?: string;
  agent?: boolean;
}

export interface LogsQuery {
  since?: string;
  tail?: string;
  level?: string;
}

interface Call {
  signal?: AbortSignal;
}

const enc = encodeURIComponent;

function withSignal(options: Call): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}

/** Streams push/pull progress; the last item is the result, an `{error, code}` line throws. */
async function* transfer(client: SentinelClient, path: string, body: unknown, options: Call): AsyncGenerator<TransferProgress | TransferResult> {
  for await (const line of client.transport.lines<Record<string, unknown>>('POST', path, { body, ...withSignal(options) })) {
    if (typeof line.error === 'string') {
      throw new SentinelApiError({ status: 0, code: typeof line.code === 'string' ? line.code : 'internal', message: line.error });
    }
    yield line as unknown as TransferProgress | TransferResult;
  }
}

/** True for a progress line (a blob step), false for the result that ends the stream. */
export function isProgress(line: TransferProgress | TransferResult): line is TransferProgress {
  return typeof (line as TransferProgress).kind === 'string' && typeof (line as TransferProgress).overall === 'object';
}

export function api(client: SentinelClient) {
  const t = client.transport;
  return {
    me: (o: Call = {}) => t.request<{ username: string; role: string }>('GET', '/v1/auth/me', withSignal(o)),
    agents: {
      list: async (o: Call = {}) => (await t.request<{ agents: Agent[] }>('GET', '/v1/agents', withSignal(o))).agents,
      get: (ref: string, o: Call = {}) => t.request<Agent>('GET', `/v1/agents/${enc(ref)}`, withSignal(o)),
      create: (body: { image: string; name?: string; environment?: Record<string, string> }, o: Call = {}) =>
        t.request<Agent>('POST', '/v1/agents', { body, ...withSignal(o) }),
      delete: (ref: string, o: Call = {}) => t.request<void>('DELETE', `/v1/agents/${enc(ref)}`, withSignal(o)),
      start: (ref: string, o: Call = {}) => t.request<Agent>('POST', `/v1/agents/${enc(ref)}/start`, withSignal(o)),
      stop: (ref: string, o: Call = {}) => t.request<Agent>('POST', `/v1/agents/${enc(ref)}/stop`, withSignal(o)),
      logs: async (ref: string, query: LogsQuery, o: Call = {}) =>
        (await t.request<{ logs: LogRecord[] }>('GET', `/v1/agents/${enc(ref)}/logs`, { query: { ...query }, ...withSignal(o) })).logs,
      followLogs: (ref: string, query: LogsQuery, o: Call = {}) =>
        t.lines<LogRecord>('GET', `/v1/agents/${enc(ref)}/logs`, { query: { ...query, follow: true }, ...withSignal(o) }),
    },
    images: {
      list: async (o: Call = {}) => (await t.request<{ images: Image[] }>('GET', '/v1/images', withSignal(o))).images,
      get: (ref: string, o: Call = {}) => t.request<Image>('GET', `/v1/images/${enc(ref)}`, withSignal(o)),
      /** A Sentinelfile's text (YAML, or JSON, which is YAML too). */
      build: (sentinelfile: string, o: Call = {}) =>
        t.request<Image>('POST', '/v1/images', { rawBody: sentinelfile, contentType: 'application/yaml', ...withSignal(o) }),
      delete: (ref: string, o: Call = {}) => t.request<void>('DELETE', `/v1/images/${enc(ref)}`, withSignal(o)),
    },
    registry: {
      search: (query: string, limit: number | undefined, o: Call = {}) =>
        t.request<{ results: SearchResult[]; total: number }>('GET', '/v1/registry/search', { query: { query, limit }, ...withSignal(o) }),
      push: (image: string, o: Call = {}) => transfer(client, '/v1/registry/push', { image }, o),
      pull: (name: string, o: Call = {}) => transfer(client, '/v1/registry/pull', { name }, o),
    },
  };
}

export type Api = ReturnType<typeof api>;
