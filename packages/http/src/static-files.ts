/**
 * Serving fixed files from memory, shared by the docs site (`/docs`) and the web console
 * (`/console`): content types, ETags, caching, the security headers and HEAD/304 handling in
 * one place, so both sites answer the same way and a fix to one is a fix to both.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { SentinelError } from '@sentinel/api-core';
import { ifNoneMatchHits } from './respond.js';

export const HTML = 'text/html; charset=utf-8';
export const JS = 'text/javascript; charset=utf-8';
export const CSS = 'text/css; charset=utf-8';

/** Hashed asset names never change content: a year, immutable. Pages name the hashes: revalidate. */
export const ASSET_CACHE = 'public, max-age=31536000, immutable';
export const PAGE_CACHE = 'no-cache';

/** Content types by file extension; anything else is served as bytes (and nosniff keeps it so). */
const TYPES: Readonly<Record<string, string>> = {
  '.html': HTML,
  '.js': JS,
  '.mjs': JS,
  '.css': CSS,
  '.json': 'application/json',
  '.map': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};

/** The content type for a file name, by its extension. */
export function contentTypeOf(name: string): string {
  const dot = name.lastIndexOf('.');
  const slash = name.lastIndexOf('/');
  if (dot <= slash) return 'application/octet-stream';
  return TYPES[name.slice(dot).toLowerCase()] ?? 'application/octet-stream';
}

export interface StaticResource {
  readonly bytes: Buffer;
  readonly type: string;
  readonly etag: string;
  readonly cacheControl: string;
  /** The page's CSP; a site whose CSP depends on the request passes its own to {@link sendStatic}. */
  readonly csp: string;
}

export function etagOf(bytes: Buffer): string {
  return `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 27)}"`;
}

/** 12 hex digits of the content's SHA-256: what goes into a hashed asset name. */
export function shortHash(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 12);
}

export function staticResource(bytes: Buffer, type: string, cacheControl: string, csp: string): StaticResource {
  return { bytes, type, etag: etagOf(bytes), cacheControl, csp };
}

/** The static sites answer GET and HEAD only: a 405 naming them otherwise. */
export function assertReadMethod(method: string, path: string): void {
  if (method !== 'GET' && method !== 'HEAD') {
    throw new SentinelError('method_not_allowed', `method ${method} is not allowed on ${path}`, { allow: ['GET', 'HEAD'] });
  }
}

/**
 * Sends one resource: nosniff, its CSP (or `csp`), no referrer, its caching and ETag, a 304 when
 * `ifNoneMatch` matches, the body unless `omitBody` (HEAD).
 */
export function sendStatic(res: ServerResponse, found: StaticResource, options: { omitBody: boolean; ifNoneMatch: string | undefined; csp?: string }): void {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Security-Policy', options.csp ?? found.csp);
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', found.cacheControl);
  res.setHeader('ETag', found.etag);
  if (ifNoneMatchHits(options.ifNoneMatch, found.etag)) {
    res.writeHead(304);
    res.end();
    return;
  }
  res.writeHead(200, { 'Content-Type': found.type, 'Content-Length': found.bytes.length });
  res.end(options.omitBody ? undefined : found.bytes);
}
