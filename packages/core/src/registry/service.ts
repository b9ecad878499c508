/**
 * Push, pull and search agent images against a registry: the server's default (a remote OCI
 * distribution registry from `--registry`, or the embedded OCI image layouts under the data
 * directory), or, for admins and users allowed to push, a registry named per request.
 *
 * Naming: a local image `demo/helper:v1` is pushed to `<namespace>/demo/helper:v1` on the
 * default registry, and `POST /v1/registry/pull {"name":"demo/helper:v1"}` brings it back as
 * `demo/helper:v1`, same digest. A reference that names a registry (`localhost:5000/demo/helper:v1`)
 * goes to that registry, without the default's namespace or credentials, and what is pulled from
 * it is kept under that full name (Docker's rule), so the same path on two registries never
 * collides. A registry named in a request is checked like an `http_fetch` URL (no internal
 * addresses unless `allowPrivateHosts`), and every way of not reaching it reads the same.
 * Remote transfers run under a deadline and a minimum rate (`upstream_timeout`).
 *
 * Nothing half-written: a pull stores the image (one Store transaction) only after the manifest
 * and config were fetched and verified, and never once the transfer was cancelled; a push puts
 * the manifest (the only thing that names the image) after every blob is in place.
 */
import { sha256Digest } from '../contract/digest.js';
import { forbidden, invalidRequest, isSentinelError } from '../contract/errors.js';
import { readImageFromLayout, writeImageToLayout } from '../images/layout.js';
import { parseAgentManifest } from '../images/oci.js';
import { IMAGE_NAME_MAX_LENGTH, LOCAL_IMAGE_NAME_PATTERN } from '../images/sentinelfile.js';
import { toImageResource, type ImageService } from '../images/service.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { ImageRecord, ImageResource, Principal } from '../contract/models.js';
import type { Store } from '../store/types.js';
import { parseRfc3339 } from '../contract/timestamp.js';
import { DistributionBackend } from './backends/distribution.js';
import { LayoutBackend } from './backends/layout.js';
import type { BlobProgressEvent, RegistryBackend } from './backends/types.js';
import type { RegistryAddressPolicy, RegistryClientOptions, RegistryCredentials } from './client.js';
import { DEFAULT_TRANSFER_LIMITS, TransferGuard, type TransferLimits } from './transfer-guard.js';
import { formatRegistryReference, isValidTag, parseRegistryLocation, parseRegistryReference, REPOSITORY_MAX_LENGTH, type RegistryLocation, type RegistryReference } from './reference.js';

/** The server's default registry (`--registry`, `--registry-username`, `--registry-password`). */
export interface RegistrySettings {
  /** `http(s)://host[:port][/namespace]`. Default: none, i.e. the embedded OCI-layout registry under `<dataDir>/registry`. */
  url?: string;
  /** Default: anonymous. Needs `password` too. */
  username?: string;
  /** Default: none. Never logged. */
  password?: string;
  /** Milliseconds a whole push or pull to a remote registry may take; 0 for no deadline. Default 600 000 (10 min). */
  timeoutMs?: number;
  /** Bytes per second a remote push or pull must average over each `rateWindowMs`; 0 for no minimum. Default 1024. */
  minBytesPerSecond?: number;
  /** Milliseconds the minimum rate is averaged over. Default 30 000. */
  rateWindowMs?: number;
  /**
   * Let requests name registries on loopback, private and link-local addresses. The configured
   * `url` is always trusted; registries named per request are checked like `http_fetch` URLs
   * (no internal addresses, connections pinned to the checked address). Default false.
   */
  allowPrivateHosts?: boolean;
}

export interface RegistryServiceOptions {
  store: Store;
  images: ImageService;
  /** Directory of the embedded registry (one OCI image layout per repository). */
  embeddedRoot: string;
  /**
   * The embedded registry's back end, instead of the layouts under `embeddedRoot`
   * (createSentinelApi passes the PostgreSQL store's, so every instance shares one).
   * Default: a {@link LayoutBackend} on `embeddedRoot`.
   */
  embedded?: RegistryBackend;
  /** The default registry. Default: the embedded one. */
  registry?: RegistrySettings;
  /** Default: silent. */
  logger?: Logger;
  /** Connection knobs for remote registries (timeouts, a dispatcher). Default: the client's defaults. */
  client?: Pick<RegistryClientOptions, 'connectTimeoutMs' | 'requestTimeoutMs' | 'dispatcher'>;
  /** Clock for pulled images without a created annotation. Default `Date.now`. */
  now?: () => number;
}

