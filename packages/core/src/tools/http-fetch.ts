/**
 * `http_fetch`: GET (or HEAD) a URL for the model. Off unless the operator lists the hosts it
 * may reach; loopback/private addresses are refused (see net-policy.ts); the answer is capped
 * in time and size; redirects are followed by hand, each hop checked again like the first
 * (undici follows none by itself), so a listed host cannot bounce the request elsewhere.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { isSentinelError, SentinelError, unavailable } from '../contract/errors.js';
import { errorCodeOf } from '../providers/http.js';
import { HostAllowList, pinnedLookup, resolveAllowedAddresses, type HostResolver } from './net-policy.js';
import type { Tool } from './types.js';
import { discardBody } from '../undici-body.js';

export interface HttpFetchToolOptions {
  /**
   * Hosts the tool may fetch from: exact names or IPs, `*.example.com` for subdomains, `*` for
   * any host (private addresses stay refused). Default none: every call fails with "not enabled".
   */
  allowHosts?: readonly string[];
  /** Allow loopback, private, link-local and unique-local addresses (a lab, a test). Default false. */
  allowPrivateAddresses?: boolean;
  /** Most bytes read from a response body; the rest is dropped and `truncated` set. Default 1048576 (1 MiB). */
  maxBytes?: number;
  /** Most characters of `body` in the result, measured as JSON text (so the result fits the tool registry's cap). Default 60000. */
  maxChars?: number;
  /** Time limit of one call, redirects included, in ms. Default 10000. */
  timeoutMs?: number;
  /** Most redirects followed. Default 5. */
  maxRedirects?: number;
  /** Host name resolver. Default `node:dns` lookup (every address). */
  resolver?: HostResolver;
}

/** What the tool returns. */
export interface HttpFetchResult {
  /** The URL finally fetched (after redirects). */
  url: string;
  status: number;
  content_type: string;
  /** The body as text (empty for HEAD and for binary content). */
  body: string;
  /** True when the body was cut at `maxBytes` or `maxChars`. */
  truncated: boolean;
  /** Set when the body was not returned because it is not text. */
  note?: string;
}

/** What one request of a fetch gave: a redirect to follow, or the answer. */
type HopOutcome =
  | { kind: 'redirect'; location: string; status: number }
  | { kind: 'answer'; status: number; contentType: string; text: string; truncated: boolean; binary: boolean };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_URL_LENGTH = 2048;
const USER_AGENT = 'SentinelStacks-http_fetch/1.0';

const TOOL_NAME = 'http_fetch';

function fail(code: 'forbidden' | 'invalid_request' | 'upstream_error' | 'unavailable', message: string, cause?: unknown): SentinelError {
  return new SentinelError(code, `${TOOL_NAME}: ${message}`, cause === undefined ? {} : { cause });
}

function isTextual(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === '') return true;
  if (type.startsWith('text/')) return true;
  return /(^application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded|x-ndjson|yaml|x-yaml|toml)$)|\+(json|xml)$/.test(type);
}

function decoderFor(contentType: string): { decode(input: Uint8Array): string } {
  const charset = /charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1];
  if (charset) {
    try {
      return new TextDecoder(charset);
    } catch {
      // An unknown charset reads as UTF-8 rather than failing the fetch.
    }
  }
  return new TextDecoder('utf-8');
}

/** Cuts `text` until its JSON form is at most `maxJsonChars` characters. */
function fitJson(text: string, maxJsonChars: number): { text: string; cut: boolean } {
  let out = text;
  let size = JSON.stringify(out).length;
  if (size <= maxJsonChars) return { text, cut: false };
  while (size > maxJsonChars && out.length > 0) {
    out = out.slice(0, Math.floor((out.length * maxJsonChars) / size * 0.95));
    size = JSON.stringify(out).length;
  }
  return { text: out, cut: true };
}

/** Reads at most `maxBytes` of a body; drops the rest. */
async function readCapped(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<{ bytes: Buffer; truncated: boolean }> {
  const parts: Buffer[] = [];
  let size = 0;
  let truncated = false;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (size + chunk.length > maxBytes) {
        parts.push(chunk.subarray(0, maxBytes - size));
        size = maxBytes;
        truncated = true;
        break;
      }
      parts.push(chunk);
      size += chunk.length;
    }
  } finally {
    discardBody(body);
  }
  return { bytes: Buffer.concat(parts, size), truncated };
}

function checkUrl(url: URL, allow: HostAllowList): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw fail('invalid_request', `only http and https URLs can be fetched, not ${url.protocol}`);
  if (url.username !== '' || url.password !== '') throw fail('invalid_request', 'URLs with credentials are refused');
  if (!allow.allows(url.hostname)) throw fail('forbidden', `host ${url.hostname} is not in this server's allow-list`);
}

