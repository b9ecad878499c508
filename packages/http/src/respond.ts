/**
 * Writing responses. Everything we send goes through here so the shapes stay uniform: JSON
 * with an exact Content-Length, 204 without a body, errors as `{error, code, docs}`.
 */
import type { ServerResponse } from 'node:http';
import { internal, isStreamResult, publicErrorBody, SentinelError, type RouteResponse } from '@sentinel/api-core';
import { httpStatusForErrorCode as statusForErrorCode } from '@sentinel/api-core';

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Sends `body` as JSON; `omitBody` (HEAD) keeps the headers, Content-Length included. */
export function sendJson(res: ServerResponse, status: number, body: unknown, omitBody: boolean): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(json) });
  res.end(omitBody ? undefined : json);
}

/** Sets headers the seam handed over (RouteResponse or SentinelError `headers`). */
export function setResponseHeaders(res: ServerResponse, headers: Readonly<Record<string, string>>): void {
  for (const name in headers) res.setHeader(name, headers[name] as string);
}

/** Sends a response without a body (204, OPTIONS). */
export function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status);
  res.end();
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === 'object' && value !== null && Symbol.asyncIterator in value;
}

/**
 * True when an `If-None-Match` header matches `etag` (RFC 9110 §13.1.2: `*`, or any listed tag
 * by the weak comparison, i.e. ignoring `W/`).
 */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  // The common case, a client sending back the one tag it got: no split.
  if (header === etag) return true;
  for (const part of header.split(',')) {
    const tag = part.trim();
    if (tag === '*' || tag === etag || (tag.startsWith('W/') && tag.slice(2) === etag)) return true;
  }
  return false;
}

/**
 * Bytes a handler serialized already (PreparedJson), with their ETag. `ifNoneMatch` (the
 * request's header, for GET and HEAD only) matching the tag gets 304 without a body.
 * `Cache-Control: private, no-cache`: the bodies are per user, and a client must revalidate,
 * which costs it a 304 at most.
 */
function sendPrepared(res: ServerResponse, status: number, prepared: { bytes: Buffer; etag: string }, omitBody: boolean, ifNoneMatch: string | undefined): void {
  if (status === 200 && ifNoneMatchHits(ifNoneMatch, prepared.etag)) {
    res.writeHead(304, { ETag: prepared.etag, 'Cache-Control': PREPARED_CACHE_CONTROL });
    res.end();
    return;
  }
  res.writeHead(status, {
    'Content-Type': JSON_CONTENT_TYPE,
    'Content-Length': prepared.bytes.length,
    ETag: prepared.etag,
    'Cache-Control': PREPARED_CACHE_CONTROL,
  });
  res.end(omitBody ? undefined : prepared.bytes);
}

const PREPARED_CACHE_CONTROL = 'private, no-cache';

/**
 * Sends what `api.invoke` returned as JSON or an empty response. Streamed results
 * (`streamResult(...)`) never get here: the listener hands them to `sendStream` (stream.ts).
 * `ifNoneMatch`: the request's `If-None-Match` on GET/HEAD (default none), for prepared bodies.
 */
export function sendRouteResponse(res: ServerResponse, response: RouteResponse, omitBody: boolean, ifNoneMatch?: string): void {
  const { status, body } = response;
  if (response.prepared !== undefined) {
    sendPrepared(res, status, response.prepared, omitBody, ifNoneMatch);
    return;
  }
  if (body === undefined || status === 204 || status === 304) {
    sendEmpty(res, status);
    return;
  }
  if (isStreamResult(body) || isAsyncIterable(body)) {
    // A bare iterable is a handler bug: it must be wrapped in streamResult() to be streamed.
    throw internal('a handler returned an async iterable without streamResult(): it cannot be sent as JSON');
  }
  sendJson(res, status, body, omitBody);
}

/**
 * Sends `err` as `{error, code, details?, docs}` with the status from the code table and the headers the code
 * implies. An `internal` error never shows its message: that belongs in the log.
 */
export function sendError(res: ServerResponse, err: SentinelError, omitBody: boolean): void {
  const status = statusForErrorCode(err.code);
  if (err.challenge !== undefined) res.setHeader('WWW-Authenticate', err.challenge);
  else if (err.code === 'unauthorized') res.setHeader('WWW-Authenticate', 'Bearer');
  if (err.code === 'method_not_allowed' && err.allow) res.setHeader('Allow', err.allow.join(', '));
  if (err.headers !== undefined) setResponseHeaders(res, err.headers);
  if (err.retryAfter !== undefined) res.setHeader('Retry-After', String(Math.max(0, Math.ceil(err.retryAfter))));
  // The rest of an oversized body is not worth reading: close once the 413 is out.
  if (err.code === 'payload_too_large') res.setHeader('Connection', 'close');
  sendJson(res, status, publicErrorBody(err), omitBody);
}