export interface PushInput {
  /** A local image: ID, short ID, `name[:tag]`, or `registry/name[:tag]` to push it to that registry. */
  image: string;
  /** Tag to push under. Default: the local tag. */
  tag?: string;
  /** Registry URL `http(s)://host[:port][/namespace]`. Default: the server's. */
  registry?: string;
  /** Default: the server's credentials when the registry is the server's, else anonymous. */
  credentials?: RegistryCredentials;
}

export interface PullInput {
  /** `[registry/]repository[:tag|@digest]`. */
  name: string;
  /** Tag, when `name` carries none. Default `latest`. */
  tag?: string;
  registry?: string;
  credentials?: RegistryCredentials;
}

export interface SearchInput {
  /** Case-insensitive substring of the repository name. Default: everything. */
  query?: string;
  /** Default 25. */
  limit?: number;
  /** Default 0. */
  offset?: number;
  /** Default: the server's registry. */
  registry?: string;
}

/** One progress line of a push or pull: the blob's own numbers plus the whole transfer's. */
export interface TransferProgress extends BlobProgressEvent {
  overall: { bytes: number; total: number };
}

export interface TransferRunOptions {
  /** Default: none. */
  onProgress?: (progress: TransferProgress) => void;
  /** Cancels the transfer (the client went away). Default: none. */
  signal?: AbortSignal;
}

/** A checked push or pull, ready to run: input errors surface before any byte moves. */
export interface PreparedTransfer<R> {
  run(options?: TransferRunOptions): Promise<R>;
}

export interface PushResult {
  /** The repository as it would be pulled from this registry (without the default namespace). */
  name: string;
  tag: string;
  digest: string;
  status: 'pushed';
  /** `host[:port]` or `embedded`. */
  registry: string;
}

export interface PullResult {
  /** The local image name: the repository, after `host[:port]/` when the request named another registry than the server's. */
  name: string;
  /** Null when pulled by digest alone (the image is kept untagged, like Docker). */
  tag: string | null;
  digest: string;
  /** `up_to_date` when the image was already here under that tag: nothing was written. */
  status: 'pulled' | 'up_to_date';
  registry: string;
  image: ImageResource;
}

export interface SearchResult {
  name: string;
  tags: string[];
  /** The description annotation of the tag described (`latest` when there is one, else the last tag in sorted order). */
  description: string;
  digest: string | null;
  /** The tag `description` and `digest` belong to. */
  tag: string | null;
  /** False for repositories holding something else than agent images (container images…). */
  agent: boolean;
}

export interface SearchPage {
  results: SearchResult[];
  total: number;
  offset: number;
  limit: number;
}

const DEFAULT_SEARCH_LIMIT = 25;
/** Repositories described at once while building a search page. */
const DESCRIBE_CONCURRENCY = 4;
const IMAGE_NAME_RE = new RegExp(LOCAL_IMAGE_NAME_PATTERN);
const RESERVED_NAMESPACE = 'sentinel/';

interface ResolvedTarget {
  backend: RegistryBackend;
  /** Prefix (with its slash) of every repository path on this registry. */
  prefix: string;
  /** Close the back end after the call: it was made for this request. */
  transient: boolean;
  /** `host[:port]` of a registry the request named (not the server's): pulled images are kept under `host[:port]/path`. */
  namedHost: string | undefined;
}

/** Sums the blobs' numbers into the transfer's overall bytes and total. */
class ProgressTracker {
  private readonly blobs = new Map<string, { bytes: number; total: number }>();

  constructor(private readonly listener: ((progress: TransferProgress) => void) | undefined) {}

  expect(kind: string, digest: string, total: number): void {
    this.blobs.set(`${kind}:${digest}`, { bytes: 0, total });
  }

