/**
 * The embedded registry kept in PostgreSQL, so every `sentinel api` instance on one database
 * sees the same repositories: a push on one instance is found by a search on the next and
 * pulled on a third. It is what the OCI image layouts under `<dataDir>/registry/` are for a
 * single instance (backends/layout.ts), with the same name (`embedded`) and messages.
 *
 * Blobs (configs, layers and manifests alike) are content-addressed by their sha256 digest and
 * stored in chunks of at most 256 KiB (`registry_blob_chunks`): a blob is written in one
 * transaction (its `registry_blobs` row first, then its chunks) and checked against its digest
 * and size before the commit, so nothing half-written or wrong is ever visible; it is read
 * back one chunk per query, never whole in memory, and checked again at the end. Two
 * instances pushing the same blob at once do not fail: the second insert of the row waits on
 * the first (its primary key), then does nothing. The repositories and tags that a layout's
 * index.json holds are `registry_manifests` and `registry_tags`; a tag push is an upsert, so
 * when two instances push one tag the last to commit wins.
 *
 * Loaded only through the PostgreSQL store (`PostgresStore.registryBackend()`), so the main
 * entry of core never imports `pg`.
 */
import { createHash } from 'node:crypto';
import type { PoolClient, QueryResultRow } from 'pg';
import { SentinelError } from '../../contract/errors.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, type ImageBytes } from '../../images/layout.js';
import { EMPTY_DESCRIPTOR, OCI_MANIFEST_MEDIA_TYPE, parseAgentManifest, sha256Digest } from '../../images/oci.js';
import { requireAgentManifest, summarizeManifest } from '../../registry/agent-manifest.js';
import type { BlobProgressEvent, PulledImageBytes, RegistryBackend, TagDescription, TransferOptions } from '../../registry/backends/types.js';

/** The largest chunk a blob is stored in (the table's CHECK says the same). */
export const REGISTRY_CHUNK_BYTES = 256 * 1024;

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** What the backend needs of the store: its pooled queries and transactions, errors mapped. */
export interface RegistryDatabase {
  /** One autocommitted statement. */
  query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** `work` between BEGIN and COMMIT on one connection; ROLLBACK when it throws. */
  transaction<T>(work: (client: PoolClient) => Promise<T>): Promise<T>;
}

export interface PostgresRegistryBackendOptions {
  /** The store's database. Required. */
  database: RegistryDatabase;
  /** Clock for `created_at` columns. Default `Date.now`. */
  now?: () => number;
}

export interface PutBlobOptions {
  /** Checked between chunks; aborting rolls the blob back and rejects with the signal's reason. Default: none. */
  signal?: AbortSignal;
  /** Called after each chunk is written, with the bytes written so far. Default: none. */
  onProgress?: (bytes: number) => void;
}

/** What {@link PostgresRegistryBackend.putBlob} did. */
export interface PutBlobResult {
  /** True when the registry had the blob already (nothing was written). */
  existed: boolean;
  size: number;
}

