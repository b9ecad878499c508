/**
 * Scoped API keys for programs (issue 13): created by a logged-in caller with at most the
 * caller's own scopes, shown once, stored only as a SHA-256 (a 256-bit random secret needs no
 * slow hash: there is nothing to guess) and looked up by that hash, resolved on every request
 * from an in-process cache that revocations invalidate on every instance through the
 * user-change feed.
 *
 * A key acts as its owner with `key.scopes ∩ roleScopes(owner's current role)`: demote the
 * owner and the key loses `admin` at once; delete (or disable) the owner and the key stops.
 */
import * as crypto from 'node:crypto';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { API_KEY_PREFIX, type ApiKeyRecord, type ApiKeyStore, type ApiKeyUse } from '../contract/api-keys.js';
import { SentinelError, conflict, insufficientScope, invalidRequest, notFound } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { Principal } from '../contract/models.js';
import { SCOPES, isScope, principalScopes, roleScopes, type Scope } from '../contract/scopes.js';
import type { UserAuthState, UserChangeFeed, UserService } from './users.js';

/** A key as the API lists it: never the secret, never its hash. */
export interface ApiKeyResource {
  id: string;
  name: string;
  /** The first characters of the key, e.g. `sk_sentinel_AbCd1234`. */
  prefix: string;
  scopes: Scope[];
  created_at: string;
  /** Null until first used; updated at most about once a minute. */
  last_used_at: string | null;
  /** Null: never expires. */
  expires_at: string | null;
}

/** What `POST /v1/keys` answers: the resource and, this once, the key itself. */
export interface CreatedApiKey extends ApiKeyResource {
  key: string;
}

export interface CreateApiKeyInput {
  name: string;
  scopes: string[];
  /** Seconds until the key expires. Default: never. */
  expires_in?: number;
}

export interface ApiKeyServiceOptions {
  store: ApiKeyStore;
  /** Owners' accounts (id, role, disabled), from the same cache tokens use. No default. */
  users: UserService;
  /** Tells the other instances that a key was revoked; and tells this one what they revoked. Default none (one instance). */
  changes?: UserChangeFeed;
  /** Default: silent. */
  logger?: Logger;
  /** How often at most a key's `last_used_at` is written. Default 60000 ms. */
  touchIntervalMs?: number;
  /** How long uses wait to be written in one batch. Default 1000 ms. */
  flushDelayMs?: number;
  /**
   * Told of each key this instance revokes, so what the key opened (sockets) can be closed at
   * once; other instances learn it through `changes` and recheck. Default: nobody.
   */
  onRevoked?: (revocation: { username: string; credentialId: string }) => void;
}

/** Longest key name, in characters. */
export const API_KEY_NAME_MAX_LENGTH = 64;
/** Most keys one user may hold that are neither revoked nor expired. */
export const MAX_API_KEYS_PER_USER = 100;
/** Shortest and longest `expires_in`: one minute, ten years. */
export const API_KEY_MIN_EXPIRES_IN = 60;
export const API_KEY_MAX_EXPIRES_IN = 10 * 366 * 24 * 3600;

/** 32 random bytes → 43 base64url characters: 256 bits of entropy. */
const SECRET_BYTES = 32;
const KEY_LENGTH = API_KEY_PREFIX.length + 43;
/** Characters of the secret shown in the prefix (48 bits: enough to tell keys apart, nothing to guess with). */
const SHOWN_SECRET_CHARS = 8;
const KEY_PATTERN = /^sk_sentinel_[A-Za-z0-9_-]{43}$/;
/** Bound on cached keys; an evicted key costs one store read on its next use. */
const KEY_CACHE_SIZE = 10000;

/** The one refusal for an unknown, revoked or expired key, or a key whose owner is gone: it never says which. */
export function invalidApiKey(): SentinelError {
  return new SentinelError('unauthorized', 'invalid api key');
}

/** True when the bearer credential is shaped like an API key (AuthService routes it here). */
export function looksLikeApiKey(credential: string): boolean {
  return credential.startsWith(API_KEY_PREFIX);
}

/**
 * The key's SHA-256 in lowercase hex. One-shot `crypto.hash` (Node ≥ 20.12) where there is one:
 * it runs on every request, and costs a quarter of a `createHash` object and its digest.
 */