  report = (event: BlobProgressEvent): void => {
    if (!this.listener) return;
    this.blobs.set(`${event.kind}:${event.digest}`, { bytes: event.bytes, total: event.total });
    let bytes = 0;
    let total = 0;
    for (const blob of this.blobs.values()) {
      bytes += blob.bytes;
      total += blob.total;
    }
    this.listener({ ...event, overall: { bytes, total } });
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function decodeExact(bytes: Buffer, what: string, digest: string): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw invalidRequest(`invalid agent image: the ${what} is not UTF-8`);
  }
  // The Store keeps text; the digest must survive the round trip exactly.
  if (sha256Digest(text) !== digest) throw invalidRequest(`invalid agent image: the ${what} bytes do not survive UTF-8 decoding`);
  return text;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  });
  await Promise.all(workers);
  return results;
}

function isNotFound(err: unknown): boolean {
  return isSentinelError(err) && err.code === 'not_found';
}

/** Push, pull, search and OCI-layout export/import of agent images (see the module comment). */
export class RegistryService {
  private readonly store: Store;
  private readonly images: ImageService;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly clientOptions: RegistryServiceOptions['client'];
  /** The default registry's location; undefined for the embedded one. */
  private readonly location: RegistryLocation | undefined;
  private readonly credentials: RegistryCredentials | undefined;
  private readonly limits: TransferLimits;
  private readonly requestNamedPolicy: RegistryAddressPolicy;
  private readonly defaultBackend: RegistryBackend;
  /** The embedded back end (also the default when no URL is configured). */
  readonly embedded: RegistryBackend;