interface ManifestRow {
  digest: string;
  media_type: string;
  size: number;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

function toBuffer(bytes: string | Uint8Array): Buffer {
  return typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function requireDigest(digest: string): void {
  if (!DIGEST_RE.test(digest)) throw new SentinelError('invalid_request', `unsupported digest "${digest.slice(0, 80)}": only sha256 is supported`);
}

function mismatch(digest: string, actual: string, size: number): SentinelError {
  return new SentinelError('invalid_request', `digest mismatch: the ${size} bytes given for ${digest} hash to ${actual}`);
}

/** Re-cuts any stream of byte chunks into chunks of exactly `size` bytes (the last one shorter). */
async function* rechunk(source: Uint8Array | AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  if (source instanceof Uint8Array) {
    const all = toBuffer(source);
    for (let at = 0; at < all.byteLength; at += size) yield all.subarray(at, at + size);
    return;
  }
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of source) {
    let rest = toBuffer(piece);
    while (rest.byteLength > 0) {
      const take = Math.min(size - pendingBytes, rest.byteLength);
      pending.push(rest.subarray(0, take));
      pendingBytes += take;
      rest = rest.subarray(take);
      if (pendingBytes === size) {
        yield Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

/** The embedded registry in PostgreSQL as a {@link RegistryBackend} (see the module comment). */
export class PostgresRegistryBackend implements RegistryBackend {
  readonly name = 'embedded';
  private readonly db: RegistryDatabase;
  private readonly now: () => number;

  constructor(options: PostgresRegistryBackendOptions) {
    this.db = options.database;
    this.now = options.now ?? Date.now;
  }

  /** The size of a stored blob, or null when the registry does not hold it. */
  async blobSize(digest: string): Promise<number | null> {
    requireDigest(digest);
    const [row] = await this.db.query<{ size: number }>('SELECT size FROM registry_blobs WHERE digest = $1', [digest]);
    return row?.size ?? null;
  }

  /**
   * Stores the bytes of `source` (a buffer, or any async iterable of byte chunks: only one
   * chunk is held at a time) under `digest`, in chunks of {@link REGISTRY_CHUNK_BYTES}, in one
   * transaction that commits only when the bytes hash to `digest`: otherwise it rejects
   * `invalid_request` (`digest mismatch: …`) and nothing is stored. A blob already there is kept
   * (the source is still read and checked, so wrong bytes are always refused). Two puts of one
   * digest at once both succeed; one of them writes. A source that pauses longer than the
   * store's statement timeout (default 10 s) inside the transaction makes the server end it.
   */
  async putBlob(digest: string, source: Uint8Array | AsyncIterable<Uint8Array>, options: PutBlobOptions = {}): Promise<PutBlobResult> {
    requireDigest(digest);
    const { signal, onProgress } = options;
    throwIfAborted(signal);
    // A buffer is checked before any connection is taken: wrong bytes never open a transaction.
    if (source instanceof Uint8Array) {
      const actual = sha256Digest(source);
      if (actual !== digest) throw mismatch(digest, actual, source.byteLength);
    }
    const hash = createHash('sha256');
    let size = 0;
    let chunks = 0;
    const written = await this.db.transaction(async (client) => {
      // The row first: a concurrent put of the same digest waits here for this transaction,
      // then finds the blob (or, if this one rolled back, writes it itself).
      const inserted = await client.query(
        `INSERT INTO registry_blobs (digest, size, chunk_count, created_at) VALUES ($1, 0, 0, $2)
        ON CONFLICT (digest) DO NOTHING RETURNING digest`,
        [digest, new Date(this.now()).toISOString()],
      );
      if (inserted.rowCount === 0) return false;
      for await (const chunk of rechunk(source, REGISTRY_CHUNK_BYTES)) {
        throwIfAborted(signal);
        hash.update(chunk);
        await client.query('INSERT INTO registry_blob_chunks (digest, idx, bytes) VALUES ($1, $2, $3)', [digest, chunks, chunk]);
        chunks += 1;
        size += chunk.byteLength;
        onProgress?.(size);
      }
      throwIfAborted(signal);
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw mismatch(digest, actual, size);
      await client.query('UPDATE registry_blobs SET size = $2, chunk_count = $3 WHERE digest = $1', [digest, size, chunks]);
      return true;
    });
    if (written) return { existed: false, size };
    if (source instanceof Uint8Array) return { existed: true, size: source.byteLength };
    // Already stored: the caller's bytes still have to be what they claim.
    for await (const chunk of rechunk(source, REGISTRY_CHUNK_BYTES)) {
      throwIfAborted(signal);
      hash.update(chunk);
      size += chunk.byteLength;
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest) throw mismatch(digest, actual, size);
    return { existed: true, size };
  }

  /**
   * Streams a stored blob, one chunk (≤ 256 KiB) per query. The size and digest are checked
   * as the chunks go by: a stored blob that no longer matches (a damaged row) makes the
   * stream throw `upstream_error` (`digest mismatch: …`) at its end, so a caller must not
   * trust the bytes before the iteration finished. `not_found` when the blob is not stored.
   */
  async *readBlob(digest: string, options: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    requireDigest(digest);
    const { signal } = options;
    throwIfAborted(signal);
    const [blob] = await this.db.query<{ size: number; chunk_count: number }>('SELECT size, chunk_count FROM registry_blobs WHERE digest = $1', [digest]);
    if (blob === undefined) throw new SentinelError('not_found', `blob ${digest} not found in the embedded registry`);
    const hash = createHash('sha256');
    let size = 0;
    for (let idx = 0; idx < blob.chunk_count; idx++) {
      throwIfAborted(signal);
      const [chunk] = await this.db.query<{ bytes: Buffer }>('SELECT bytes FROM registry_blob_chunks WHERE digest = $1 AND idx = $2', [digest, idx]);
      if (chunk === undefined) throw new SentinelError('upstream_error', `blob ${digest} in the embedded registry is missing chunk ${idx}`);
      hash.update(chunk.bytes);
      size += chunk.bytes.byteLength;
      yield chunk.bytes;
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (size !== blob.size || actual !== digest) {
      throw new SentinelError('upstream_error', `digest mismatch: blob ${digest} in the embedded registry reads back as ${size} bytes hashing to ${actual}`);
    }
  }

  async push(image: ImageBytes, target: { repository: string; tag: string }, options: TransferOptions = {}): Promise<void> {
    const { signal, onProgress } = options;
    const manifest = toBuffer(image.manifest);
    const config = toBuffer(image.config);
    // Refuses anything that is not an agent image whose manifest hashes to `digest`.
    parseAgentManifest(manifest, config, { digest: image.digest });
    const blobs: { digest: string; bytes: Buffer; kind: BlobProgressEvent['kind'] }[] = [
      { digest: sha256Digest(config), bytes: config, kind: 'config' },
      { digest: EMPTY_DESCRIPTOR.digest, bytes: Buffer.from('{}', 'utf8'), kind: 'layer' },
      // The manifest last: the registry never holds a manifest whose blobs are missing.
      { digest: image.digest, bytes: manifest, kind: 'manifest' },
    ];
    for (const blob of blobs) {
      throwIfAborted(signal);
      const total = blob.bytes.byteLength;
      const base = { digest: blob.digest, kind: blob.kind, total };
      const result = await this.putBlob(blob.digest, blob.bytes, {
        ...(signal ? { signal } : {}),
        onProgress: (bytes) => onProgress?.({ status: 'uploading', ...base, bytes }),
      });
      onProgress?.({ status: result.existed ? 'exists' : 'verified', ...base, bytes: total });
    }
    throwIfAborted(signal);
    const now = new Date(this.now()).toISOString();
    // The manifest joins the repository and the tag moves in one transaction: last writer wins.
    await this.db.transaction(async (client) => {
      await client.query(
        `INSERT INTO registry_manifests (repository, digest, media_type, size, created_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (repository, digest) DO NOTHING`,
        [target.repository, image.digest, OCI_MANIFEST_MEDIA_TYPE, manifest.byteLength, now],
      );
      await client.query(
        `INSERT INTO registry_tags (repository, tag, digest, updated_at) VALUES ($1, $2, $3, $4)
        ON CONFLICT (repository, tag) DO UPDATE SET digest = EXCLUDED.digest, updated_at = EXCLUDED.updated_at`,
        [target.repository, target.tag, image.digest, now],
      );
    });
  }

  async pull(repository: string, reference: string, options: TransferOptions = {}): Promise<PulledImageBytes> {
    const { signal, onProgress } = options;
    throwIfAborted(signal);
    const byDigest = DIGEST_RE.test(reference);
    const [entry] = byDigest
      ? await this.db.query<ManifestRow>('SELECT digest, media_type, size FROM registry_manifests WHERE repository = $1 AND digest = $2', [repository, reference])
      : await this.db.query<ManifestRow>(
          `SELECT m.digest, m.media_type, m.size FROM registry_tags t
          JOIN registry_manifests m ON m.repository = t.repository AND m.digest = t.digest
          WHERE t.repository = $1 AND t.tag = $2`,
          [repository, reference],
        );
    if (entry === undefined) {
      if (!(await this.hasRepository(repository))) throw new SentinelError('not_found', `repository ${repository} not found in the embedded registry`);
      throw new SentinelError('not_found', byDigest ? `manifest ${reference} not found in embedded/${repository}` : `tag "${reference}" not found in embedded/${repository}`);
    }
    const what = `embedded/${repository}:${reference}`;
    if (entry.media_type !== OCI_MANIFEST_MEDIA_TYPE) throw new SentinelError('invalid_request', `${what} is not an agent image: its media type is ${entry.media_type}`);
    const manifest = await this.readCapped(entry.digest, entry.size, MAX_MANIFEST_BYTES, 'manifest', (bytes) =>
      onProgress?.({ status: 'downloading', digest: entry.digest, kind: 'manifest', bytes, total: entry.size }),
    );
    onProgress?.({ status: 'verified', digest: entry.digest, kind: 'manifest', bytes: entry.size, total: entry.size });
    const descriptor = requireAgentManifest(manifest, entry.media_type, what);
    throwIfAborted(signal);
    const config = await this.readCapped(descriptor.digest, descriptor.size, MAX_CONFIG_BYTES, 'config', (bytes) =>
      onProgress?.({ status: 'downloading', digest: descriptor.digest, kind: 'config', bytes, total: descriptor.size }),
    );
    onProgress?.({ status: 'verified', digest: descriptor.digest, kind: 'config', bytes: descriptor.size, total: descriptor.size });
    throwIfAborted(signal);
    return { digest: entry.digest, manifest, config };
  }

  async listRepositories(signal?: AbortSignal): Promise<string[]> {
    throwIfAborted(signal);
    const rows = await this.db.query<{ repository: string }>('SELECT DISTINCT repository FROM registry_manifests ORDER BY repository');
    return rows.map((row) => row.repository);
  }

  async listTags(repository: string, signal?: AbortSignal): Promise<string[]> {
    throwIfAborted(signal);
    if (!(await this.hasRepository(repository))) throw new SentinelError('not_found', `repository ${repository} not found in the embedded registry`);
    const rows = await this.db.query<{ tag: string }>('SELECT tag FROM registry_tags WHERE repository = $1 ORDER BY tag', [repository]);
    return rows.map((row) => row.tag);
  }

  async describeTag(repository: string, tag: string, signal?: AbortSignal): Promise<TagDescription> {
    throwIfAborted(signal);
    const [entry] = await this.db.query<ManifestRow>(
      `SELECT m.digest, m.media_type, m.size FROM registry_tags t
      JOIN registry_manifests m ON m.repository = t.repository AND m.digest = t.digest
      WHERE t.repository = $1 AND t.tag = $2`,
      [repository, tag],
    );
    if (entry === undefined) throw new SentinelError('not_found', `tag "${tag}" not found in embedded/${repository}`);
    if (entry.size > MAX_MANIFEST_BYTES) return { digest: entry.digest, description: '', agent: false };
    let bytes: Buffer;
    try {
      bytes = await this.readCapped(entry.digest, entry.size, MAX_MANIFEST_BYTES, 'manifest');
    } catch {
      // A damaged manifest is listed, with nothing to describe (as the layout back end does).
      return { digest: entry.digest, description: '', agent: false };
    }
    const summary = summarizeManifest(bytes, entry.media_type);
    return { digest: entry.digest, description: summary.description, agent: summary.agent };
  }

  /** The pool belongs to the store, which closes it. */
  async close(): Promise<void> {}

  private async hasRepository(repository: string): Promise<boolean> {
    const rows = await this.db.query('SELECT 1 FROM registry_manifests WHERE repository = $1 LIMIT 1', [repository]);
    return rows.length > 0;
  }

  /** A small blob (manifest, config) whole, verified, refused past `cap` before any chunk is read. */
  private async readCapped(digest: string, size: number, cap: number, what: string, onProgress?: (bytes: number) => void): Promise<Buffer> {
    if (size > cap) throw new SentinelError('payload_too_large', `${what} is ${size} bytes, more than the ${cap}-byte limit`);
    const parts: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of this.readBlob(digest)) {
      bytes += chunk.byteLength;
      if (bytes > cap) throw new SentinelError('payload_too_large', `${what} is more than the ${cap}-byte limit`);
      parts.push(chunk);
      onProgress?.(bytes);
    }
    if (bytes !== size) throw new SentinelError('upstream_error', `${what} blob ${digest} is ${bytes} bytes, its descriptor says ${size}`);
    return Buffer.concat(parts, bytes);
  }
}
