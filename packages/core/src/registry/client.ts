/**
 * A client for the OCI distribution API (distribution-spec v1.1) over undici: blobs (HEAD,
 * monolithic upload, GET with redirects), manifests (PUT/GET by tag or digest), tag lists and
 * the `_catalog`, with anonymous, Basic and Bearer (token protocol) authentication.
 *
 * Why our own: the npm clients we checked do not fit. @snyk/docker-registry-v2-client is
 * needle-based and pull-only (no uploads); docker-registry-client sits on the old restify stack;
 * oci-registry-client 0.2 is tiny and built on node-fetch 2. None pushes OCI artifacts with
 * bearer challenges, progress and digest verification on undici (already our HTTP client), so
 * this is a small client of our own.
 *
 * Everything pulled is verified against the digest it was asked for (and its size), under a
 * size cap, so a registry or a proxy in between cannot substitute content. Failures are
 * SentinelErrors: `upstream_error` for an unreachable or failing registry, refused credentials
 * (a registry's 401/403 is never passed on as our own 401), digest mismatches and oversized
 * content; `not_found` for unknown repositories, tags and manifests. Every call takes an
 * AbortSignal; an aborted call rejects with the signal's reason. With an `addressPolicy` (a
 * registry named in a request) every connection is checked and pinned, and every failure to
 * connect is the same `registry <host> could not be reached`.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { invalidRequest, isSentinelError, SentinelError } from '../contract/errors.js';
import { OCI_MANIFEST_MEDIA_TYPE } from '../images/oci.js';
import { MAX_MANIFEST_BYTES } from '../images/layout.js';
import { parseWwwAuthenticate, TokenCache, type AuthChallenge } from './auth.js';
import { discardBody } from '../undici-body.js';
import { injectTraceHeaders } from '../telemetry/tracing.js';
import { normalizeHost, pinnedLookup, resolveAllowedAddresses, type HostResolver } from '../tools/net-policy.js';

/**
 * The address policy of the `http_fetch` tool, for a registry someone named in a request: every
 * host the client connects to (the registry, its token realm, redirects) is resolved and checked
 * (loopback/private/link-local refused unless allowed), and the connection pinned to the checked
 * addresses (no DNS rebinding). Failing to connect, for any reason, is then one message,
 * `registry <host> could not be reached`, so the errors cannot map which internal ports are open.
 */
export interface RegistryAddressPolicy {
  /** Let loopback and private addresses through (tests, trusted networks). Default false. */
  allowPrivateAddresses?: boolean;
  /** Default: `node:dns`. */
  resolver?: HostResolver;
}

/** Username and password (or access token as the password, as GHCR and Harbor robots use). */
export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryClientOptions {
  /** `http(s)://host[:port]`; any path is ignored (namespaces are the caller's business). */
  url: string;
  /** Default: anonymous. */
  credentials?: RegistryCredentials;
  /** Undici dispatcher to send through. Default: an Agent owned (and closed) by this client. */
  dispatcher?: Dispatcher;
  /** Milliseconds to establish a connection. Default 10 000. */
  connectTimeoutMs?: number;
  /** Milliseconds to wait for response headers, and between body chunks. Default 30 000. */
  requestTimeoutMs?: number;
  /** Largest manifest accepted. Default 4 MiB ({@link MAX_MANIFEST_BYTES}). */
  maxManifestBytes?: number;
  /** Clock for token expiry. Default `Date.now`. */
  now?: () => number;
  /** Check and pin every connection (see {@link RegistryAddressPolicy}); ignores `dispatcher`. Default: none (a trusted registry). */
  addressPolicy?: RegistryAddressPolicy;
}

/** Which access a request needs; it picks the bearer token scope. */
export type RegistryAccess = 'pull' | 'push';

/** Bytes moved so far for one blob or manifest. */
export type TransferListener = (bytes: number) => void;

/** A manifest as fetched: the exact bytes, their digest and the media type the registry gave. */
export interface FetchedManifest {
  bytes: Buffer;
  /** `sha256:` of `bytes` (verified against the digest asked for, or the registry's Docker-Content-Digest). */
  digest: string;
  /** The Content-Type of the response (or the manifest's own mediaType). */
  mediaType: string;
}

