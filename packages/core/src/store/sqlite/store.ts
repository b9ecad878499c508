/**
 * The embedded Store: one SQLite file through better-sqlite3 (docs/ARCHITECTURE.md#storage). better-sqlite3 is
 * synchronous; each method is an async wrapper so this back end and PostgreSQL share the
 * `Store` interface. Because a call runs to completion on the one JS thread, a single process
 * never interleaves two transactions; across processes, read-then-write transactions take
 * the write lock up front (`immediate`) so they queue on busy_timeout instead of deadlocking.
 *
 * The appends of every turn are group-committed (group-commit.ts) and the hot reads cached
 * (read-caches.ts); SQL is in statements.ts, error translation in errors.ts, and the row
 * mappers are shared with PostgreSQL (../rows.ts).
 */
import { writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase } from 'better-sqlite3';
import { SentinelError } from '../../contract/errors.js';
import type { LogLevel } from '../../contract/logger.js';
import type {
  AgentRecord,
  EventRecord,
  ImageRecord,
  LogRecord,
  MessageRecord,
  NewEventRecord,
  NewLogRecord,
  NewMessageRecord,
  NewUserRecord,
  RepositoryRecord,
  UserRecord,
} from '../../contract/models.js';
import type { AuditEntry, AuditQuery, NewAuditEntry } from '../../contract/audit.js';
import {
  AFTER_HEX,
  DEFAULT_EVENT_LIMIT,
  DEFAULT_RUN_FRAME_LIMIT,
  FIND_AGENTS_LIMIT,
  FIND_RUNS_LIMIT,
  HEX_PREFIX,
  auditQueryArguments,
  canonicalTimestamp,
  idempotencyCutoff,
  nonNegativeInteger,
  runFrameBatches,
  splitRunFrameBatch,
  runsLimit,
} from '../arguments.js';
import {
  USER_COLUMNS,
  toAgent,
  toAgentParams,
  toAudit,
  toAuditParams,
  toEvent,
  toLog,
  toMessage,
  toMessageParams,
  toRun,
  toRunParams,
  toRunPatchParams,
  toUser,
  type AgentRow,
  type ImageRow,
  type UserRow,
} from '../rows.js';
import type { CreateRunOptions, CreateRunResult, NewRunRecord, RunFrameRow, RunPatch, RunQuery, RunRecord, RunSearch, UpdateRunOptions } from '../../runs/types.js';
import type { AgentPatch, AgentQuery, ExternalIdentity, LogQuery, RevokedTokenRecord, Store, UserPatch } from '../types.js';
import type { ApiKeyRecord, ApiKeyUse } from '../../contract/api-keys.js';
import { SqliteApiKeys } from './api-keys.js';
import { SqliteWebhooks } from './webhooks.js';
import type { NewWebhookDelivery, WebhookAttemptOutcome, WebhookAttemptRecord, WebhookClaim, WebhookDeliveryRecord, WebhookDeliveryWithAttempts } from '../../contract/webhooks.js';
import { newUserId } from '../user-id.js';
import { openFailureReason, run } from './errors.js';
import { GroupCommit } from './group-commit.js';
import { SQLITE_MIGRATIONS_TABLE_SQL, sqliteMigrations } from './migrations.js';
import { ALL_AGENTS, SqliteReadCaches, deepFreeze } from './read-caches.js';
import { prepareFindAgents, prepareStatements, type PreparedStatement, type Statements } from './statements.js';

/** How to open a {@link SqliteStore}. */
export interface SqliteStoreOptions {
  /** Database file, created when missing (mode 0600: it holds password hashes). `:memory:` works for throwaway stores. */
  path: string;
  /** How long a write waits for another process's lock before failing `unavailable`. Default 5000 ms. */
  busyTimeoutMs?: number;
}