const sha256Hex: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => (crypto as unknown as { hash(algorithm: string, data: string, encoding: 'hex'): string }).hash('sha256', text, 'hex')
    : (text) => createHash('sha256').update(text).digest('hex');

function toResource(key: ApiKeyRecord): ApiKeyResource {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    scopes: [...key.scopes],
    created_at: key.created_at,
    last_used_at: key.last_used_at,
    expires_at: key.expires_at,
  };
}

interface CacheEntry {
  readonly record: ApiKeyRecord;
  readonly hash: Buffer;
  /** Infinity when the key never expires. */
  readonly expiresAtMs: number;
  /** The account state the principal below was made from (memoised: the same frozen object while cached). */
  state?: UserAuthState;
  principal?: Principal;
}

export class ApiKeyService {
  readonly #store: ApiKeyStore;
  readonly #users: UserService;
  readonly #changes: UserChangeFeed | undefined;
  readonly #log: Logger;
  readonly #touchIntervalMs: number;
  readonly #flushDelayMs: number;
  /**
   * Presented key → its record, for the request path: a hit costs one map lookup and no hash,
   * as the verified-token cache does for JWTs (which holds presented tokens the same way). Only
   * keys found in the store are cached, so garbage cannot fill it; every revocation and
   * account change invalidates (here and, through the feed, on every instance).
   */
  readonly #cache = new Map<string, CacheEntry>();
  /** Bumped by every invalidation, so a read that raced it is not cached. */
  #generation = 0;
  /** key id → when its use was last queued for writing (ms). */
  readonly #lastTouched = new Map<string, number>();
  /** key id → the use waiting to be written. */
  #pending = new Map<string, ApiKeyUse>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  readonly #unsubscribe: (() => void) | undefined;
  readonly #onRevoked: ((revocation: { username: string; credentialId: string }) => void) | undefined;