/** One page of the catalog. */
export interface CatalogPage {
  repositories: string[];
  /** The `last` value for the next page; undefined on the last page. */
  next: string | undefined;
}

export const MANIFEST_ACCEPT = [
  OCI_MANIFEST_MEDIA_TYPE,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

const USER_AGENT = 'sentinel-api (OCI distribution client)';
const UPLOAD_CHUNK_BYTES = 64 * 1024;
const MAX_REDIRECTS = 5;
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const MAX_TOKEN_BODY_BYTES = 1024 * 1024;
const MAX_LIST_BODY_BYTES = 4 * 1024 * 1024;
const CATALOG_PAGE_SIZE = 1000;

type Headers = Record<string, string>;

interface SendOptions {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  url: URL;
  headers?: Headers;
  /** A factory, so a request answered with a 401 challenge can be sent again. */
  body?: () => Buffer | Readable;
  scope: string;
  signal: AbortSignal | undefined;
}

function headerOf(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Drops a response body (idempotent: a body already read or dropped is fine). */
async function discard(res: Dispatcher.ResponseData): Promise<void> {
  try {
    await res.body.dump();
  } catch {
    discardBody(res.body);
  }
}

function errnoOf(err: unknown): string | undefined {
  for (let current = err, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/** The `next` link of an RFC 8288 `Link` header (registries page lists with it). */
export function nextLink(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(',')) {
    const match = /<([^>]*)>\s*;(.*)$/.exec(part.trim());
    if (match && /(?:^|;)\s*rel="?next"?\s*(?:;|$)/i.test(match[2] as string)) return match[1];
  }
  return undefined;
}

/** Reads a body up to `cap` bytes; past it, stops reading and throws `tooBig()`. */
async function readBody(body: Dispatcher.ResponseData['body'], cap: number, tooBig: () => SentinelError, onChunk?: (chunk: Buffer) => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.byteLength;
    if (total > cap) {
      discardBody(body);
      throw tooBig();
    }
    onChunk?.(chunk);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** A distribution-API client for one registry (see the module comment). */
export class RegistryClient {
  /** `host[:port]`, for messages. */
  readonly host: string;
  readonly origin: string;
  private readonly credentials: RegistryCredentials | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private closed = false;
  private readonly connectTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly policy: RegistryAddressPolicy | undefined;
  /** With a policy: one pinned Agent per checked host name. */
  private readonly pinned = new Map<string, Promise<Agent>>();
  /** True once the registry (or its token server) answered anything: a timeout before that is "could not be reached". */
  private answered = false;
  private readonly maxManifestBytes: number;
  private readonly tokens: TokenCache;
  /** What the registry asked for the last time it challenged us, so later requests authenticate up front. */
  private scheme: { kind: 'basic' } | { kind: 'bearer'; realm: string; service: string | undefined } | undefined;

  constructor(options: RegistryClientOptions) {
    const url = new URL(options.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidRequest('a registry URL must be http:// or https://');
    this.origin = url.origin;
    this.host = url.host;
    this.credentials = options.credentials;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.policy = options.addressPolicy;
    this.maxManifestBytes = options.maxManifestBytes ?? MAX_MANIFEST_BYTES;
    this.tokens = new TokenCache(options.now);
    this.ownsDispatcher = options.dispatcher === undefined || this.policy !== undefined;
    this.dispatcher =
      (this.policy === undefined ? options.dispatcher : undefined) ??
      new Agent({ connect: { timeout: this.connectTimeoutMs }, headersTimeout: this.requestTimeoutMs, bodyTimeout: this.requestTimeoutMs });
  }

  /** Closes the connections of a dispatcher this client created. Idempotent. */
  async close(): Promise<void> {
    if (!this.ownsDispatcher || this.closed) return;
    this.closed = true;
    const pinned = await Promise.allSettled([...this.pinned.values()]);
    this.pinned.clear();
    await Promise.all([this.dispatcher.close(), ...pinned.map((p) => (p.status === 'fulfilled' ? p.value.close() : undefined))]);
  }

  /** Checks the registry speaks the distribution API and accepts our credentials (GET /v2/). */
  async ping(signal?: AbortSignal): Promise<void> {
    const res = await this.send({ method: 'GET', url: this.url('/v2/'), scope: '', signal });
    if (res.statusCode !== 200) throw await this.failure(res, 'GET /v2/');
    await discard(res);
  }

  /** The blob's size when the repository has it, null when not (HEAD). */
  async blobSize(repository: string, digest: string, options: { access?: RegistryAccess; signal?: AbortSignal } = {}): Promise<number | null> {
    const path = `/v2/${repository}/blobs/${digest}`;
    const res = await this.send({ method: 'HEAD', url: this.url(path), scope: this.scope(repository, options.access ?? 'pull'), signal: options.signal });
    await discard(res);
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) throw await this.failure(res, `HEAD ${path}`);
    const length = Number(headerOf(res, 'content-length'));
    return Number.isSafeInteger(length) ? length : 0;
  }

  /**
   * Uploads a blob in one piece: POST `/blobs/uploads/`, then PUT its Location with `?digest=`.
   * `onProgress` sees the bytes sent so far. The registry checks the digest on its side.
   */
  async uploadBlob(repository: string, digest: string, bytes: Uint8Array, options: { onProgress?: TransferListener; signal?: AbortSignal } = {}): Promise<void> {
    const { signal, onProgress } = options;
    const scope = this.scope(repository, 'push');
    const startPath = `/v2/${repository}/blobs/uploads/`;
    const start = await this.send({ method: 'POST', url: this.url(startPath), headers: { 'content-length': '0' }, scope, signal });
    if (start.statusCode !== 202) throw await this.failure(start, `POST ${startPath}`);
    await discard(start);
    const location = headerOf(start, 'location');
    if (location === undefined) throw this.upstream(`registry ${this.host} started an upload without a Location header`);
    const target = this.followable(location, new URL(startPath, this.origin));
    target.searchParams.append('digest', digest);
    let reported = -1;
    const report = (sent: number) => {
      if (sent === reported) return;
      reported = sent;
      onProgress?.(sent);
    };
    const body = () =>
      Readable.from(
        (function* chunks() {
          for (let offset = 0; offset < bytes.byteLength; offset += UPLOAD_CHUNK_BYTES) {
            yield bytes.subarray(offset, Math.min(offset + UPLOAD_CHUNK_BYTES, bytes.byteLength));
            // The generator resumes once the previous chunk was taken for sending.
            report(Math.min(offset + UPLOAD_CHUNK_BYTES, bytes.byteLength));
          }
        })(),
        { objectMode: false },
      );
    const res = await this.send({
      method: 'PUT',
      url: target,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.byteLength) },
      body,
      scope,
      signal,
    });
    if (res.statusCode !== 201 && res.statusCode !== 204) throw await this.failure(res, `PUT ${target.pathname}`);
    await discard(res);
    report(bytes.byteLength);
  }

  /**
   * Stores a manifest under a tag (or its digest). Returns the digest of the bytes; when the
   * registry reports a different one (Docker-Content-Digest), that is an `upstream_error`.
   */
  async putManifest(repository: string, reference: string, bytes: Uint8Array, options: { mediaType?: string; signal?: AbortSignal } = {}): Promise<string> {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const path = `/v2/${repository}/manifests/${reference}`;
    const res = await this.send({
      method: 'PUT',
      url: this.url(path),
      headers: { 'content-type': options.mediaType ?? OCI_MANIFEST_MEDIA_TYPE, 'content-length': String(bytes.byteLength) },
      body: () => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      scope: this.scope(repository, 'push'),
      signal: options.signal,
    });
    if (res.statusCode !== 201 && res.statusCode !== 200) throw await this.failure(res, `PUT ${path}`);
    await discard(res);
    const reported = headerOf(res, 'docker-content-digest');
    if (reported !== undefined && reported.startsWith('sha256:') && reported !== digest) {
      throw this.upstream(`digest mismatch: registry ${this.host} stored ${repository}:${reference} as ${reported}, but the manifest is ${digest}`);
    }
    return digest;
  }

  /**
   * Fetches a manifest by tag or digest (accepting OCI and Docker manifests and indexes, so a
   * non-agent image is reported as such rather than as missing). Verified: by digest, the bytes
   * must hash to it; by tag, to the registry's Docker-Content-Digest when it sends one.
   * `not_found` when the repository, tag or manifest is unknown.
   */
  async getManifest(repository: string, reference: string, options: { signal?: AbortSignal; onProgress?: TransferListener } = {}): Promise<FetchedManifest> {
    const path = `/v2/${repository}/manifests/${reference}`;
    const res = await this.send({ method: 'GET', url: this.url(path), headers: { accept: MANIFEST_ACCEPT }, scope: this.scope(repository, 'pull'), signal: options.signal });
    if (res.statusCode === 404) throw await this.notFound(res, repository, reference);
    if (res.statusCode !== 200) throw await this.failure(res, `GET ${path}`);
    const declared = Number(headerOf(res, 'content-length'));
    const tooBig = () => this.upstream(`registry ${this.host} sent a manifest for ${repository}:${reference} larger than the ${this.maxManifestBytes}-byte limit`);
    if (Number.isFinite(declared) && declared > this.maxManifestBytes) {
      discardBody(res.body);
      throw tooBig();
    }
    const hash = createHash('sha256');
    let received = 0;
    const bytes = await this.readGuarded(res, this.maxManifestBytes, tooBig, options.signal, (chunk) => {
      hash.update(chunk);
      received += chunk.byteLength;
      options.onProgress?.(received);
    });
    const digest = `sha256:${hash.digest('hex')}`;
    const expected = reference.startsWith('sha256:') ? reference : headerOf(res, 'docker-content-digest');
    if (expected !== undefined && expected.startsWith('sha256:') && expected !== digest) {
      throw this.upstream(`digest mismatch: the manifest of ${this.host}/${repository}:${reference} is ${digest}, expected ${expected}`);
    }
    const contentType = headerOf(res, 'content-type')?.split(';')[0]?.trim();
    return { bytes, digest, mediaType: contentType && contentType !== 'application/json' ? contentType : mediaTypeOf(bytes) };
  }

  /**
   * Fetches a blob and verifies it: at most `expected.size` bytes (which must be at most
   * `maxBytes`) whose sha256 is `expected.digest`. Redirects (to storage back ends) are
   * followed without our credentials when they leave the registry's origin.
   */
  async getBlob(
    repository: string,
    expected: { digest: string; size: number },
    options: { maxBytes: number; onProgress?: TransferListener; signal?: AbortSignal },
  ): Promise<Buffer> {
    const { signal, onProgress, maxBytes } = options;
    const where = `${this.host}/${repository}@${expected.digest}`;
    if (!Number.isSafeInteger(expected.size) || expected.size < 0) throw this.upstream(`blob ${where} has an invalid size in its descriptor`);
    if (expected.size > maxBytes) throw this.upstream(`blob ${where} is ${expected.size} bytes, more than the ${maxBytes}-byte limit`);
    const path = `/v2/${repository}/blobs/${expected.digest}`;
    let url = this.url(path);
    let res = await this.send({ method: 'GET', url, scope: this.scope(repository, 'pull'), signal });
    for (let hops = 0; isRedirect(res.statusCode); hops++) {
      const location = headerOf(res, 'location');
      await discard(res);
      if (location === undefined || hops >= MAX_REDIRECTS) throw this.upstream(`registry ${this.host} redirected GET ${path} too often or without a Location`);
      url = this.followable(location, url);
      res =
        url.origin === this.origin
          ? await this.send({ method: 'GET', url, scope: this.scope(repository, 'pull'), signal })
          : await this.raw('GET', url, {}, undefined, signal);
    }
    if (res.statusCode === 404) {
      await discard(res);
      throw new SentinelError('not_found', `blob ${expected.digest} not found in ${this.host}/${repository}`);
    }
    if (res.statusCode !== 200) throw await this.failure(res, `GET ${path}`);
    const hash = createHash('sha256');
    let received = 0;
    const mismatch = () => this.upstream(`digest mismatch: blob ${where} is longer than the ${expected.size} bytes its descriptor says`);
    const bytes = await this.readGuarded(res, expected.size, mismatch, signal, (chunk) => {
      hash.update(chunk);
      received += chunk.byteLength;
      onProgress?.(received);
    });
    const digest = `sha256:${hash.digest('hex')}`;
    if (bytes.byteLength !== expected.size || digest !== expected.digest) {
      throw this.upstream(`digest mismatch: blob from ${this.host}/${repository} is ${digest} (${bytes.byteLength} bytes), expected ${expected.digest} (${expected.size} bytes)`);
    }
    return bytes;
  }

  /** Every tag of a repository (following `Link` pages, at most `maxTags`). `not_found` for an unknown repository. */
  async listTags(repository: string, options: { signal?: AbortSignal; maxTags?: number } = {}): Promise<string[]> {
    const maxTags = options.maxTags ?? 10_000;
    const tags: string[] = [];
    let url: URL | undefined = this.url(`/v2/${repository}/tags/list?n=${CATALOG_PAGE_SIZE}`);
    while (url !== undefined && tags.length < maxTags) {
      const res = await this.send({ method: 'GET', url, scope: this.scope(repository, 'pull'), signal: options.signal });
      if (res.statusCode === 404) throw await this.notFound(res, repository, undefined);
      if (res.statusCode !== 200) throw await this.failure(res, `GET ${url.pathname}`);
      const page = (await this.readJson(res, options.signal)) as { tags?: unknown } | null;
      const pageTags = Array.isArray(page?.tags) ? page.tags.filter((t): t is string => typeof t === 'string') : [];
      tags.push(...pageTags);
      const next = nextLink(headerOf(res, 'link'));
      url = next === undefined || pageTags.length === 0 ? undefined : this.sameOriginLink(next);
    }
    return tags.slice(0, maxTags);
  }

  /**
   * One page of `GET /v2/_catalog?n=&last=`. A registry without a catalog (404/405), or one that
   * does not let these credentials read it (401/403, as GHCR and Docker Hub do), is an
   * `upstream_error` that says so.
   */
  async catalogPage(options: { n?: number; last?: string; signal?: AbortSignal } = {}): Promise<CatalogPage> {
    const url = this.url('/v2/_catalog');
    url.searchParams.set('n', String(options.n ?? CATALOG_PAGE_SIZE));
    if (options.last !== undefined) url.searchParams.set('last', options.last);
    const res = await this.send({ method: 'GET', url, scope: 'registry:catalog:*', signal: options.signal });
    if (res.statusCode === 404 || res.statusCode === 405 || res.statusCode === 401 || res.statusCode === 403) {
      await discard(res);
      const why = res.statusCode === 401 || res.statusCode === 403 ? `does not let ${this.credentials ? 'these credentials' : 'anonymous clients'} read its catalog` : 'offers no catalog';
      throw this.upstream(`registry ${this.host} ${why} (GET /v2/_catalog answered HTTP ${res.statusCode}); search needs the catalog, pull by name instead`);
    }
    if (res.statusCode !== 200) throw await this.failure(res, 'GET /v2/_catalog');
    const page = (await this.readJson(res, options.signal)) as { repositories?: unknown } | null;
    const repositories = Array.isArray(page?.repositories) ? page.repositories.filter((r): r is string => typeof r === 'string') : [];
    const next = nextLink(headerOf(res, 'link'));
    let last: string | undefined;
    if (next !== undefined && repositories.length > 0) {
      last = new URL(next, this.origin).searchParams.get('last') ?? repositories.at(-1);
    }
    return { repositories, next: last };
  }

  /** Every repository in the catalog, page by page, at most `max` (default 10 000). */
  async listRepositories(options: { signal?: AbortSignal; max?: number } = {}): Promise<string[]> {
    const max = options.max ?? 10_000;
    const all: string[] = [];
    let last: string | undefined;
    do {
      const page = await this.catalogPage({ ...(last === undefined ? {} : { last }), ...(options.signal ? { signal: options.signal } : {}) });
      all.push(...page.repositories);
      last = page.next;
    } while (last !== undefined && all.length < max);
    return all.slice(0, max);
  }

  private url(path: string): URL {
    return new URL(path, this.origin);
  }

  private scope(repository: string, access: RegistryAccess): string {
    return `repository:${repository}:${access === 'push' ? 'pull,push' : 'pull'}`;
  }

  /** A Location/Link target: http(s) only. */
  private followable(location: string, base: URL): URL {
    let url: URL;
    try {
      url = new URL(location, base);
    } catch {
      throw this.upstream(`registry ${this.host} sent an unusable Location "${location.slice(0, 120)}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw this.upstream(`registry ${this.host} sent a non-HTTP Location`);
    return url;
  }

  private sameOriginLink(link: string): URL {
    const url = this.followable(link, this.url('/v2/'));
    if (url.origin !== this.origin) throw this.upstream(`registry ${this.host} paged to another origin (${url.origin})`);
    return url;
  }

  private upstream(message: string, cause?: unknown): SentinelError {
    return new SentinelError('upstream_error', message, cause === undefined ? {} : { cause });
  }

  private transportError(err: unknown, host: string, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) {
      const reason = abortReason(signal);
      // A deadline that ran out before anything answered is a host that could not be reached.
      if (this.policy !== undefined && !this.answered && isSentinelError(reason) && reason.code === 'upstream_timeout') return this.unreachable(reason);
      return reason;
    }
    if (this.policy !== undefined) return this.unreachable(err);
    const code = errnoOf(err);
    // Errno-style codes (ECONNREFUSED, CERT_HAS_EXPIRED, UND_ERR_CONNECT_TIMEOUT) say it best.
    const reason = code !== undefined && /^[A-Z0-9_]+$/.test(code) ? code : ((err as Error)?.message ?? String(err));
    const who = host === this.host ? `registry ${this.host}` : `${host} (for registry ${this.host})`;
    return this.upstream(`${who} is unreachable: ${reason}`, err);
  }

  /** The one message for every way a policy-checked registry can fail to connect (refused, reset, timeout, DNS, policy). */
  private unreachable(cause: unknown): SentinelError {
    return this.upstream(`registry ${this.host} could not be reached`, cause);
  }

  /** The dispatcher for `url`: the client's own, or (with a policy) an Agent pinned to the host's checked addresses. */
  private dispatcherFor(url: URL): Promise<Dispatcher> {
    if (this.policy === undefined) return Promise.resolve(this.dispatcher);
    const policy = this.policy;
    const key = normalizeHost(url.hostname);
    let agent = this.pinned.get(key);
    if (agent === undefined) {
      agent = resolveAllowedAddresses(url.hostname, {
        allowPrivateAddresses: policy.allowPrivateAddresses === true,
        what: 'registry',
        ...(policy.resolver ? { resolver: policy.resolver } : {}),
      }).then(
        (addresses) =>
          new Agent({ connect: { timeout: this.connectTimeoutMs, lookup: pinnedLookup(addresses) }, headersTimeout: this.requestTimeoutMs, bodyTimeout: this.requestTimeoutMs }),
      );
      this.pinned.set(key, agent);
      // A failed check is not cached: the next request checks again.
      agent.catch(() => this.pinned.delete(key));
    }
    return agent;
  }

  /** One HTTP exchange, with transport failures turned into `upstream_error`. */
  private async raw(method: SendOptions['method'], url: URL, headers: Headers, body: Buffer | Readable | undefined, signal: AbortSignal | undefined): Promise<Dispatcher.ResponseData> {
    if (signal?.aborted) throw this.transportError(undefined, url.host, signal);
    try {
      const res = await request(url, {
        method,
        // The caller's trace goes on to the registry (W3C traceparent), when there is one.
        headers: injectTraceHeaders({ 'user-agent': USER_AGENT, ...headers }),
        ...(body === undefined ? {} : { body }),
        ...(signal ? { signal } : {}),
        dispatcher: await this.dispatcherFor(url),
      });
      this.answered = true;
      return res;
    } catch (err) {
      throw this.transportError(err, url.host, signal);
    }
  }

  /** Reads a body under a cap, with transport failures and aborts mapped like {@link raw}. */
  private async readGuarded(res: Dispatcher.ResponseData, cap: number, tooBig: () => SentinelError, signal: AbortSignal | undefined, onChunk?: (chunk: Buffer) => void): Promise<Buffer> {
    try {
      return await readBody(res.body, cap, tooBig, onChunk);
    } catch (err) {
      if (err instanceof SentinelError) throw err;
      throw this.transportError(err, this.host, signal);
    }
  }

  private async readJson(res: Dispatcher.ResponseData, signal: AbortSignal | undefined): Promise<unknown> {
    const bytes = await this.readGuarded(res, MAX_LIST_BODY_BYTES, () => this.upstream(`registry ${this.host} sent a list larger than ${MAX_LIST_BODY_BYTES} bytes`), signal);
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch {
      throw this.upstream(`registry ${this.host} sent a list that is not JSON`);
    }
  }

  /**
   * Sends a request, authenticating the way the registry asked before (Basic, or a cached
   * bearer token for `scope`); a 401 with a challenge is answered once and the request resent.
   * A 401 or 403 after that is returned for the caller to report.
   */
  private async send(options: SendOptions): Promise<Dispatcher.ResponseData> {
    const sameOrigin = options.url.origin === this.origin;
    let authorization = sameOrigin ? await this.authorizationFor(options.scope, options.signal) : undefined;
    for (let attempt = 0; ; attempt++) {
      const headers = { ...options.headers, ...(authorization === undefined ? {} : { authorization }) };
      const res = await this.raw(options.method, options.url, headers, options.body?.(), options.signal);
      if (res.statusCode !== 401 || attempt > 0 || !sameOrigin) return res;
      // Only the challenge matters; the body goes before anything else can fail.
      await discard(res);
      const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
      const next = await this.answer(challenges, options.scope, authorization, options.signal);
      if (next === undefined) return res;
      authorization = next;
    }
  }

  private basicAuthorization(): string | undefined {
    if (!this.credentials) return undefined;
    return `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`, 'utf8').toString('base64')}`;
  }

  private async authorizationFor(scope: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    const scheme = this.scheme;
    if (scheme === undefined) return undefined;
    if (scheme.kind === 'basic') return this.basicAuthorization();
    const key = TokenCache.key(scheme.realm, scheme.service, scope);
    const cached = this.tokens.get(key);
    if (cached !== undefined) return `Bearer ${cached}`;
    return `Bearer ${await this.fetchToken(scheme.realm, scheme.service, scope, signal)}`;
  }

  /** The Authorization answering a 401's challenges, or undefined when we have nothing (more) to offer. */
  private async answer(challenges: AuthChallenge[], scope: string, sent: string | undefined, signal: AbortSignal | undefined): Promise<string | undefined> {
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (bearer) {
      const realm = bearer.params.realm as string;
      const service = bearer.params.service;
      const effectiveScope = scope === '' ? (bearer.params.scope ?? '') : scope;
      const key = TokenCache.key(realm, service, effectiveScope);
      // A token we just sent was refused: a fresh one may carry what the old one lacked.
      this.tokens.delete(key);
      this.scheme = { kind: 'bearer', realm, service };
      const token = await this.fetchToken(realm, service, effectiveScope, signal);
      const authorization = `Bearer ${token}`;
      return authorization === sent ? undefined : authorization;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      const basic = this.basicAuthorization();
      if (basic === undefined || basic === sent) return undefined;
      this.scheme = { kind: 'basic' };
      return basic;
    }
    return undefined;
  }

  /** The Docker token protocol: GET realm?service=&scope= (Basic credentials when we have them). */
  private async fetchToken(realm: string, service: string | undefined, scope: string, signal: AbortSignal | undefined): Promise<string> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw this.upstream(`registry ${this.host} named an unusable token realm`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw this.upstream(`registry ${this.host} named a non-HTTP token realm`);
    // Credentials never travel in clear text to a realm when the registry itself is HTTPS.
    if (this.credentials && url.protocol === 'http:' && this.origin.startsWith('https:')) {
      throw this.upstream(`registry ${this.host} named a plain-HTTP token realm (${url.host}); refusing to send credentials there`);
    }
    if (service !== undefined) url.searchParams.set('service', service);
    if (scope !== '') url.searchParams.set('scope', scope);
    const basic = this.basicAuthorization();
    const res = await this.raw('GET', url, { accept: 'application/json', ...(basic === undefined ? {} : { authorization: basic }) }, undefined, signal);
    if (res.statusCode === 401 || res.statusCode === 403) {
      await discard(res);
      throw this.refused(res.statusCode, `the token server ${url.host}`);
    }
    if (res.statusCode !== 200) {
      await discard(res);
      throw this.upstream(`the token server ${url.host} of registry ${this.host} answered HTTP ${res.statusCode}`);
    }
    const bytes = await this.readGuarded(res, MAX_TOKEN_BODY_BYTES, () => this.upstream(`the token server ${url.host} sent more than ${MAX_TOKEN_BODY_BYTES} bytes`), signal);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(bytes.toString('utf8')) as typeof body;
    } catch {
      throw this.upstream(`the token server ${url.host} of registry ${this.host} sent no JSON`);
    }
    const token = typeof body?.token === 'string' && body.token !== '' ? body.token : body?.access_token;
    if (typeof token !== 'string' || token === '') throw this.upstream(`the token server ${url.host} of registry ${this.host} sent no token`);
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : undefined;
    this.tokens.set(TokenCache.key(realm, service, scope), token, expiresIn);
    return token;
  }

  private refused(status: number, where: string): SentinelError {
    return this.credentials
      ? this.upstream(`registry ${this.host} refused the credentials (HTTP ${status} from ${where})`)
      : this.upstream(`registry ${this.host} refused anonymous access (HTTP ${status} from ${where}); give credentials`);
  }

  /** The registry's own error codes (`{errors:[{code, message}]}`), when the body has them. */
  private async errorSummary(res: Dispatcher.ResponseData): Promise<string> {
    try {
      const bytes = await readBody(res.body, MAX_ERROR_BODY_BYTES, () => new SentinelError('upstream_error', 'error body too large'));
      const parsed = JSON.parse(bytes.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
      const first = parsed.errors?.[0];
      if (first && typeof first.code === 'string') {
        const text = typeof first.message === 'string' ? `${first.code}: ${first.message}` : first.code;
        return text.length > 200 ? `${text.slice(0, 200)}…` : text;
      }
    } catch {
      discardBody(res.body);
    }
    return '';
  }

  private async failure(res: Dispatcher.ResponseData, what: string): Promise<SentinelError> {
    if (res.statusCode === 401 || res.statusCode === 403) {
      await discard(res);
      return this.refused(res.statusCode, what);
    }
    const summary = await this.errorSummary(res);
    return this.upstream(`registry ${this.host} answered HTTP ${res.statusCode} to ${what}${summary ? ` (${summary})` : ''}`);
  }

  private async notFound(res: Dispatcher.ResponseData, repository: string, reference: string | undefined): Promise<SentinelError> {
    const summary = await this.errorSummary(res);
    if (reference === undefined || summary.startsWith('NAME_UNKNOWN')) return new SentinelError('not_found', `repository ${repository} not found in registry ${this.host}`);
    if (reference.startsWith('sha256:')) return new SentinelError('not_found', `manifest ${reference} not found in ${this.host}/${repository}`);
    return new SentinelError('not_found', `tag "${reference}" not found in ${this.host}/${repository}`);
  }
}

/** The `mediaType` field of a manifest, when the registry's Content-Type says nothing useful. */
function mediaTypeOf(bytes: Buffer): string {
  try {
    const value = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    return typeof value === 'string' ? value : 'application/octet-stream';
  } catch {
    return 'application/octet-stream';
  }
}