/** Reading and writing OpenID Connect identity links. */
interface IdentityStatements {
  get: PreparedStatement<[string, string], UserRow>;
  insert: PreparedStatement<[string, string, string, string], unknown>;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** The SQLite back end of {@link Store}. Build it with {@link openSqliteStore}. */
/** A user to insert as its row: generated id and version where absent, booleans as 0/1, quotas null when unset. */
function newUserRow(user: NewUserRecord) {
  return {
    ...user,
    id: user.id ?? newUserId(),
    token_version: user.token_version ?? 0,
    can_push: user.can_push ? (1 as const) : (0 as const),
    disabled: user.disabled === true ? (1 as const) : (0 as const),
    quota_tokens_per_day: user.quota_tokens_per_day ?? null,
    quota_turns_per_day: user.quota_turns_per_day ?? null,
    quota_concurrent_agents: user.quota_concurrent_agents ?? null,
  };
}

export class SqliteStore implements Store {
  readonly #path: string;
  readonly #db: SqliteDatabase;
  #statements: Statements | undefined;
  /** API-key statements (api-keys.ts), prepared with the others. */
  #apiKeys: SqliteApiKeys | undefined;
  #webhooks: SqliteWebhooks | undefined;
  /** findAgents statements by WHERE clause (see there). */
  readonly #findAgentStatements = new Map<string, PreparedStatement<[Record<string, string | number>], AgentRow>>();
  #identity: IdentityStatements | undefined;
  #closed = false;
  /** The hot reads, exact for as long as nothing else changed the file (see read-caches.ts). */
  readonly #caches = new SqliteReadCaches();
  /** The appends of this turn of the event loop, committed together (see group-commit.ts). */
  readonly #groupCommit = new GroupCommit({
    open: () => this.#open(),
    // Holding the write lock now: what data_version says cannot change until COMMIT, so the
    // next-seq cache is exact for every write in the group.
    beforeWrites: () => this.#checkCaches(this.#stmts()),
    commitFailed: () => this.#caches.clear(),
  });

  /**
   * Opens (creating) the file and sets the pragmas; call {@link migrate} before anything
   * else. Throws what better-sqlite3 throws; {@link openSqliteStore} turns that into one
   * clear `unavailable` error.
   */
  constructor(options: SqliteStoreOptions) {
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new SentinelError('invalid_request', 'busyTimeoutMs must be a non-negative integer');
    }
    this.#path = options.path;
    if (options.path !== ':memory:' && options.path !== '') createPrivateFile(options.path);
    this.#db = new Database(options.path, { timeout: busyTimeoutMs });
    try {
      this.#db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      // WAL: readers never block the writer and a commit is one append to the log.
      this.#db.pragma('journal_mode = WAL');
      // In WAL mode NORMAL fsyncs only at checkpoints, not at every commit. A commit is in
      // the WAL file (the OS page cache) before the call returns, so a process crash or
      // kill -9 loses nothing committed; only an OS crash or power loss could drop the
      // last commits. That is the trade docs/ARCHITECTURE.md#storage asks for, at a fraction of FULL's cost.
      this.#db.pragma('synchronous = NORMAL');
      // A checkpoint (copying the WAL into the file, with the only fsyncs NORMAL does) every
      // 10,000 pages (≈ 40 MiB of WAL) instead of SQLite's 1,000: under a steady stream of
      // appends each hot index page is copied once per checkpoint, not once per 1,000 pages
      // written (measured here: +20% rows/s for 100-row transactions).
      this.#db.pragma('wal_autocheckpoint = 10000');
      // Off by default in SQLite; the cascades and the RESTRICT on images depend on it.
      this.#db.pragma('foreign_keys = ON');
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  /** The database file this store was opened on. */
  get path(): string {
    return this.#path;
  }

  async migrate(): Promise<void> {
    const db = this.#open();
    db.exec(SQLITE_MIGRATIONS_TABLE_SQL);
    const known = sqliteMigrations.at(-1)?.version ?? 0;
    const current = (db.prepare('SELECT COALESCE(MAX(version), 0) FROM schema_migrations').pluck().get() as number);
    if (current > known) {
      throw new SentinelError(
        'unavailable',
        `database schema version ${current} is newer than this server supports (${known}); upgrade SentinelStacks or use another data directory`,
      );
    }
    const isApplied = db.prepare('SELECT 1 FROM schema_migrations WHERE version = ?').pluck();
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const migration of sqliteMigrations) {
      // Re-checked inside the write lock: another process may have applied it meanwhile.
      db.transaction(() => {
        if (isApplied.get(migration.version) !== undefined) return;
        db.exec(migration.sql);
        record.run(migration.version, migration.name, new Date().toISOString());
      }).immediate();
    }
    this.#statements ??= prepareStatements(db);
    this.#apiKeys ??= new SqliteApiKeys(db);
    this.#webhooks ??= new SqliteWebhooks(db);
  }

  async ping(): Promise<void> {
    this.#stmts().ping.get();
  }

  /** Closes the file. Safe to call more than once; every later call rejects `unavailable`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // What callers were promised is committed (or rejected) before the file goes.
    this.#groupCommit.flush();
    this.#closed = true;
    this.#statements = undefined;
    this.#apiKeys = undefined;
    this.#webhooks = undefined;
    this.#identity = undefined;
    this.#findAgentStatements.clear();
    this.#db.close();
  }

  async createUser(user: NewUserRecord): Promise<void> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    const row = newUserRow(user);
    run(() => s.insertUser.run(row), {
      conflict: () => `user "${user.username}" already exists`,
    });
  }

  async getUser(username: string): Promise<UserRecord | null> {
    const row = this.#stmts().getUser.get(username);
    return row === undefined ? null : toUser(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    return (this.#stmts().listUsers.all()).map(toUser);
  }

  async countUsers(): Promise<number> {
    return this.#stmts().countUsers.get() as number;
  }

  async updateUser(username: string, patch: UserPatch): Promise<boolean> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    const result = run(() =>
      s.updateUser.run({
        username,
        password_hash: patch.password_hash ?? null,
        role: patch.role ?? null,
        can_push: patch.can_push === undefined ? null : patch.can_push ? 1 : 0,
        updated_at: patch.updated_at ?? null,
        disabled: patch.disabled === undefined ? null : patch.disabled ? 1 : 0,
        set_quota_tokens: patch.quota_tokens_per_day === undefined ? 0 : 1,
        quota_tokens: patch.quota_tokens_per_day ?? null,
        set_quota_turns: patch.quota_turns_per_day === undefined ? 0 : 1,
        quota_turns: patch.quota_turns_per_day ?? null,
        set_quota_agents: patch.quota_concurrent_agents === undefined ? 0 : 1,
        quota_agents: patch.quota_concurrent_agents ?? null,
        bump: patch.bump_token_version === true ? 1 : 0,
        keep_an_admin: patch.keep_an_admin === true ? 1 : 0,
      }),
    );
    return result.changes > 0;
  }

  async deleteUser(username: string): Promise<boolean> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    this.#caches.clear();
    // Agents go first, explicitly: their delete trigger removes logs and events, and the
    // result does not depend on foreign_keys being on.
    return this.#db.transaction(() => {
      s.deleteAgentsOfOwner.run(username);
      return s.deleteUser.run(username).changes > 0;
    })();
  }

  async getIdentityUser(identity: ExternalIdentity): Promise<UserRecord | null> {
    const row = this.#identityStatements().get.get(identity.issuer, identity.subject);
    return row === undefined ? null : toUser(row);
  }

  async createIdentityUser(identity: ExternalIdentity, user: NewUserRecord): Promise<void> {
    const s = this.#stmts();
    const link = this.#identityStatements();
    this.#groupCommit.flush();
    const row = newUserRow(user);
    run(
      () =>
        this.#db.transaction(() => {
          s.insertUser.run(row);
          link.insert.run(identity.issuer, identity.subject, row.id, user.created_at);
        }).immediate(),
      { conflict: (message) => (message.includes('oidc_identities') ? 'the identity is already linked to a user' : `user "${user.username}" already exists`) },
    );
  }

  /** The identity-link statements, prepared on first use (only servers with OpenID Connect need them). */
  #identityStatements(): IdentityStatements {
    this.#stmts();
    this.#identity ??= {
      get: this.#db.prepare<[string, string], UserRow>(
        `SELECT ${USER_COLUMNS.split(', ').map((c) => `u.${c}`).join(', ')} FROM oidc_identities i JOIN users u ON u.id = i.user_id WHERE i.issuer = ? AND i.subject = ?`,
      ) as IdentityStatements['get'],
      insert: this.#db.prepare<[string, string, string, string]>('INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES (?, ?, ?, ?)') as IdentityStatements['insert'],
    };
    return this.#identity;
  }

  async createAgent(agent: AgentRecord): Promise<void> {
    const s = this.#stmts();
    const row = toAgentParams(agent);
    // Group-committed like the appends: creating an agent journals right after (see AgentService).
    await this.#groupCommit.enqueue(() => {
      this.#caches.agentLists.clear();
      run(() => s.insertAgent.run(row), {
        conflict: (message) =>
          message.includes('agents.owner') ? `agent named "${agent.name}" already exists for user "${agent.owner}"` : `agent "${agent.id}" already exists`,
        // SQLite does not say which key failed; look it up, only on this rare path.
        foreignKey: () =>
          s.userExists.get(agent.owner) === undefined ? `unknown owner "${agent.owner}"` : `unknown image ${agent.image_id}`,
      });
    }, true);
  }

  /** The record is frozen and may be shared between calls (see read-caches.ts). */
  async getAgent(id: string): Promise<AgentRecord | null> {
    const s = this.#stmts();
    this.#checkCaches(s);
    const cached = this.#caches.agents.get(id);
    if (cached !== undefined) return cached;
    const row = s.getAgent.get(id);
    if (row === undefined) return null;
    return this.#caches.cacheAgent(id, row);
  }

  /** Newest first. The records are frozen and may be shared between calls (see read-caches.ts). */
  async listAgents(filter: { owner?: string } = {}): Promise<AgentRecord[]> {
    const s = this.#stmts();
    this.#checkCaches(s);
    const key = filter.owner ?? ALL_AGENTS;
    let records = this.#caches.agentLists.get(key);
    if (records === undefined) {
      const rows = filter.owner === undefined ? s.listAgents.all() : s.listAgentsOfOwner.all(filter.owner);
      records = rows.map((row) => deepFreeze(toAgent(row)));
      this.#caches.putAgentList(key, records);
    }
    return records.slice();
  }

  async updateAgent(id: string, patch: AgentPatch): Promise<AgentRecord | null> {
    const s = this.#stmts();
    const params = { id, status: patch.status ?? null, name: patch.name ?? null, updated_at: patch.updated_at ?? null };
    return this.#groupCommit.enqueue(() => {
      this.#caches.agentLists.clear();
      this.#caches.agents.delete(id);
      const row = run(() => s.updateAgent.get(params), { conflict: () => `an agent named "${patch.name ?? ''}" already exists for this owner` });
      // Inside the commit: the entry is what this transaction stored (a failed COMMIT empties the caches).
      return row === undefined ? null : this.#caches.cacheAgent(id, row);
    }, true);
  }

  async addAgentUsage(id: string, requests: number, tokens: number, updatedAt: string): Promise<AgentRecord | null> {
    const s = this.#stmts();
    // Cleared inside the commit: a list read between queueing and committing must not be kept.
    return this.#groupCommit.enqueue(() => {
      this.#caches.agentLists.clear();
      const cached = this.#caches.agents.get(id);
      this.#caches.agents.delete(id);
      if (s.addAgentUsage.run(requests, tokens, updatedAt, id).changes === 0) return null;
      // The cached record is what the database holds (see read-caches.ts; checked under this
      // write lock): only the counters, read back, and updated_at changed. Saves parsing and
      // freezing the whole row once per chat turn.
      const usage = cached === undefined ? undefined : s.agentUsage.get(id);
      if (cached !== undefined && usage !== undefined) {
        return this.#caches.putAgent(id, Object.freeze({ ...cached, usage_requests: usage.usage_requests, usage_tokens: usage.usage_tokens, updated_at: updatedAt }));
      }
      const row = s.getAgent.get(id);
      return row === undefined ? null : this.#caches.cacheAgent(id, row);
    }, true);
  }

  async deleteAgent(id: string): Promise<boolean> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    // The delete trigger removes the agent's rows (and prune marks): numbering would restart.
    this.#caches.forgetAgent(id);
    return s.deleteAgent.run(id).changes > 0;
  }

  async countAgentsUsingImage(digest: string): Promise<number> {
    return this.#stmts().countAgentsUsingImage.get(digest) as number;
  }

  async findAgents(query: AgentQuery): Promise<AgentRecord[]> {
    const limit = Math.min(nonNegativeInteger(query.limit ?? FIND_AGENTS_LIMIT, 'limit'), FIND_AGENTS_LIMIT);
    if (query.idPrefix !== undefined && !HEX_PREFIX.test(query.idPrefix)) return [];
    const conditions: string[] = [];
    const params: Record<string, string | number> = { limit };
    if (query.owner !== undefined) {
      conditions.push('owner = @owner');
      params.owner = query.owner;
    }
    if (query.name !== undefined) {
      conditions.push('name = @name');
      params.name = query.name;
    }
    if (query.idPrefix !== undefined) {
      // A range on the primary key; ids are hex, so [prefix, prefix + 'g') is exactly the prefix.
      conditions.push('id >= @low AND id < @high');
      params.low = query.idPrefix;
      params.high = `${query.idPrefix}${AFTER_HEX}`;
    }
    const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
    let statement = this.#findAgentStatements.get(where);
    if (statement === undefined) {
      // One statement per combination of fields (at most eight), prepared once.
      statement = prepareFindAgents(this.#open(), where);
      this.#findAgentStatements.set(where, statement);
    }
    this.#stmts();
    return statement.all(params).map(toAgent);
  }

  async putImage(image: Omit<ImageRecord, 'tags'>, tags: string[]): Promise<void> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    const row: ImageRow = {
      digest: image.digest,
      manifest: image.manifest,
      config: image.config,
      config_digest: image.config_digest,
      size: image.size,
      created_at: image.created_at,
    };
    run(() =>
      this.#db.transaction(() => {
        s.insertImage.run(row);
        for (const tag of tags) s.upsertTag.run(tag, image.digest);
      })(),
    );
  }

  async getImage(digest: string): Promise<ImageRecord | null> {
    const s = this.#stmts();
    const row = s.getImage.get(digest);
    return row === undefined ? null : { ...row, tags: s.tagsOfImage.all(digest) };
  }

  async findImagesByDigestPrefix(hexPrefix: string): Promise<ImageRecord[]> {
    const prefix = hexPrefix.toLowerCase();
    // Not hex: no digest can start with it (and it must never reach the range bounds).
    if (!HEX_PREFIX.test(prefix)) return [];
    const rows = this.#stmts().imagesInRange.all(`sha256:${prefix}`, `sha256:${prefix}${AFTER_HEX}`);
    return this.#withTags(rows);
  }

  async resolveTag(nameTag: string): Promise<string | null> {
    return (this.#stmts().resolveTag.get(nameTag)) ?? null;
  }

  async listImages(): Promise<ImageRecord[]> {
    return this.#withTags(this.#stmts().listImages.all());
  }

  async deleteImage(digest: string): Promise<boolean> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    return run(() =>
      this.#db.transaction(() => {
        const users = s.countAgentsUsingImage.get(digest) as number;
        if (users > 0) throw new SentinelError('conflict', `image is in use by ${users} agent(s)`);
        return s.deleteImage.run(digest).changes > 0;
      }).immediate(),
    );
  }

  async claimRepository(repository: RepositoryRecord): Promise<RepositoryRecord> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    return run(() =>
      this.#db.transaction(() => {
        s.claimRepository.run(repository);
        const stored = s.getRepository.get(repository.name);
        if (stored === undefined) throw new Error(`repository ${repository.name} vanished right after it was claimed`);
        return stored;
      }).immediate(),
    );
  }

  async getRepository(name: string): Promise<RepositoryRecord | null> {
    return this.#stmts().getRepository.get(name) ?? null;
  }

  async listRepositories(): Promise<RepositoryRecord[]> {
    return this.#stmts().listRepositories.all();
  }

  async updateRepository(name: string, patch: Partial<Pick<RepositoryRecord, 'visibility'>>): Promise<RepositoryRecord | null> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    return run(() => s.updateRepository.get({ name, visibility: patch.visibility ?? null })) ?? null;
  }

  /**
   * Lines are stored under `agentId` whatever their own `agent_id` says. Timestamps are
   * stored in canonical `toISOString()` form because `since` compares them as text.
   */
  async appendLogs(agentId: string, lines: NewLogRecord[]): Promise<LogRecord[]> {
    if (lines.length === 0) return [];
    const s = this.#stmts();
    const records = lines.map((line): Omit<LogRecord, 'seq'> => {
      const record: Omit<LogRecord, 'seq'> = { agent_id: agentId, timestamp: canonicalTimestamp(line.timestamp, 'log timestamp'), level: line.level, message: line.message };
      if (line.fields !== undefined) record.fields = line.fields;
      return record;
    });
    return this.#groupCommit.enqueue(() => {
      const known = this.#caches.nextSeqs.logs;
      let seq = known.get(agentId) ?? (s.nextLogSeq.get(agentId) as number);
      known.delete(agentId);
      const stored = records.map((record): LogRecord => {
        s.insertLog.run(agentId, seq, record.timestamp, record.level, record.message, record.fields === undefined ? null : JSON.stringify(record.fields));
        return { ...record, seq: seq++ };
      });
      this.#caches.rememberNextSeq(known, agentId, seq);
      return stored;
    }, records.length === 1);
  }

  async listLogs(agentId: string, query: LogQuery = {}): Promise<LogRecord[]> {
    const s = this.#stmts();
    const params = {
      agentId,
      afterSeq: query.afterSeq ?? 0,
      since: query.since === undefined ? '' : canonicalTimestamp(query.since, 'since'),
      minRank: query.level === undefined ? 0 : levelRank(query.level),
    };
    const rows = (
      query.tail === undefined ? s.listLogs.all(params) : s.listLogsTail.all({ ...params, tail: nonNegativeInteger(query.tail, 'tail') })
    );
    return rows.map(toLog);
  }

  /** Events are stored under `agentId` whatever their own `agent_id` says. */
  async appendEvents(agentId: string, events: NewEventRecord[]): Promise<EventRecord[]> {
    if (events.length === 0) return [];
    const s = this.#stmts();
    return this.#groupCommit.enqueue(() => {
      const known = this.#caches.nextSeqs.events;
      let seq = known.get(agentId) ?? (s.nextEventSeq.get({ agentId }) as number);
      known.delete(agentId);
      const stored = events.map((event): EventRecord => {
        const data = event.data ?? {};
        s.insertEvent.run(agentId, seq, event.event_type, event.timestamp, event.content, JSON.stringify(data));
        return { agent_id: agentId, seq: seq++, event_type: event.event_type, timestamp: event.timestamp, content: event.content, data };
      });
      this.#caches.rememberNextSeq(known, agentId, seq);
      return stored;
    }, events.length === 1);
  }

  async listEvents(agentId: string, afterSeq: number, limit: number = DEFAULT_EVENT_LIMIT): Promise<EventRecord[]> {
    const rows = this.#stmts().listEvents.all(agentId, afterSeq, nonNegativeInteger(limit, 'limit'));
    return rows.map(toEvent);
  }

  async firstEventSeq(agentId: string): Promise<number> {
    return this.#stmts().firstEventSeq.get(agentId) as number;
  }

  /** Appends still waiting for their group commit are not counted: they have no seq yet. */
  async lastEventSeq(agentId: string): Promise<number> {
    return (this.#stmts().nextEventSeq.get({ agentId }) as number) - 1;
  }

  /**
   * Deletes the oldest events so that at most `keepLast` remain. The numbering goes on from
   * where it was even when every event went (the high-water mark is kept).
   */
  async pruneEvents(agentId: string, keepLast: number): Promise<number> {
    const keep = nonNegativeInteger(keepLast, 'keepLast');
    const s = this.#stmts();
    this.#groupCommit.flush();
    return run(() =>
      this.#db.transaction(() => {
        const through = (s.lastEventSeq.get(agentId) as number) - keep;
        if (through <= 0) return 0;
        const deleted = s.deleteEventsThrough.run(agentId, through).changes;
        if (deleted > 0) s.markEventsPruned.run(agentId, through);
        return deleted;
      }).immediate(),
    );
  }

  /** Messages are stored under `agentId` whatever their own `agent_id` says. */
  async appendMessages(agentId: string, messages: NewMessageRecord[]): Promise<MessageRecord[]> {
    if (messages.length === 0) return [];
    const s = this.#stmts();
    return this.#groupCommit.enqueue(() => {
      const known = this.#caches.nextSeqs.messages;
      let seq = known.get(agentId) ?? (s.nextMessageSeq.get(agentId) as number);
      known.delete(agentId);
      const rows = messages.map((message) => {
        const row = toMessageParams(agentId, seq++, message);
        s.insertMessage.run(row.agent_id, row.seq, row.role, row.content, row.tool_calls, row.tool_call_id, row.tool_name, row.message_id, row.created_at);
        return row;
      });
      this.#caches.rememberNextSeq(known, agentId, seq);
      // Inside the commit (see read-caches.ts); the cache keeps its own frozen copies.
      this.#caches.extendConversation(agentId, rows.map((row) => deepFreeze(toMessage(row))));
      return rows.map(toMessage);
    }, messages.length === 1);
  }

  /** Oldest first. The records are frozen and may be shared between calls (see read-caches.ts). */
  async listMessages(agentId: string, options: { limit?: number } = {}): Promise<MessageRecord[]> {
    const s = this.#stmts();
    const limit = options.limit === undefined ? undefined : nonNegativeInteger(options.limit, 'limit');
    this.#checkCaches(s);
    const cached = this.#caches.recentMessages(agentId, limit);
    if (cached !== undefined) return cached;
    const rows = limit === undefined ? s.listMessages.all(agentId) : s.listMessagesTail.all(agentId, limit);
    const messages = rows.map((row) => deepFreeze(toMessage(row)));
    // Fewer rows than asked for: that is the whole conversation.
    this.#caches.putConversation(agentId, messages, limit === undefined || rows.length < limit);
    return messages;
  }

  async conversationStats(agentId: string): Promise<{ messages: number; bytes: number }> {
    const row = this.#stmts().conversationStats.get(agentId);
    return { messages: row?.messages ?? 0, bytes: row?.bytes ?? 0 };
  }

  /**
   * Group-committed (one read and one or two writes in the group's IMMEDIATE transaction,
   * which holds the write lock, so the key check and the insert are atomic across processes):
   * every chat turn creates a run, and a COMMIT per turn is what the group commit exists to
   * avoid (group-commit.ts has the figures).
   */
  async createRun(record: NewRunRecord, options: CreateRunOptions): Promise<CreateRunResult> {
    const s = this.#stmts();
    const params = toRunParams(record);
    const cutoff = idempotencyCutoff(options);
    const key = record.idempotency_key;
    return this.#groupCommit.enqueue((): CreateRunResult => {
      if (key !== null) {
        const holder = s.getRunByKey.get(record.agent_id, key);
        if (holder !== undefined) {
          if (holder.created_at > cutoff) return { created: false, run: toRun(holder), requestHash: holder.request_hash };
          s.clearRunKey.run(holder.id);
        }
      }
      const row = run(() => s.insertRun.get(...params), {
        conflict: () => `run "${record.id}" already exists`,
        foreignKey: () => `unknown agent "${record.agent_id}"`,
      });
      if (row === undefined) throw new Error('INSERT ... RETURNING returned no run');
      return { created: true, run: toRun(row) };
    }, false);
  }

  async getRun(id: string): Promise<RunRecord | null> {
    const row = this.#stmts().getRun.get(id);
    return row === undefined ? null : toRun(row);
  }

  async listRuns(agentId: string, query: RunQuery): Promise<RunRecord[]> {
    const rows = this.#stmts().listRuns.all({ agentId, status: query.status ?? null, before: query.before ?? null, limit: runsLimit(query.limit) });
    return rows.map(toRun);
  }

  async updateRun(id: string, patch: RunPatch, options: UpdateRunOptions = {}): Promise<RunRecord | null> {
    const s = this.#stmts();
    const p = toRunPatchParams(patch);
    const flag = (value: boolean): 0 | 1 => (value ? 1 : 0);
    const params = {
      ...p,
      set_output: flag(p.set_output),
      set_error: flag(p.set_error),
      set_required_action: flag(p.set_required_action),
      set_started_at: flag(p.set_started_at),
      set_ended_at: flag(p.set_ended_at),
      set_instance_id: flag(p.set_instance_id),
      id,
      from: options.fromStatus === undefined ? null : JSON.stringify(options.fromStatus),
      // The same serializer wrote the stored text, and JSON.parse keeps key order: equal actions are equal text.
      expect_action: options.ifRequiredAction === undefined ? null : toRunPatchParams({ required_action: options.ifRequiredAction }).required_action,
    };
    return this.#groupCommit.enqueue(() => {
      const row = s.updateRun.get(params);
      return row === undefined ? null : toRun(row);
    }, true);
  }

  async appendRunFrames(runId: string, frames: RunFrameRow[]): Promise<void> {
    if (frames.length === 0) return;
    const s = this.#stmts();
    const { highest, batches } = runFrameBatches(frames, runId);
    await this.#groupCommit.enqueue(() => {
      // The checks first: a conflict must leave nothing of the batch behind (the group's other work commits).
      for (const batch of batches) {
        if (s.runFramesOverlap.get(runId, batch.first, batch.last) !== undefined) {
          throw new SentinelError('conflict', `a frame of run "${runId}" in ${batch.first}..${batch.last} is journaled already`);
        }
      }
      // Also the existence check: a run deleted with its agent takes no more frames.
      if (s.raiseRunLastSeq.run(highest, runId).changes === 0) return;
      for (const batch of batches) {
        run(() => s.insertRunFrames.run(runId, batch.first, batch.last, batch.body), { conflict: () => `frame ${batch.last} of run "${runId}" is journaled already` });
      }
    }, false);
  }

  async listRunFrames(runId: string, afterSeq: number, limit: number = DEFAULT_RUN_FRAME_LIMIT): Promise<RunFrameRow[]> {
    const after = nonNegativeInteger(afterSeq, 'afterSeq');
    const max = nonNegativeInteger(limit, 'limit');
    const frames: RunFrameRow[] = [];
    if (max === 0) return frames;
    for (const row of this.#stmts().listRunFrames.all(runId, after, max)) {
      if (!splitRunFrameBatch(row.first_seq, row.body, after, max, frames)) break;
    }
    return frames;
  }

  async findRuns(query: RunSearch): Promise<RunRecord[]> {
    const rows = this.#stmts().findRuns.all({
      statuses: JSON.stringify(query.status),
      agentId: query.agentId ?? null,
      instanceId: query.instanceId ?? null,
      expiresBefore: query.expiresBefore === undefined ? null : canonicalTimestamp(query.expiresBefore, 'expiresBefore'),
      limit: runsLimit(query.limit ?? FIND_RUNS_LIMIT),
    });
    return rows.map(toRun);
  }

  async pruneRunFrames(endedBefore: string): Promise<number> {
    const s = this.#stmts();
    const before = canonicalTimestamp(endedBefore, 'endedBefore');
    this.#groupCommit.flush();
    return run(() => s.pruneRunFrames.all(before).reduce((sum, frames) => sum + frames, 0));
  }

  /**
   * Group-committed like the appends of a turn: the audit log batches its entries already, and
   * a login costs no commit of its own. Seq is the rowid, so commit order is seq order.
   */
  async appendAudit(entries: NewAuditEntry[]): Promise<AuditEntry[]> {
    if (entries.length === 0) return [];
    const s = this.#stmts();
    const rows = entries.map((entry) => toAuditParams({ ...entry, at: canonicalTimestamp(entry.at, 'audit timestamp') }));
    return this.#groupCommit.enqueue(
      () =>
        rows.map((row): AuditEntry => {
          const seq = Number(s.insertAudit.run(row).lastInsertRowid);
          return toAudit({ ...row, seq });
        }),
      rows.length === 1,
    );
  }

  async listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const s = this.#stmts();
    const { since, actor, action, limit } = auditQueryArguments(query);
    let rows;
    if (actor !== null && action !== null) rows = s.listAuditByBoth.all({ since, actor, action, limit });
    else if (actor !== null) rows = s.listAuditByActor.all({ since, actor, limit });
    else if (action !== null) rows = s.listAuditByAction.all({ since, action, limit });
    else rows = s.listAudit.all({ since, limit });
    return rows.map(toAudit);
  }

  async addRevokedToken(record: RevokedTokenRecord): Promise<void> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    s.addRevokedToken.run(record.jti, record.username, record.expires_at_ms);
  }

  async listRevokedTokens(nowMs: number): Promise<RevokedTokenRecord[]> {
    return this.#stmts().listRevokedTokens.all(nowMs).map((row) => ({ jti: row.jti, username: row.username, expires_at_ms: Number(row.expires_at_ms) }));
  }

  async pruneRevokedTokens(nowMs: number): Promise<number> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    return s.pruneRevokedTokens.run(nowMs).changes;
  }

  async getMeta(key: string): Promise<string | null> {
    return (this.#stmts().getMeta.get(key)) ?? null;
  }

  async setMeta(key: string, value: string): Promise<void> {
    const s = this.#stmts();
    this.#groupCommit.flush();
    s.setMeta.run(key, value);
  }

  async createApiKey(key: ApiKeyRecord): Promise<void> {
    const keys = this.#keys();
    this.#groupCommit.flush();
    keys.create(key);
  }

  async getApiKeyByHash(hash: string): Promise<ApiKeyRecord | null> {
    return this.#keys().byHash(hash);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    return this.#keys().byId(id);
  }

  async listApiKeys(userId: string): Promise<ApiKeyRecord[]> {
    return this.#keys().list(userId);
  }

  async countActiveApiKeys(userId: string, now: string): Promise<number> {
    return this.#keys().countActive(userId, now);
  }

  async revokeApiKey(id: string, revokedAt: string): Promise<boolean> {
    const keys = this.#keys();
    this.#groupCommit.flush();
    return keys.revoke(id, revokedAt);
  }

  async touchApiKeys(uses: readonly ApiKeyUse[]): Promise<void> {
    const keys = this.#keys();
    this.#groupCommit.flush();
    keys.touch(uses);
  }

  async getWebhookSecret(username: string): Promise<string | null> {
    return this.#hooks().getSecret(username);
  }

  async ensureWebhookSecret(username: string, candidate: string, now: string): Promise<string> {
    const hooks = this.#hooks();
    this.#groupCommit.flush();
    return hooks.ensureSecret(username, candidate, now);
  }

  async setWebhookSecret(username: string, secret: string, now: string): Promise<void> {
    const hooks = this.#hooks();
    this.#groupCommit.flush();
    hooks.setSecret(username, secret, now);
  }

  async setAgentWebhook(agentId: string, url: string | null): Promise<void> {
    const hooks = this.#hooks();
    this.#groupCommit.flush();
    hooks.setAgentWebhook(agentId, url);
  }

  async getAgentWebhook(agentId: string): Promise<string | null> {
    return this.#hooks().getAgentWebhook(agentId);
  }

  async createWebhookDelivery(delivery: NewWebhookDelivery): Promise<void> {
    const hooks = this.#hooks();
    this.#groupCommit.flush();
    hooks.createDelivery(delivery);
  }

  async claimWebhookDeliveries(claim: WebhookClaim): Promise<WebhookDeliveryRecord[]> {
    const hooks = this.#hooks();
    this.#groupCommit.flush();
    return hooks.claim(claim);
  }

  async recordWebhookAttempt(deliveryId: string, claimant: string, attempt: WebhookAttemptRecord, outcome: WebhookAttemptOutcome): Promise<boolean> {
    const hooks = this.#hooks();
    this.#groupCommit.flush();
    return hooks.recordAttempt(deliveryId, claimant, attempt, outcome);
  }

  async listWebhookDeliveries(runId: string): Promise<WebhookDeliveryWithAttempts[]> {
    return this.#hooks().listOfRun(runId);
  }

  #hooks(): SqliteWebhooks {
    this.#stmts();
    if (this.#webhooks === undefined) throw new SentinelError('unavailable', 'the store is not migrated yet; call migrate() first');
    return this.#webhooks;
  }

  #keys(): SqliteApiKeys {
    this.#stmts();
    if (this.#apiKeys === undefined) throw new SentinelError('unavailable', 'the store is not migrated yet; call migrate() first');
    return this.#apiKeys;
  }

  /** Empties the read caches when another connection committed since they were filled. */
  #checkCaches(s: Statements): void {
    this.#caches.check(s.dataVersion.get() as number);
  }

  #open(): SqliteDatabase {
    if (this.#closed) throw new SentinelError('unavailable', 'the store is closed');
    return this.#db;
  }

  #stmts(): Statements {
    this.#open();
    if (this.#statements === undefined) throw new SentinelError('unavailable', 'the store is not migrated yet; call migrate() first');
    return this.#statements;
  }

  /** Fills `tags` for many images with one query instead of one per image. */
  #withTags(rows: ImageRow[]): ImageRecord[] {
    if (rows.length === 0) return [];
    const s = this.#stmts();
    if (rows.length === 1) {
      const row = rows[0] as ImageRow;
      return [{ ...row, tags: s.tagsOfImage.all(row.digest) }];
    }
    const tagsByDigest = new Map<string, string[]>();
    for (const { name_tag, digest } of s.allTags.all()) {
      const list = tagsByDigest.get(digest);
      if (list === undefined) tagsByDigest.set(digest, [name_tag]);
      else list.push(name_tag);
    }
    return rows.map((row) => ({ ...row, tags: tagsByDigest.get(row.digest) ?? [] }));
  }
}

/**
 * Opens (creating) the SQLite file at `options.path`, sets WAL and the other pragmas and
 * applies pending migrations. Default `busyTimeoutMs` 5000. Any failure (missing directory,
 * no permission, not a database, schema newer than this code) rejects with one
 * SentinelError `unavailable`: `cannot open database <path>: <reason>`.
 */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  let store: SqliteStore | undefined;
  try {
    store = new SqliteStore(options);
    await store.migrate();
    return store;
  } catch (err) {
    await store?.close();
    throw new SentinelError('unavailable', `cannot open database ${options.path}: ${openFailureReason(err)}`, { cause: err });
  }
}

/** Creates the file owner-only before SQLite does (SQLite gives its -wal/-shm files the same mode). */
function createPrivateFile(path: string): void {
  try {
    writeFileSync(path, '', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

function levelRank(level: LogLevel): number {
  const rank = LEVEL_RANK[level];
  if (rank === undefined) throw new SentinelError('invalid_request', `unknown log level "${String(level)}"`);
  return rank;
}
