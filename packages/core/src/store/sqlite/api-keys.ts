/**
 * The SQLite store's API-key statements (migration 6), kept apart from the rest of the store so
 * the key feature reads in one place. Prepared once per connection, after migrate().
 */
import type { Database as SqliteDatabase } from 'better-sqlite3';
import type { ApiKeyRecord, ApiKeyUse } from '../../contract/api-keys.js';
import type { Scope } from '../../contract/scopes.js';
import { run } from './errors.js';

const KEY_COLUMNS = 'id, user_id, username, name, prefix, hash, scopes, created_at, last_used_at, expires_at, revoked_at';

/** A row as SQLite returns it: the scopes as JSON text. */
interface ApiKeyRow extends Omit<ApiKeyRecord, 'scopes'> {
  scopes: string;
}

function toApiKey(row: ApiKeyRow): ApiKeyRecord {
  return { ...row, scopes: JSON.parse(row.scopes) as Scope[] };
}

/** The API-key part of the SQLite store; every method runs to completion synchronously. */
export class SqliteApiKeys {
  readonly #db: SqliteDatabase;
  readonly #insert;
  readonly #byHash;
  readonly #byId;
  readonly #listOfUser;
  readonly #countActive;
  readonly #revoke;
  readonly #touch;

  constructor(db: SqliteDatabase) {
    this.#db = db;
    this.#insert = db.prepare<[ApiKeyRow]>(
      `INSERT INTO api_keys (${KEY_COLUMNS}) VALUES (@id, @user_id, @username, @name, @prefix, @hash, @scopes, @created_at, @last_used_at, @expires_at, @revoked_at)`,
    );
    this.#byHash = db.prepare<[string], ApiKeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE hash = ?`);
    this.#byId = db.prepare<[string], ApiKeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = ?`);
    this.#listOfUser = db.prepare<[string], ApiKeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, id`);
    this.#countActive = db
      .prepare<[string, string], number>('SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)')
      .pluck();
    this.#revoke = db.prepare<[string, string]>('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
    this.#touch = db.prepare<[string, string, string]>('UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)');
  }

  create(key: ApiKeyRecord): void {
    run(() => this.#insert.run({ ...key, scopes: JSON.stringify(key.scopes) }), {
      conflict: () => `api key "${key.id}" already exists`,
      foreignKey: () => `unknown user id "${key.user_id}"`,
    });
  }

  byHash(hash: string): ApiKeyRecord | null {
    const row = this.#byHash.get(hash);
    return row === undefined ? null : toApiKey(row);
  }

  byId(id: string): ApiKeyRecord | null {
    const row = this.#byId.get(id);
    return row === undefined ? null : toApiKey(row);
  }

  list(userId: string): ApiKeyRecord[] {
    return this.#listOfUser.all(userId).map(toApiKey);
  }

  countActive(userId: string, now: string): number {
    return this.#countActive.get(userId, now) ?? 0;
  }

  revoke(id: string, revokedAt: string): boolean {
    return run(() => this.#revoke.run(revokedAt, id)).changes > 0;
  }

  /** One transaction for the whole batch: one commit however many keys were used. */
  touch(uses: readonly ApiKeyUse[]): void {
    if (uses.length === 0) return;
    this.#db.transaction(() => {
      for (const use of uses) this.#touch.run(use.last_used_at, use.id, use.last_used_at);
    })();
  }
}
