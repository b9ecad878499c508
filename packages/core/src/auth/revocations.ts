/**
 * Revocation: logout's revoked-token list and the one signal every transport follows to drop
 * what a revoked credential opened (docs/ARCHITECTURE.md#auth-and-tenancy).
 *
 * A logged-out token is revoked by its `jti`. The list lives in the Store (so every instance
 * and every restart agrees), and in process, so the authentication hot path never reads the
 * Store for it: each instance loads the unexpired rows at start, adds its own logouts, and
 * learns the others' through a {@link TokenRevocationFeed} (Redis channel `<prefix>revocations`)
 * within milliseconds; when the feed may have missed messages it reloads from the Store. A row is
 * useless once its token has expired anyway, so rows are pruned then.
 *
 * {@link CredentialRevocations} is what transports subscribe to: "the credentials of user Y, or
 * credential X, may no longer be valid". Token revocations, user changes (password change,
 * revoke-tokens, deletion, and any change another instance announces) and API-key revocations
 * all feed it; the WebSocket transport closes the sockets they opened with 4401.
 */
import { silentLogger, type Logger } from '../contract/logger.js';
import type { RevokedTokenRecord, Store } from '../store/types.js';

/**
 * "What these name may have stopped being valid": a username (every credential of that user), a
 * credential id (a token's jti, an API key's id, a ticket's id), both, or neither (anything may
 * have changed: recheck everything, as after a missed feed message).
 */
export interface CredentialRevocation {
  username?: string;
  credentialId?: string;
}

/** What a transport subscribes to (see {@link CredentialRevocations}). */
export interface CredentialRevocationFeed {
  /** Calls `listener` for every revocation on this instance (its own and those announced by others). Returns the unsubscribe function. */
  subscribe(listener: (revocation: CredentialRevocation) => void): () => void;
}

/**
 * The in-process fan-out of {@link CredentialRevocation}s. `emit` never throws: a listener that
 * fails is logged and the others still run.
 */
export class CredentialRevocations implements CredentialRevocationFeed {
  readonly #listeners = new Set<(revocation: CredentialRevocation) => void>();
  readonly #log: Logger;

  constructor(options: { logger?: Logger } = {}) {
    this.#log = options.logger ?? silentLogger;
  }

  subscribe(listener: (revocation: CredentialRevocation) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Tells every subscriber; for key revocations too (`{username, credentialId: keyId}`). */
  emit(revocation: CredentialRevocation): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(revocation);
      } catch (err) {
        this.#log.error('credential revocation listener failed', { error: err instanceof Error ? err.message : String(err) });
      }
    }
  }
}

/**
 * Carries logouts between the instances sharing a Store. The Redis bus has one
 * (redis/revocations.ts); without it there is one instance and nothing to carry.
 */
export interface TokenRevocationFeed {
  /** Announces a revocation made here. Never throws. */
  publish(record: RevokedTokenRecord): void;
  /**
   * Calls `listener` with another instance's revocation, or null when some may have been missed
   * (the feed (re)connected): then the list is reloaded from the Store. Returns the unsubscribe function.
   */
  subscribe(listener: (record: RevokedTokenRecord | null) => void): () => void;
}

export interface TokenRevocationsOptions {
  /** Where the list is kept. No default. */
  store: Store;
  /** Cross-instance announcements. Default none (one instance). */
  feed?: TokenRevocationFeed;
  /** Told of every revocation, local or remote (wire it to {@link CredentialRevocations}). Default none. */
  onRevoked?: (revocation: CredentialRevocation) => void;
  /** How often expired rows are pruned, in ms. Default 600000 (10 min). */
  pruneIntervalMs?: number;
  /** Clock in epoch ms. Default `Date.now`. */
  now?: () => number;
  logger?: Logger;
}

/** The revoked-token list (see the module comment). */
export class TokenRevocations {
  readonly #store: Store;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #onRevoked: (revocation: CredentialRevocation) => void;
  /** jti → the token's expiry (ms): held until then, then forgotten. */
  readonly #revoked = new Map<string, number>();
  readonly #feed: TokenRevocationFeed | undefined;
  readonly #unsubscribe: (() => void) | undefined;
  readonly #pruneTimer: NodeJS.Timeout;

  constructor(options: TokenRevocationsOptions) {
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
    this.#log = options.logger ?? silentLogger;
    this.#onRevoked = options.onRevoked ?? (() => undefined);
    this.#feed = options.feed;
    this.#unsubscribe = this.#feed?.subscribe((record) => {
      if (record === null) {
        void this.load().then(() => this.#onRevoked({}));
        return;
      }
      this.#remember(record);
      this.#onRevoked({ username: record.username, credentialId: record.jti });
    });
    this.#pruneTimer = setInterval(() => void this.prune(), options.pruneIntervalMs ?? 600_000);
    this.#pruneTimer.unref();
  }

  /** Loads the unexpired revocations from the Store (at start, and when the feed may have missed some). Never throws. */
  async load(): Promise<void> {
    try {
      for (const record of await this.#store.listRevokedTokens(this.#now())) this.#remember(record);
    } catch (err) {
      this.#log.error('loading revoked tokens failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** True when the token with this `jti` was revoked (and has not expired since). Synchronous: the hot path. */
  isRevoked(jti: string): boolean {
    const expiresAtMs = this.#revoked.get(jti);
    if (expiresAtMs === undefined) return false;
    if (expiresAtMs > this.#now()) return true;
    this.#revoked.delete(jti);
    return false;
  }

  /**
   * Revokes one token: written to the Store before this resolves (so an instance that starts, or
   * misses the announcement, still refuses it), then refused here at once and announced.
   */
  async revoke(record: RevokedTokenRecord): Promise<void> {
    await this.#store.addRevokedToken(record);
    this.#remember(record);
    this.#feed?.publish(record);
    this.#onRevoked({ username: record.username, credentialId: record.jti });
  }

  /** Forgets revocations of tokens that have expired, in process and in the Store. Never throws. */
  async prune(): Promise<void> {
    const now = this.#now();
    for (const [jti, expiresAtMs] of this.#revoked) if (expiresAtMs <= now) this.#revoked.delete(jti);
    try {
      await this.#store.pruneRevokedTokens(now);
    } catch (err) {
      this.#log.warn('pruning revoked tokens failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** How many revocations are held in process (for tests and stats). */
  get size(): number {
    return this.#revoked.size;
  }

  /** Stops the prune timer and the feed subscription. Idempotent. */
  close(): void {
    clearInterval(this.#pruneTimer);
    this.#unsubscribe?.();
  }

  #remember(record: RevokedTokenRecord): void {
    if (record.expires_at_ms > this.#now()) this.#revoked.set(record.jti, record.expires_at_ms);
  }
}