/** Makes the `http_fetch` tool: `{url, method?}` → {@link HttpFetchResult}. */
export function createHttpFetchTool(options: HttpFetchToolOptions = {}): Tool {
  const allow = new HostAllowList(options.allowHosts ?? [], 'http_fetch allow-list');
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const maxChars = options.maxChars ?? 60_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxRedirects = options.maxRedirects ?? 5;
  for (const [name, value] of Object.entries({ maxBytes, maxChars, timeoutMs, maxRedirects })) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`http_fetch option ${name} must be a non-negative integer, got ${value}`);
  }
  const resolverOptions = {
    allowPrivateAddresses: options.allowPrivateAddresses === true,
    what: TOOL_NAME,
    ...(options.resolver ? { resolver: options.resolver } : {}),
  };

  const fetchOnce = async (url: URL, method: 'GET' | 'HEAD', signal: AbortSignal): Promise<HopOutcome> => {
    const addresses = await resolveAllowedAddresses(url.hostname, resolverOptions);
    const agent = new Agent({
      connect: { lookup: pinnedLookup(addresses), timeout: timeoutMs },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    try {
      const response = await request(url, {
        dispatcher: agent,
        method,
        signal,
        headers: { 'user-agent': USER_AGENT, accept: 'text/html,application/json,text/plain;q=0.9,*/*;q=0.5', 'accept-encoding': 'identity' },
      });
      const locationHeader = response.headers.location;
      const location: string | undefined = Array.isArray(locationHeader) ? locationHeader[0] : locationHeader;
      if (REDIRECTS.has(response.statusCode) && location !== undefined) {
        discardBody(response.body);
        return { kind: 'redirect', location, status: response.statusCode };
      }
      const contentTypeHeader = response.headers['content-type'];
      const contentType = (Array.isArray(contentTypeHeader) ? contentTypeHeader[0] : contentTypeHeader) ?? '';
      if (method === 'HEAD' || !isTextual(contentType)) {
        discardBody(response.body);
        return { kind: 'answer', status: response.statusCode, contentType, text: '', truncated: false, binary: method !== 'HEAD' };
      }
      const { bytes, truncated } = await readCapped(response.body, maxBytes);
      return { kind: 'answer', status: response.statusCode, contentType, text: decoderFor(contentType).decode(bytes), truncated, binary: false };
    } finally {
      agent.destroy().catch(() => undefined);
    }
  };

  return {
    name: TOOL_NAME,
    description:
      'Fetches a web page or API response over HTTP(S) with GET (or HEAD) and returns its status, content type and text ' +
      '(cut to a size limit). Only hosts this server allows can be fetched.',
    parameters: {
      type: 'object',
      properties: {
        url: { type: 'string', minLength: 1, maxLength: MAX_URL_LENGTH, description: 'Absolute http:// or https:// URL' },
        method: { type: 'string', enum: ['GET', 'HEAD'], description: 'Default GET' },
      },
      required: ['url'],
      additionalProperties: false,
    },
    run: async (params, ctx): Promise<HttpFetchResult> => {
      if (allow.isEmpty) throw unavailable('http_fetch is not enabled on this server (set --http-fetch-allow-hosts)');
      let method: 'GET' | 'HEAD' = params.method === 'HEAD' ? 'HEAD' : 'GET';
      let url: URL;
      try {
        url = new URL(String(params.url));
      } catch {
        throw fail('invalid_request', 'url is not an absolute URL');
      }
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = AbortSignal.any([ctx.signal, timeout]);
      try {
        for (let hop = 0; ; hop++) {
          checkUrl(url, allow);
          const outcome = await fetchOnce(url, method, signal);
          if (outcome.kind === 'redirect') {
            if (hop >= maxRedirects) throw fail('upstream_error', `more than ${maxRedirects} redirects`);
            try {
              url = new URL(outcome.location, url);
            } catch {
              throw fail('upstream_error', `${url.host} redirected to an invalid URL`);
            }
            if (outcome.status === 303 && method !== 'HEAD') method = 'GET';
            continue;
          }
          const fitted = fitJson(outcome.text, maxChars);
          return {
            url: url.toString(),
            status: outcome.status,
            content_type: outcome.contentType,
            body: fitted.text,
            truncated: outcome.truncated || fitted.cut,
            ...(outcome.binary ? { note: 'the body is not text and was not returned' } : {}),
          };
        }
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        if (timeout.aborted) throw fail('unavailable', `no complete answer from ${url.host} within ${timeoutMs} ms`);
        if (isSentinelError(err)) throw err;
        const code = errorCodeOf(err) ?? 'network error';
        throw fail('upstream_error', `cannot fetch from ${url.host}: ${code}`, err);
      }
    },
  };
}
