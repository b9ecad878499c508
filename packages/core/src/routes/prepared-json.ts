/**
 * Serialize once, serve many times. A list route's body is a pure function of a few inputs
 * (who asks, how they reached us) and the records it is built from; when the store hands back
 * the very same frozen records as last time (SqliteStore keeps its agent lists until anything
 * changes them, including another process's commit), the bytes built last time are still
 * exact and are reused, ETag included. Records that are new objects (PostgreSQL, any store
 * without read caches) are serialized again, so the body is always what the data says.
 */
import { createHash } from 'node:crypto';
import { preparedJson, type PreparedJson } from '../contract/route.js';

/** The strong ETag of `bytes`: a digest of the bytes themselves, so equal tags mean equal bodies on every instance. */
export function etagOf(bytes: Buffer): string {
  return `"${createHash('sha256').update(bytes).digest('base64url')}"`;
}

/** Serializes `value` once, with its ETag (no caching: for bodies that are different per request anyway). */
export function prepareJson(value: unknown): PreparedJson {
  const bytes = Buffer.from(JSON.stringify(value), 'utf8');
  return preparedJson(value, bytes, etagOf(bytes));
}

interface Entry {
  /** What the body was built from; null when they were not frozen (then never reused by identity). */
  sources: readonly object[] | null;
  prepared: PreparedJson;
}

function sameSources(a: readonly object[], b: readonly object[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function frozen(sources: readonly object[]): boolean {
  for (const source of sources) if (!Object.isFrozen(source)) return false;
  return true;
}

export interface PreparedJsonCacheOptions {
  /** Views kept at once (one per owner × origin); the least recently used goes first. Default 256. */
  maxEntries?: number;
}

/**
 * Prepared bodies by view key. `get(key, sources, build)`: `key` must name everything the body
 * depends on besides `sources` (the owner view, the origin's scheme and host), `build` must be
 * a pure function of them. Reuse needs every source frozen (deeply, as SqliteStore freezes its
 * records) and identical, element by element, to the ones the cached body was built from.
 */
export class PreparedJsonCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;

  constructor(options: PreparedJsonCacheOptions = {}) {
    this.#maxEntries = options.maxEntries ?? 256;
  }

  get(key: string, sources: readonly object[], build: () => unknown): PreparedJson {
    const entries = this.#entries;
    const entry = entries.get(key);
    if (entry !== undefined && entry.sources !== null && sameSources(entry.sources, sources)) {
      // Most recently used last, so the bound evicts the view asked for longest ago.
      entries.delete(key);
      entries.set(key, entry);
      return entry.prepared;
    }
    const value = build();
    const bytes = Buffer.from(JSON.stringify(value), 'utf8');
    // Fresh records that say the same thing (another instance's read, a cache refill): same
    // bytes, so the same tag without hashing them again.
    const etag = entry !== undefined && entry.prepared.bytes.equals(bytes) ? entry.prepared.etag : etagOf(bytes);
    const prepared = preparedJson(value, bytes, etag);
    entries.delete(key);
    if (entries.size >= this.#maxEntries) entries.delete(entries.keys().next().value as string);
    entries.set(key, { sources: frozen(sources) ? sources.slice() : null, prepared });
    return prepared;
  }

  /** Cached views. */
  get size(): number {
    return this.#entries.size;
  }
}