  constructor(options: ApiKeyServiceOptions) {
    this.#onRevoked = options.onRevoked;
    this.#store = options.store;
    this.#users = options.users;
    this.#changes = options.changes;
    this.#log = options.logger ?? silentLogger;
    this.#touchIntervalMs = options.touchIntervalMs ?? 60_000;
    this.#flushDelayMs = options.flushDelayMs ?? 1000;
    // Another instance revoked a key of this user (or changed the user): forget the user's keys,
    // the next request reads them again. Null: changes may have been missed, forget every key.
    this.#unsubscribe = this.#changes?.subscribe((change) => {
      if (change === null) this.#invalidateAll();
      else this.#invalidateUser(change.username);
    });
  }

  /**
   * Creates a key for the caller. Every requested scope must be one the caller holds itself
   * (a session: its role's; a key: that key's), else `insufficient_scope` naming the first
   * missing one. At most {@link MAX_API_KEYS_PER_USER} active keys per user (`conflict`). A key
   * made by an expiring key (or ticket) expires no later than it.
   */
  async create(actor: Principal, input: CreateApiKeyInput): Promise<CreatedApiKey> {
    const scopes = normaliseScopes(input.scopes);
    const held = principalScopes(actor);
    const missing = scopes.find((scope) => !held.includes(scope));
    if (missing !== undefined) throw insufficientScope(missing);
    const name = input.name.trim();
    if (name.length === 0 || name.length > API_KEY_NAME_MAX_LENGTH) throw invalidRequest(`name must be 1 to ${API_KEY_NAME_MAX_LENGTH} characters`);
    const owner = await this.#users.authState(actor.username, { fresh: true });
    if (owner === null) throw new SentinelError('unauthorized', 'user no longer exists');
    const now = Date.now();
    const nowIso = new Date(now).toISOString();
    if ((await this.#store.countActiveApiKeys(owner.user_id, nowIso)) >= MAX_API_KEYS_PER_USER) {
      throw conflict(`at most ${MAX_API_KEYS_PER_USER} active API keys per user: revoke one first`);
    }
    // A credential that expires (a key, a ticket) cannot outlive itself by minting a longer-lived key.
    let expiresAtMs = input.expires_in === undefined ? null : now + input.expires_in * 1000;
    if (actor.expiresAtMs !== undefined && actor.via !== undefined && actor.via !== 'session') {
      expiresAtMs = expiresAtMs === null ? actor.expiresAtMs : Math.min(expiresAtMs, actor.expiresAtMs);
    }
    const key = `${API_KEY_PREFIX}${randomBytes(SECRET_BYTES).toString('base64url')}`;
    const record: ApiKeyRecord = {
      id: `key_${randomBytes(12).toString('hex')}`,
      user_id: owner.user_id,
      username: owner.username,
      name,
      prefix: key.slice(0, API_KEY_PREFIX.length + SHOWN_SECRET_CHARS),
      hash: sha256Hex(key),
      scopes,
      created_at: nowIso,
      last_used_at: null,
      expires_at: expiresAtMs === null ? null : new Date(expiresAtMs).toISOString(),
      revoked_at: null,
    };
    await this.#store.createApiKey(record);
    this.#log.info('api key created', { id: record.id, username: record.username, prefix: record.prefix });
    return { ...toResource(record), key };
  }

  /** The caller's keys that are not revoked (expired ones included, with their `expires_at`), oldest first. */
  async list(actor: Principal): Promise<ApiKeyResource[]> {
    return this.listOf(actor.username);
  }

  /** A user's keys (for admins), like {@link list}; `not_found` for an unknown user. */
  async listOf(username: string): Promise<ApiKeyResource[]> {
    const owner = await this.#users.authState(username);
    if (owner === null) throw notFound('user', username);
    return (await this.#store.listApiKeys(owner.user_id)).map(toResource);
  }

  /**
   * Revokes a key at once, here and (through the user-change feed) on every other instance.
   * The caller's own keys; an admin's any. Another user's key is `not_found` for a non-admin,
   * as if it did not exist. Returns the key as it was, for the audit entry.
   */
  async revoke(actor: Principal, id: string): Promise<ApiKeyResource & { username: string }> {
    const record = await this.#store.getApiKey(id);
    const visible = record !== null && record.revoked_at === null && (record.username === actor.username || actor.role === 'admin');
    if (!visible) throw notFound('api key', id);
    this.#invalidateUser(record.username);
    const revoked = await this.#store.revokeApiKey(id, new Date().toISOString());
    this.#invalidateUser(record.username);
    if (!revoked) throw notFound('api key', id);
    this.#changes?.publish({ username: record.username, user_id: record.user_id });
    this.#onRevoked?.({ username: record.username, credentialId: record.id });
    this.#log.info('api key revoked', { id, username: record.username, by: actor.username });
    return { ...toResource(record), username: record.username };
  }

  /**
   * Throws `unauthorized` 'invalid api key' when the key behind a principal it handed out is no
   * longer good (revoked here or on another instance, expired, owner deleted or disabled), read
   * afresh from the store: for open sockets, told by the user-change feed to look again.
   */
  async recheck(principal: Principal): Promise<void> {
    if (principal.credentialId === undefined) throw invalidApiKey();
    const record = await this.#store.getApiKey(principal.credentialId);
    if (record === null || record.revoked_at !== null) throw invalidApiKey();
    if (record.expires_at !== null && Date.parse(record.expires_at) <= Date.now()) throw invalidApiKey();
    const state = await this.#users.authState(record.username, { fresh: true });
    if (state === null || state.user_id !== record.user_id || (state as { disabled?: unknown }).disabled === true) throw invalidApiKey();
  }

  /**
   * Resolves a presented key to the principal it acts as, or throws `unauthorized` 'invalid
   * api key' (unknown, revoked, expired, owner gone or disabled: never saying which). On a
   * cache hit the only await is the owner's cached account.
   */
  async authenticate(key: string): Promise<Principal> {
    if (key.length !== KEY_LENGTH || !KEY_PATTERN.test(key)) throw invalidApiKey();
    let entry = this.#cache.get(key);
    if (entry === undefined) {
      const hex = sha256Hex(key);
      const loaded = await this.#load(key, hex);
      // Looked up by this very digest; the constant-time compare is for defence in depth.
      if (loaded === null || !timingSafeEqual(loaded.hash, Buffer.from(hex, 'hex'))) throw invalidApiKey();
      entry = loaded;
    }
    const now = Date.now();
    if (entry.record.revoked_at !== null || now >= entry.expiresAtMs) throw invalidApiKey();
    let state = await this.#users.authState(entry.record.username);
    if (state !== null && state.user_id !== entry.record.user_id) state = await this.#users.authState(entry.record.username, { fresh: true });
    // `disabled` comes with the user-management work; refused here whenever authState carries it.
    if (state === null || state.user_id !== entry.record.user_id || (state as { disabled?: unknown }).disabled === true) throw invalidApiKey();
    this.#noteUse(entry.record.id, now);
    if (entry.state === state && entry.principal !== undefined) return entry.principal;
    const allowed = roleScopes(state.role);
    const principal: Principal = Object.freeze({
      username: state.username,
      role: state.role,
      scopes: Object.freeze(entry.record.scopes.filter((scope) => allowed.includes(scope))),
      via: 'key' as const,
      credentialId: entry.record.id,
      ...(Number.isFinite(entry.expiresAtMs) ? { expiresAtMs: entry.expiresAtMs } : {}),
    });
    entry.state = state;
    entry.principal = principal;
    return principal;
  }

  /** Writes the uses still waiting and stops listening to the feed. */
  async close(): Promise<void> {
    this.#unsubscribe?.();
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    await this.#flush();
  }

  /** Writes pending uses now (tests, shutdown). */
  flushUses(): Promise<void> {
    return this.#flush();
  }

  async #load(key: string, hex: string): Promise<CacheEntry | null> {
    const generation = this.#generation;
    const record = await this.#store.getApiKeyByHash(hex);
    if (record === null) return null;
    const entry: CacheEntry = {
      record,
      hash: Buffer.from(record.hash, 'hex'),
      expiresAtMs: record.expires_at === null ? Number.POSITIVE_INFINITY : Date.parse(record.expires_at),
    };
    if (generation === this.#generation) {
      if (this.#cache.size >= KEY_CACHE_SIZE) {
        const oldest = this.#cache.keys().next();
        if (oldest.done !== true) this.#cache.delete(oldest.value);
      }
      this.#cache.set(key, entry);
    }
    return entry;
  }

  /** Queues a use for the batched write, at most once per key per interval: never awaited by the request. */
  #noteUse(id: string, now: number): void {
    const last = this.#lastTouched.get(id);
    if (last !== undefined && now - last < this.#touchIntervalMs) return;
    this.#lastTouched.set(id, now);
    if (this.#lastTouched.size > KEY_CACHE_SIZE) {
      const oldest = this.#lastTouched.keys().next();
      if (oldest.done !== true) this.#lastTouched.delete(oldest.value);
    }
    this.#pending.set(id, { id, last_used_at: new Date(now).toISOString() });
    if (this.#flushTimer === undefined) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined;
        void this.#flush();
      }, this.#flushDelayMs);
      this.#flushTimer.unref();
    }
  }

  #flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (this.#pending.size === 0) return;
      const uses = [...this.#pending.values()];
      this.#pending = new Map();
      try {
        await this.#store.touchApiKeys(uses);
      } catch (err) {
        // A lost "last used" is not worth failing anything for; the next use writes it again.
        for (const use of uses) this.#lastTouched.delete(use.id);
        this.#log.warn('could not record api key uses', { keys: uses.length, error: err instanceof Error ? err.message : String(err) });
      }
    });
    return this.#flushing;
  }

  #invalidateUser(username: string): void {
    this.#generation += 1;
    for (const [key, entry] of this.#cache) {
      if (entry.record.username === username) this.#cache.delete(key);
    }
  }

  #invalidateAll(): void {
    this.#generation += 1;
    this.#cache.clear();
  }
}

/** Known scopes, each once, in SCOPES order; `invalid_request` for an unknown one or none. */
function normaliseScopes(requested: readonly string[]): Scope[] {
  if (requested.length === 0) throw invalidRequest('scopes must name at least one scope');
  const unknown = requested.find((scope) => !isScope(scope));
  if (unknown !== undefined) throw invalidRequest(`unknown scope "${unknown}"; known scopes: ${SCOPES.join(', ')}`);
  return SCOPES.filter((scope) => requested.includes(scope));
}
