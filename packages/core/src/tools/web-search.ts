/**
 * `web_search`: asks a SearXNG-compatible search service (`GET <url>/search?q=…&format=json`)
 * and returns its results. Without a configured service it fails with a clear "not configured":
 * a search tool that invents results would have the model cite pages that do not exist.
 * The service URL is the operator's choice (often a SearXNG on localhost), so it is not subject
 * to http_fetch's private-address rule.
 */
import { Agent, request } from 'undici';
import { isSentinelError, SentinelError, unavailable } from '../contract/errors.js';
import { checkBaseUrl, errorCodeOf, joinUrl, originOf } from '../providers/http.js';
import type { Tool } from './types.js';
import { discardBody, type DiscardableBody } from '../undici-body.js';

export interface WebSearchToolOptions {
  /** Base URL of a SearXNG-compatible service, e.g. `http://127.0.0.1:8888`. Default none: the tool fails with "not configured". */
  url?: string;
  /** Most results returned (a call may ask for fewer). Default 5; at most 20. */
  maxResults?: number;
  /** Time limit of one search, in ms. Default 10000. */
  timeoutMs?: number;
}

/** One result as the tool returns it. */
export interface WebSearchResult {
  title: string;
  url: string;
  content: string;
}

const TOOL_NAME = 'web_search';
const MAX_QUERY_LENGTH = 500;
const MAX_RESPONSE_BYTES = 2 * 1024 * 1024;
const MAX_TITLE_CHARS = 300;
const MAX_CONTENT_CHARS = 1000;
const MAX_URL_CHARS = 2048;

function fail(code: 'unavailable' | 'upstream_error', message: string, cause?: unknown): SentinelError {
  return new SentinelError(code, `${TOOL_NAME}: ${message}`, cause === undefined ? {} : { cause });
}

function cut(value: unknown, max: number): string {
  const text = typeof value === 'string' ? value.replace(/\s+/g, ' ').trim() : '';
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The search endpoint for a configured base URL (`…/search` is accepted as given). */
function searchEndpoint(base: string): string {
  return /\/search$/.test(base) ? base : joinUrl(base, 'search');
}

/** Makes the `web_search` tool: `{query, max_results?}` → `{query, results: [{title, url, content}]}`. */
export function createWebSearchTool(options: WebSearchToolOptions = {}): Tool {
  const endpoint = options.url === undefined || options.url.trim() === '' ? undefined : searchEndpoint(checkBaseUrl(options.url.trim(), 'the web_search URL'));
  const maxResults = Math.min(20, options.maxResults ?? 5);
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (!Number.isSafeInteger(maxResults) || maxResults < 1) throw new RangeError(`web_search option maxResults must be a positive integer, got ${options.maxResults}`);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`web_search option timeoutMs must be a positive integer, got ${timeoutMs}`);

  return {
    name: TOOL_NAME,
    description: 'Searches the web and returns the top results (title, URL and a snippet of each). Use it for current facts; cite the URLs.',
    parameters: {
      type: 'object',
      properties: {
        query: { type: 'string', minLength: 1, maxLength: MAX_QUERY_LENGTH, description: 'What to search for' },
        max_results: { type: 'integer', minimum: 1, maximum: 20, description: `How many results (default and cap ${maxResults})` },
      },
      required: ['query'],
      additionalProperties: false,
    },
    run: async (params, ctx) => {
      if (endpoint === undefined) throw unavailable('web_search is not configured on this server (set --web-search-url)');
      const query = String(params.query);
      const limit = Math.min(maxResults, typeof params.max_results === 'number' ? params.max_results : maxResults);
      const url = new URL(endpoint);
      url.searchParams.set('q', query);
      url.searchParams.set('format', 'json');
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([ctx.signal, timeout]);
      const agent = new Agent({ connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      const origin = originOf(endpoint);
      try {
        const response = await request(url, { dispatcher: agent, method: 'GET', signal, headers: { accept: 'application/json', 'accept-encoding': 'identity' } });
        const text = await readText(response.body, MAX_RESPONSE_BYTES);
        if (response.statusCode === 403) {
          throw fail('upstream_error', `the search service at ${origin} answered 403: enable the json format (SearXNG settings.yml: search.formats: [html, json])`);
        }
        if (response.statusCode === 429) throw fail('upstream_error', `the search service at ${origin} is rate limiting (429); try again later`);
        if (response.statusCode < 200 || response.statusCode >= 300) throw fail('upstream_error', `the search service at ${origin} answered ${response.statusCode}`);
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          throw fail('upstream_error', `the search service at ${origin} did not answer JSON: is --web-search-url a SearXNG instance with the json format enabled?`);
        }
        const raw = (body as { results?: unknown } | null)?.results;
        if (!Array.isArray(raw)) throw fail('upstream_error', `the search service at ${origin} answered without a results list`);
        const results: WebSearchResult[] = [];
        for (const item of raw) {
          if (results.length >= limit) break;
          const entry = (item ?? {}) as Record<string, unknown>;
          const link = cut(entry.url, MAX_URL_CHARS);
          if (!/^https?:\/\//i.test(link)) continue;
          results.push({ title: cut(entry.title, MAX_TITLE_CHARS), url: link, content: cut(entry.content, MAX_CONTENT_CHARS) });
        }
        return { query, results };
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        if (timeout.aborted) throw fail('unavailable', `no answer from the search service at ${origin} within ${timeoutMs} ms`);
        if (isSentinelError(err)) throw err;
        throw fail('upstream_error', `cannot reach the search service at ${origin}: ${errorCodeOf(err) ?? 'network error'}`, err);
      } finally {
        agent.destroy().catch(() => undefined);
      }
    },
  };
}

async function readText(body: AsyncIterable<Buffer> & DiscardableBody, maxBytes: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > maxBytes) throw fail('upstream_error', `the search service answered more than ${maxBytes} bytes`);
      parts.push(chunk);
    }
  } finally {
    discardBody(body);
  }
  return new TextDecoder('utf-8').decode(Buffer.concat(parts));
}