  /** Throws `invalid_request` for a malformed URL, or a username without password (or the reverse). */
  constructor(options: RegistryServiceOptions) {
    this.store = options.store;
    this.images = options.images;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.clientOptions = options.client;
    this.embedded = options.embedded ?? new LayoutBackend({ root: options.embeddedRoot });
    const settings = options.registry ?? {};
    const hasUser = settings.username !== undefined && settings.username !== '';
    const hasPassword = settings.password !== undefined && settings.password !== '';
    if (hasUser !== hasPassword) throw invalidRequest('registry credentials need both a username and a password');
    this.limits = {
      timeoutMs: settings.timeoutMs ?? DEFAULT_TRANSFER_LIMITS.timeoutMs,
      minBytesPerSecond: settings.minBytesPerSecond ?? DEFAULT_TRANSFER_LIMITS.minBytesPerSecond,
      rateWindowMs: settings.rateWindowMs ?? DEFAULT_TRANSFER_LIMITS.rateWindowMs,
    };
    for (const [name, value] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(value) || value < 0) throw invalidRequest(`registry ${name} must be a non-negative integer`);
    }
    this.requestNamedPolicy = { allowPrivateAddresses: settings.allowPrivateHosts === true };
    if (settings.url === undefined || settings.url === '') {
      if (hasUser) throw invalidRequest('registry credentials were given without a registry URL');
      this.location = undefined;
      this.credentials = undefined;
      this.defaultBackend = this.embedded;
    } else {
      this.location = parseRegistryLocation(settings.url);
      this.credentials = hasUser ? { username: settings.username as string, password: settings.password as string } : undefined;
      this.defaultBackend = this.remote(this.location.origin, this.credentials);
    }
  }

  /** `host[:port]` of the default registry, or `embedded`. */
  get defaultRegistry(): string {
    return this.defaultBackend.name;
  }

  /** Closes the default registry's connections. */
  async close(): Promise<void> {
    await this.defaultBackend.close();
  }

  /**
   * Checks a push and returns it ready to run: `forbidden` unless the principal is an admin or
   * a user allowed to push; `not_found` for an unknown local image; `invalid_request` for a
   * malformed reference, tag or registry, or an image without a name to push it under.
   */
  async preparePush(principal: Principal, input: PushInput): Promise<PreparedTransfer<PushResult>> {
    await this.requirePusher(principal);
    let named: RegistryReference | undefined;
    try {
      named = parseRegistryReference(input.image);
    } catch {
      // Not reference-shaped: the image service says what is wrong with it as a local reference.
      named = undefined;
    }
    const localRef = named?.registry === undefined ? input.image : formatRegistryReference({ ...named, registry: undefined });
    // `host/demo/helper:v1` is first the local image of that full name (one pulled from there), else `demo/helper:v1`.
    const record = localRef === input.image ? await this.images.resolve(localRef, principal) : await this.images.resolve(input.image, principal).catch((err: unknown) => {
            if (isSentinelError(err) && (err.code === 'not_found' || err.code === 'invalid_request')) return this.images.resolve(localRef, principal);
            throw err;
          });
    const { repository, tag: localTag } = this.pushName(record, named);
    const tag = input.tag ?? localTag;
    if (!isValidTag(tag)) throw invalidRequest(`invalid tag "${tag.slice(0, 130)}"`);
    const target = await this.resolveTarget(principal, named?.registry, input.registry, input.credentials);
    const path = `${target.prefix}${repository}`;
    if (path.length > REPOSITORY_MAX_LENGTH) {
      await this.release(target);
      throw invalidRequest(`repository path ${path.slice(0, 80)}… is longer than ${REPOSITORY_MAX_LENGTH} characters`);
    }
    return {
      run: async (options = {}) => {
        const tracker = new ProgressTracker(options.onProgress);
        tracker.expect('config', record.config_digest, Buffer.byteLength(record.config));
        tracker.expect('layer', sha256Digest('{}'), 2);
        tracker.expect('manifest', record.digest, Buffer.byteLength(record.manifest));
        try {
          await this.guarded(target, 'push', options.signal, (guard) =>
            target.backend.push({ digest: record.digest, manifest: record.manifest, config: record.config }, { repository: path, tag }, { onProgress: tracker.report, ...guard }),
          );
        } finally {
          await this.release(target);
        }
        this.logger.info('image pushed', { registry: target.backend.name, repository: path, tag, digest: record.digest, user: principal.username });
        return { name: repository, tag, digest: record.digest, status: 'pushed', registry: target.backend.name };
      },
    };
  }

  /** Push in one call (see {@link preparePush}). */
  async push(principal: Principal, input: PushInput, options: TransferRunOptions = {}): Promise<PushResult> {
    return (await this.preparePush(principal, input)).run(options);
  }

  /**
   * Checks a pull and returns it ready to run: `invalid_request` for a malformed reference or a
   * repository that cannot be a local image name; `forbidden` for names under `sentinel/`
   * (admins only, as for builds) and, for plain users, any registry but the server's.
   * Running it: `not_found` for an unknown repository or tag, `upstream_error` for an
   * unreachable registry, refused credentials or a digest mismatch, `invalid_request` for a
   * manifest that is not an agent image.
   */
  async preparePull(principal: Principal, input: PullInput): Promise<PreparedTransfer<PullResult>> {
    const ref = parseRegistryReference(input.name);
    if (input.tag !== undefined) {
      if (ref.tag !== undefined || ref.digest !== undefined) throw invalidRequest('give the tag either in "name" or in "tag", not both');
      if (!isValidTag(input.tag)) throw invalidRequest(`invalid tag "${input.tag.slice(0, 130)}"`);
      ref.tag = input.tag;
    }
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const tag = ref.digest !== undefined && ref.tag === undefined ? null : (ref.tag ?? 'latest');
    if (ref.repository.length > IMAGE_NAME_MAX_LENGTH || !IMAGE_NAME_RE.test(ref.repository)) {
      throw invalidRequest(`"${ref.repository.slice(0, 130)}" cannot be a local image name (lowercase path components of letters and digits separated by single . _ or -, at most ${IMAGE_NAME_MAX_LENGTH} characters)`);
    }
    if (ref.repository.startsWith(RESERVED_NAMESPACE) && principal.role !== 'admin') {
      throw forbidden(`image names under ${RESERVED_NAMESPACE} are reserved for admins`);
    }
    const target = await this.resolveTarget(principal, ref.registry, input.registry, input.credentials);
    const path = `${target.prefix}${ref.repository}`;
    // Like Docker: what came from a named registry keeps its host, so one path on two registries never collides.
    const localName = target.namedHost === undefined ? ref.repository : `${target.namedHost}/${path}`;
    if (localName.length > IMAGE_NAME_MAX_LENGTH || !IMAGE_NAME_RE.test(localName)) {
      await this.release(target);
      throw invalidRequest(`"${localName.slice(0, 130)}" cannot be a local image name (at most ${IMAGE_NAME_MAX_LENGTH} characters, registry host included)`);
    }
    return {
      run: async (options = {}) => {
        const { signal } = options;
        const tracker = new ProgressTracker(options.onProgress);
        let pulled;
        try {
          pulled = await this.guarded(target, 'pull', signal, (guard) => target.backend.pull(path, reference, { onProgress: tracker.report, ...guard }));
        } finally {
          await this.release(target);
        }
        parseAgentManifest(pulled.manifest, pulled.config, { digest: pulled.digest });
        const manifest = decodeExact(pulled.manifest, 'manifest', pulled.digest);
        const configDigest = sha256Digest(pulled.config);
        const config = decodeExact(pulled.config, 'config', configDigest);
        const localTag = tag === null ? null : `${localName}:${tag}`;
        // The client may have gone while the last bytes arrived: then nothing is written.
        throwIfAborted(signal);
        const existing = await this.store.getImage(pulled.digest);
        const tagged = localTag === null ? null : await this.store.resolveTag(localTag);
        let status: PullResult['status'] = 'pulled';
        if (existing !== null && (localTag === null || tagged === pulled.digest)) {
          status = 'up_to_date';
        } else {
          await this.images.checkMayTag(principal, localTag === null ? [] : [localTag], pulled.digest);
          await this.store.putImage(
            { digest: pulled.digest, manifest, config, config_digest: configDigest, size: this.imageSize(manifest, pulled.config.byteLength), created_at: this.createdAt(manifest) },
            localTag === null ? [] : [localTag],
          );
        }
        const stored = await this.store.getImage(pulled.digest);
        if (stored === null) throw new Error(`image ${pulled.digest} vanished right after it was stored`);
        this.logger.info('image pulled', { registry: target.backend.name, repository: path, reference, digest: pulled.digest, status, user: principal.username });
        return { name: localName, tag, digest: pulled.digest, status, registry: target.backend.name, image: toImageResource(stored) };
      },
    };
  }

  /** Pull in one call (see {@link preparePull}). */
  async pull(principal: Principal, input: PullInput, options: TransferRunOptions = {}): Promise<PullResult> {
    return (await this.preparePull(principal, input)).run(options);
  }

  /**
   * Repositories whose name contains `query` (case-insensitive), sorted, paged with
   * `limit`/`offset`; each with its tags and the digest and description of `latest` (or of the
   * last tag). Uses the registry's catalog: a registry without one is an `upstream_error` that
   * says so, never an empty list.
   */
  async search(principal: Principal, input: SearchInput = {}, signal?: AbortSignal): Promise<SearchPage> {
    const limit = input.limit ?? DEFAULT_SEARCH_LIMIT;
    const offset = input.offset ?? 0;
    const query = (input.query ?? '').toLowerCase();
    const target = await this.resolveTarget(principal, undefined, input.registry, undefined);
    try {
      const repositories = await target.backend.listRepositories(signal);
      const names = repositories
        .filter((path) => path.startsWith(target.prefix))
        .map((path) => path.slice(target.prefix.length))
        .filter((name) => name !== '' && name.toLowerCase().includes(query))
        .sort();
      const page = names.slice(offset, offset + limit);
      const results = await mapLimit(page, DESCRIBE_CONCURRENCY, (name) => this.describe(target, name, signal));
      return { results, total: names.length, offset, limit };
    } finally {
      await this.release(target);
    }
  }

  /** Writes a local image into an OCI image layout directory (`refName` default: the image's tag). */
  async exportImage(ref: string, dir: string, options: { refName?: string; signal?: AbortSignal } = {}): Promise<ImageResource> {
    const record = await this.images.resolve(ref);
    const resource = toImageResource(record);
    const refName = options.refName ?? (resource.tag === '<none>' ? undefined : resource.tag);
    await writeImageToLayout(dir, { digest: record.digest, manifest: record.manifest, config: record.config }, {
      ...(refName === undefined ? {} : { refName }),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return resource;
  }

  /**
   * Reads an agent image from an OCI image layout directory (by ref.name or digest), verifies it,
   * and stores it tagged `tag` (`name:tag`; default: untagged).
   */
  async importImage(dir: string, selector: { refName: string } | { digest: string }, options: { tag?: string } = {}): Promise<ImageResource> {
    const image = await readImageFromLayout(dir, selector);
    const manifest = decodeExact(image.manifest, 'manifest', image.digest);
    const configDigest = sha256Digest(image.config);
    const config = decodeExact(image.config, 'config', configDigest);
    if (options.tag !== undefined) {
      // A colon before the last slash is a registry port (`host:5000/demo/helper`), not a tag.
      const last = options.tag.lastIndexOf(':');
      const colon = last > options.tag.lastIndexOf('/') ? last : -1;
      const name = colon === -1 ? options.tag : options.tag.slice(0, colon);
      if (!IMAGE_NAME_RE.test(name) || (colon !== -1 && !isValidTag(options.tag.slice(colon + 1)))) {
        throw invalidRequest(`invalid local tag "${options.tag.slice(0, 130)}": use name[:tag]`);
      }
    }
    const tagged = options.tag !== undefined && options.tag.lastIndexOf(':') > options.tag.lastIndexOf('/');
    const nameTag = options.tag === undefined ? undefined : tagged ? options.tag : `${options.tag}:latest`;
    await this.images.checkMayTag(undefined, nameTag === undefined ? [] : [nameTag], image.digest);
    await this.store.putImage(
      { digest: image.digest, manifest, config, config_digest: configDigest, size: this.imageSize(manifest, image.config.byteLength), created_at: this.createdAt(manifest) },
      nameTag === undefined ? [] : [nameTag],
    );
    const stored = await this.store.getImage(image.digest);
    if (stored === null) throw new Error(`image ${image.digest} vanished right after it was stored`);
    return toImageResource(stored);
  }

  /** A remote back end; `policy` for a registry named in a request (checked addresses, one message for unreachable). */
  private remote(origin: string, credentials: RegistryCredentials | undefined, policy?: RegistryAddressPolicy): DistributionBackend {
    return new DistributionBackend({ url: origin, ...this.clientOptions, ...(credentials ? { credentials } : {}), ...(policy ? { addressPolicy: policy } : {}) });
  }

  /**
   * Runs a remote transfer under the deadline and minimum rate (see transfer-guard.ts); the
   * embedded back end works on local files and needs neither.
   */
  private async guarded<T>(target: ResolvedTarget, kind: 'push' | 'pull', signal: AbortSignal | undefined, work: (options: { signal?: AbortSignal; onBytes?: (bytes: number) => void }) => Promise<T>): Promise<T> {
    if (!(target.backend instanceof DistributionBackend)) return work(signal ? { signal } : {});
    const guard = new TransferGuard(this.limits, { kind, registry: target.backend.name }, signal);
    try {
      return await work({ signal: guard.signal, onBytes: guard.count });
    } catch (err) {
      if (isSentinelError(err) && (err.code === 'upstream_error' || err.code === 'upstream_timeout') && err.cause !== undefined) {
        // The client-visible message may be deliberately vague (request-named hosts): the log says why.
        const cause = err.cause as { code?: unknown; message?: unknown };
        this.logger.warn(`registry ${kind} failed`, { registry: target.backend.name, reason: typeof cause.code === 'string' ? cause.code : String(cause.message ?? err.cause) });
      }
      throw err;
    } finally {
      guard.dispose();
    }
  }

  private async mayPush(principal: Principal): Promise<boolean> {
    if (principal.role === 'admin') return true;
    const user = await this.store.getUser(principal.username);
    return user?.can_push === true;
  }

  private async requirePusher(principal: Principal): Promise<void> {
    if (!(await this.mayPush(principal))) throw forbidden('pushing needs the admin role or a user allowed to push (can_push)');
  }

  /**
   * Where a request goes. The reference's registry host and the `registry` field must agree
   * when both are given. The server's registry keeps its namespace and credentials (unless the
   * request brings its own); any other registry gets only the request's credentials, never the
   * server's, and only admins and pushers may name one: a plain user would otherwise make the
   * server connect anywhere (SSRF).
   */
  private async resolveTarget(
    principal: Principal,
    referenceHost: string | undefined,
    registryField: string | undefined,
    credentials: RegistryCredentials | undefined,
  ): Promise<ResolvedTarget> {
    const field = registryField === undefined || registryField === '' ? undefined : parseRegistryLocation(registryField);
    if (referenceHost !== undefined && field !== undefined && field.host !== referenceHost) {
      throw invalidRequest(`the image reference names registry ${referenceHost} but "registry" says ${field.host}`);
    }
    const named: RegistryLocation | undefined = field ?? (referenceHost === undefined ? undefined : parseRegistryLocation(referenceHost));
    const isDefault = named === undefined || (this.location !== undefined && named.origin === this.location.origin);
    if (!isDefault && !(await this.mayPush(principal))) {
      throw forbidden(`only admins and users allowed to push may name a registry; use the server's registry (${this.defaultBackend.name})`);
    }
    const prefixOf = (namespace: string) => (namespace === '' ? '' : `${namespace}/`);
    if (named === undefined || (isDefault && this.location !== undefined)) {
      // The server's registry. Its namespace applies to plain names; a request that spells out
      // the registry (a host in the reference, or a "registry" URL) gives the full path itself.
      const namespace = named === undefined ? (this.location?.namespace ?? '') : (field?.namespace ?? '');
      if (this.location === undefined || credentials === undefined) return { backend: this.defaultBackend, prefix: prefixOf(namespace), transient: false, namedHost: undefined };
      return { backend: this.remote(this.location.origin, credentials), prefix: prefixOf(namespace), transient: true, namedHost: undefined };
    }
    // Named in the request: checked like http_fetch URLs, so a pusher cannot probe the server's network.
    return { backend: this.remote(named.origin, credentials, this.requestNamedPolicy), prefix: prefixOf(named.namespace), transient: true, namedHost: named.host };
  }

  private async release(target: ResolvedTarget): Promise<void> {
    if (target.transient) await target.backend.close().catch(() => undefined);
  }

  /** The repository and tag a local image is pushed under: the name it was given by, else its first tag. */
  private pushName(record: ImageRecord, named: RegistryReference | undefined): { repository: string; tag: string } {
    if (named !== undefined && named.digest === undefined) {
      const nameTag = `${named.repository}:${named.tag ?? 'latest'}`;
      const fullNameTag = named.registry === undefined ? nameTag : `${named.registry}/${nameTag}`;
      if (record.tags.includes(nameTag) || record.tags.includes(fullNameTag)) return { repository: named.repository, tag: named.tag ?? 'latest' };
    }
    const first = record.tags[0];
    if (first === undefined) {
      throw invalidRequest(`image ${record.digest.slice(0, 19)}… has no name:tag to push it under`);
    }
    const colon = first.lastIndexOf(':');
    const name = first.slice(0, colon);
    // A name pulled from another registry (`host:port/demo/helper`) is pushed as its path.
    let repository = name;
    try {
      repository = parseRegistryReference(name).repository;
    } catch {
      // Stored names are valid; keep it as it is.
    }
    return { repository, tag: first.slice(colon + 1) };
  }

  private async describe(target: ResolvedTarget, name: string, signal: AbortSignal | undefined): Promise<SearchResult> {
    const path = `${target.prefix}${name}`;
    let tags: string[];
    try {
      tags = await target.backend.listTags(path, signal);
    } catch (err) {
      // Deleted between the catalog and now: listed, with nothing to describe.
      if (!isNotFound(err)) throw err;
      tags = [];
    }
    tags.sort();
    const tag = tags.includes('latest') ? 'latest' : tags.at(-1);
    if (tag === undefined) return { name, tags, description: '', digest: null, tag: null, agent: false };
    try {
      const described = await target.backend.describeTag(path, tag, signal);
      return { name, tags, description: described.description, digest: described.digest, tag, agent: described.agent };
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return { name, tags, description: '', digest: null, tag, agent: false };
    }
  }

  private imageSize(manifest: string, configBytes: number): number {
    const layers = (JSON.parse(manifest) as { layers?: { size?: unknown }[] }).layers ?? [];
    return layers.reduce((sum, layer) => sum + (typeof layer.size === 'number' ? layer.size : 0), configBytes);
  }

  private createdAt(manifest: string): string {
    const created = (JSON.parse(manifest) as { annotations?: Record<string, unknown> }).annotations?.['org.opencontainers.image.created'];
    // From a remote registry: an impossible date (30 February) is no date, not 1 March.
    const parsed = typeof created === 'string' ? parseRfc3339(created) : undefined;
    return new Date(parsed !== undefined && Number.isFinite(parsed) ? parsed : this.now()).toISOString();
  }
}
