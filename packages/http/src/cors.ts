/**
 * CORS, on by default: browsers on other origins may call the API with a bearer token (not
 * cookies, hence no credentials by default). Preflights are answered from the router, so a
 * preflight advertises exactly the methods the path has.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface CorsOptions {
  /** Allowed origins: `'*'` or exact origins such as `https://app.example.com`. Default `'*'`. */
  origins?: '*' | string[];
  /** How long a browser may cache a preflight (`Access-Control-Max-Age`). Default 600 seconds. */
  maxAgeSeconds?: number;
  /** Send `Access-Control-Allow-Credentials: true` (the origin is then echoed, never `*`). Default `false`. */
  credentials?: boolean;
}

/** The resolved policy; undefined when CORS is off. */
export interface CorsPolicy {
  /** The `Access-Control-Allow-Origin` value for `origin`, or undefined when it is not allowed. */
  allowOrigin(origin: string): string | undefined;
  /** True when the answer depends on the Origin header (then `Vary: Origin`). */
  readonly variesByOrigin: boolean;
  readonly maxAge: string;
  readonly credentials: boolean;
}

// If-None-Match and ETag: a browser app revalidating a list (304) by itself.
const ALLOWED_REQUEST_HEADERS = 'Authorization, Content-Type, X-Request-Id, If-None-Match';
const ALLOWED_REQUEST_HEADER_SET = new Set(['authorization', 'content-type', 'x-request-id', 'if-none-match']);
// Sentinel-Api-Version and the deprecation headers (docs/VERSIONING.md): a browser app reads them
// to learn the server's minor version and that a route it calls is going away. RateLimit and
// RateLimit-Policy: a browser app can pace itself (draft-ietf-httpapi-ratelimit-headers).
const EXPOSED_HEADERS = 'X-Request-Id, Retry-After, ETag, Sentinel-Api-Version, Deprecation, Sunset, Link, RateLimit, RateLimit-Policy';

/** Turns the `cors` option into a policy. Default (`true` or undefined): any origin, 600 s, no credentials. */
export function resolveCors(option: boolean | CorsOptions | undefined): CorsPolicy | undefined {
  if (option === false) return undefined;
  const options = option === true || option === undefined ? {} : option;
  const origins = options.origins ?? '*';
  const credentials = options.credentials ?? false;
  const maxAge = String(options.maxAgeSeconds ?? 600);
  if (origins === '*') {
    // With credentials a browser refuses `*`, so the origin is echoed instead.
    return credentials
      ? { allowOrigin: (origin) => origin, variesByOrigin: true, maxAge, credentials }
      : { allowOrigin: () => '*', variesByOrigin: false, maxAge, credentials };
  }
  const allowed = new Set(origins.map((o) => o.toLowerCase()));
  return {
    allowOrigin: (origin) => (allowed.has(origin.toLowerCase()) ? origin : undefined),
    variesByOrigin: true,
    maxAge,
    credentials,
  };
}

/** Sets the CORS headers every response to a cross-origin request carries. */
export function setCorsHeaders(res: ServerResponse, policy: CorsPolicy, origin: string): void {
  if (policy.variesByOrigin) res.setHeader('Vary', 'Origin');
  const allowOrigin = policy.allowOrigin(origin);
  if (allowOrigin === undefined) return;
  res.setHeader('Access-Control-Allow-Origin', allowOrigin);
  res.setHeader('Access-Control-Expose-Headers', EXPOSED_HEADERS);
  if (policy.credentials) res.setHeader('Access-Control-Allow-Credentials', 'true');
}

/** True for a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
export function isPreflight(req: IncomingMessage): boolean {
  return req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined;
}

/** Sets the preflight-only headers; `allow` is the path's method list from the router. */
export function setPreflightHeaders(res: ServerResponse, policy: CorsPolicy, req: IncomingMessage, allow: readonly string[]): void {
  if (policy.allowOrigin(req.headers.origin ?? '') === undefined) return;
  res.setHeader('Access-Control-Allow-Methods', allow.join(', '));
  res.setHeader('Access-Control-Allow-Headers', allowedHeadersFor(req.headers['access-control-request-headers']));
  res.setHeader('Access-Control-Max-Age', policy.maxAge);
}

// Echo the browser's own list when every entry is allowed (it then matches byte for byte);
// otherwise answer with the allow-list and let the browser refuse what is missing.
function allowedHeadersFor(requested: string | undefined): string {
  if (!requested) return ALLOWED_REQUEST_HEADERS;
  const names = requested.split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
  return names.length > 0 && names.every((h) => ALLOWED_REQUEST_HEADER_SET.has(h)) ? requested : ALLOWED_REQUEST_HEADERS;
}
