/**
 * API keys as the Store keeps them (auth/api-keys.ts issues and checks them). A key is a
 * 256-bit random secret shown once; only its SHA-256 is stored (a fast hash is right for a
 * high-entropy secret: there is nothing to guess), with a short prefix users can recognise.
 */
import type { Scope } from './scopes.js';

/** What every API key starts with, so AuthService (and secret scanners) can tell keys from JWTs. */
export const API_KEY_PREFIX = 'sk_sentinel_';

/** One stored API key. Never holds the secret. */
export interface ApiKeyRecord {
  /** `key_` + 24 hex characters. */
  id: string;
  /** The owner's immutable user id: a user deleted and created again under the same name is another account. */
  user_id: string;
  /** The owner's username when the key was made (how the key's requests act). */
  username: string;
  name: string;
  /** The first characters of the key (`sk_sentinel_` + 8), shown in lists so users can tell keys apart. */
  prefix: string;
  /** Lowercase hex SHA-256 of the whole key; unique. */
  hash: string;
  /** As created (validated against SCOPES); each request still cuts them to the owner's role. */
  scopes: Scope[];
  /** RFC 3339. */
  created_at: string;
  /** RFC 3339; null until first used. Updated at most about once a minute. */
  last_used_at: string | null;
  /** RFC 3339; null for a key that never expires. */
  expires_at: string | null;
  /** RFC 3339; null while the key is valid. */
  revoked_at: string | null;
}

/** A use of a key, for {@link ApiKeyStore.touchApiKeys}. */
export interface ApiKeyUse {
  id: string;
  /** RFC 3339. */
  last_used_at: string;
}

/** The Store's part for API keys (SQLite and PostgreSQL; conformance specs in test/store-conformance.ts). */
export interface ApiKeyStore {
  /** Stores a new key; `conflict` for a duplicate id or hash, `invalid_request` for an unknown user id. */
  createApiKey(key: ApiKeyRecord): Promise<void>;
  /** The key with this hash (revoked and expired ones too: the caller decides), or null. */
  getApiKeyByHash(hash: string): Promise<ApiKeyRecord | null>;
  getApiKey(id: string): Promise<ApiKeyRecord | null>;
  /** The user's keys that are not revoked, oldest first (ties by id). */
  listApiKeys(userId: string): Promise<ApiKeyRecord[]>;
  /** How many of the user's keys are neither revoked nor expired at `now` (RFC 3339). */
  countActiveApiKeys(userId: string, now: string): Promise<number>;
  /** Marks the key revoked at `revokedAt`; false when unknown or already revoked. */
  revokeApiKey(id: string, revokedAt: string): Promise<boolean>;
  /** Records uses in one batch; `last_used_at` only moves forward, unknown ids are ignored. */
  touchApiKeys(uses: readonly ApiKeyUse[]): Promise<void>;
}
