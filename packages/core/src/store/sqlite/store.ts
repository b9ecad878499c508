/**
 * The embedded Store: one SQLite file through better-sqlite3 (docs/ARCHITECTURE.md#storage). better-sqlite3 is
 * synchronous; each method is an async wrapper so this back end and PostgreSQL share the
 * `Store` interface. Because a call runs to completion on the one JS thread, a single process
 * never interleaves two transactions; across processes, read-then-write transactions take
 * the write lock up front (`immediate`) so they queue on busy_timeout instead of deadlocking.
 *
 * Group commit: the writes every turn and every new agent make (events, log lines, messages,
 * usage, agent rows and status) are queued and committed together once per turn of the event
 * loop, each in its own savepoint (a failing write rolls back alone), and each caller's
 * promise settles only after the COMMIT. A WAL commit costs far more than an insert (measured
 * here: ≈ 15k single-row commits/s against ≈ 90k rows/s in 1,000-row transactions), so
 * concurrent turns of many agents share one. Every other write first commits what is queued,
 * so writes still land in call order.
 */
import { writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement, Transaction } from 'better-sqlite3';
import { SentinelError, isSentinelError } from '../../contract/errors.js';
import type { LogLevel } from '../../contract/logger.js';
import { parseRfc3339 } from '../../contract/timestamp.js';
import type {
  AgentRecord,
  AgentStatus,
  EventRecord,
  ImageRecord,
  LogRecord,
  MessageRecord,
  MessageRole,
  NewEventRecord,
  NewLogRecord,
  NewMessageRecord,
  NewUserRecord,
  RepositoryRecord,
  Role,
  ToolCallRecord,
  UserRecord,
} from '../../contract/models.js';
import { STORE_REFUSED_MESSAGE, type AgentPatch, type AgentQuery, type LogQuery, type Store, type UserPatch } from '../types.js';
import { newUserId } from '../user-id.js';
import { SQLITE_MIGRATIONS_TABLE_SQL, sqliteMigrations } from './migrations.js';

export interface SqliteStoreOptions {
  /** Database file, created when missing (mode 0600: it holds password hashes). `:memory:` works for throwaway stores. */
  path: string;
  /** How long a write waits for another process's lock before failing `unavailable`. Default 5000 ms. */
  busyTimeoutMs?: number;
}

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  role: Role;
  can_push: number;
  token_version: number;
  created_at: string;
  updated_at: string;
}

interface AgentRow {
  id: string;
  name: string;
  owner: string;
  image: string;
  image_id: string;
  status: AgentStatus;
  model: string;
  parameters: string;
  environment: string;
  usage_requests: number;
  usage_tokens: number;
  created_at: string;
  updated_at: string;
}

type ImageRow = Omit<ImageRecord, 'tags'>;

interface LogRow {
  agent_id: string;
  seq: number;
  timestamp: string;
  level: LogLevel;
  message: string;
  fields: string | null;
}

interface EventRow {
  agent_id: string;
  seq: number;
  event_type: string;
  timestamp: string;
  content: string;
  data: string;
}

interface MessageRow {
  agent_id: string;
  seq: number;
  role: MessageRole;
  content: string;
  tool_calls: string | null;
  tool_call_id: string | null;
  tool_name: string | null;
  message_id: string | null;
  created_at: string;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const DEFAULT_EVENT_LIMIT = 1000;
/** Key of the every-agent list in the agent-list cache (owners are user names, never empty). */
const ALL_AGENTS = '';
/** Owners whose agent lists are cached at once. */
const AGENT_LIST_CACHE_SIZE = 1024;
/** Agents whose next log, event and message seq numbers are known at once. */
const NEXT_SEQ_CACHE_AGENTS = 4096;
/** Agent records cached by id at once. */
const AGENT_CACHE_SIZE = 4096;
/** Agents whose recent conversation is cached at once. */
const CONVERSATION_CACHE_AGENTS = 256;
/** Newest messages kept per cached conversation (the runtime reads 100 by default). */
const CONVERSATION_CACHE_MESSAGES = 200;
/** Characters of content kept per cached conversation, at most. */
const CONVERSATION_CACHE_CHARS = 256 * 1024;
const HEX_PREFIX = /^[0-9a-f]*$/;
/** Default and largest `limit` of findAgents. */
const FIND_AGENTS_LIMIT = 100;
/** Sorts after every hex digit, so `[sha256:<prefix>, sha256:<prefix>g)` is exactly the prefix range. */
const AFTER_HEX = 'g';

const USER_COLUMNS = 'id, username, password_hash, role, can_push, token_version, created_at, updated_at';
const AGENT_COLUMNS = 'id, name, owner, image, image_id, status, model, parameters, environment, usage_requests, usage_tokens, created_at, updated_at';
const IMAGE_COLUMNS = 'digest, manifest, config, config_digest, size, created_at';
const REPOSITORY_COLUMNS = 'name, owner, visibility, created_at';
const LOG_COLUMNS = 'agent_id, seq, timestamp, level, message, fields';
const EVENT_COLUMNS = 'agent_id, seq, event_type, timestamp, content, data';
const MESSAGE_COLUMNS = 'agent_id, seq, role, content, tool_calls, tool_call_id, tool_name, message_id, created_at';
const LEVEL_RANK_SQL = `(CASE level WHEN 'debug' THEN 0 WHEN 'info' THEN 1 WHEN 'warn' THEN 2 ELSE 3 END)`;
const LOG_FILTER_SQL = `agent_id = @agentId AND seq > @afterSeq AND timestamp >= @since AND ${LEVEL_RANK_SQL} >= @minRank`;

interface UserParams extends Omit<UserRow, 'can_push'> {
  can_push: 0 | 1;
}

interface UserPatchParams {
  username: string;
  password_hash: string | null;
  role: Role | null;
  can_push: 0 | 1 | null;
  updated_at: string | null;
  bump: 0 | 1;
}

interface LogFilterParams {
  agentId: string;
  afterSeq: number;
  since: string;
  minRank: number;
}

/** Every statement, prepared once after migrate(): preparing per call costs more than most queries. */
function prepareStatements(db: SqliteDatabase) {
  return {
    ping: db.prepare<[], unknown>('SELECT 1'),
    insertUser: db.prepare<UserParams>(`INSERT INTO users (${USER_COLUMNS}) VALUES (@id, @username, @password_hash, @role, @can_push, @token_version, @created_at, @updated_at)`),
    getUser: db.prepare<[string], UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE username = ?`),
    listUsers: db.prepare<[], UserRow>(`SELECT ${USER_COLUMNS} FROM users ORDER BY username`),
    countUsers: db.prepare<[], number>('SELECT COUNT(*) FROM users').pluck(),
    updateUser: db.prepare<UserPatchParams>(`UPDATE users SET
        password_hash = COALESCE(@password_hash, password_hash),
        role = COALESCE(@role, role),
        can_push = COALESCE(@can_push, can_push),
        updated_at = COALESCE(@updated_at, updated_at),
        token_version = token_version + @bump
      WHERE username = @username`),
    deleteAgentsOfOwner: db.prepare<[string]>('DELETE FROM agents WHERE owner = ?'),
    deleteUser: db.prepare<[string]>('DELETE FROM users WHERE username = ?'),
    userExists: db.prepare<[string], 1>('SELECT 1 FROM users WHERE username = ?').pluck(),

    insertAgent: db.prepare<AgentRow>(`INSERT INTO agents (${AGENT_COLUMNS}) VALUES (@id, @name, @owner, @image, @image_id, @status, @model,
        @parameters, @environment, @usage_requests, @usage_tokens, @created_at, @updated_at)`),
    getAgent: db.prepare<[string], AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents WHERE id = ?`),
    // rowid breaks ties between agents created in the same millisecond: later insert first.
    listAgents: db.prepare<[], AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents ORDER BY created_at DESC, rowid DESC`),
    listAgentsOfOwner: db.prepare<[string], AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents WHERE owner = ? ORDER BY created_at DESC, rowid DESC`),
    updateAgent: db.prepare<{ id: string; status: AgentStatus | null; name: string | null; updated_at: string | null }, AgentRow>(`UPDATE agents SET
        status = COALESCE(@status, status),
        name = COALESCE(@name, name),
        updated_at = COALESCE(@updated_at, updated_at)
      WHERE id = @id RETURNING ${AGENT_COLUMNS}`),
    // One UPDATE reading and writing the counters: concurrent callers cannot lose an increment.
    addAgentUsage: db.prepare<{ id: string; requests: number; tokens: number; updated_at: string }, AgentRow>(`UPDATE agents SET
        usage_requests = usage_requests + @requests,
        usage_tokens = usage_tokens + @tokens,
        updated_at = @updated_at
      WHERE id = @id RETURNING ${AGENT_COLUMNS}`),
    deleteAgent: db.prepare<[string]>('DELETE FROM agents WHERE id = ?'),
    countAgentsUsingImage: db.prepare<[string], number>('SELECT COUNT(*) FROM agents WHERE image_id = ?').pluck(),

    insertImage: db.prepare<ImageRow>(`INSERT INTO images (${IMAGE_COLUMNS}) VALUES (@digest, @manifest, @config, @config_digest, @size, @created_at)
      ON CONFLICT (digest) DO NOTHING`),
    upsertTag: db.prepare<[string, string]>(`INSERT INTO image_tags (name_tag, digest) VALUES (?, ?)
      ON CONFLICT (name_tag) DO UPDATE SET digest = excluded.digest`),
    getImage: db.prepare<[string], ImageRow>(`SELECT ${IMAGE_COLUMNS} FROM images WHERE digest = ?`),
    tagsOfImage: db.prepare<[string], string>('SELECT name_tag FROM image_tags WHERE digest = ? ORDER BY name_tag').pluck(),
    allTags: db.prepare<[], { name_tag: string; digest: string }>('SELECT name_tag, digest FROM image_tags ORDER BY name_tag'),
    imagesInRange: db.prepare<[string, string], ImageRow>(`SELECT ${IMAGE_COLUMNS} FROM images WHERE digest >= ? AND digest < ? ORDER BY created_at DESC, rowid DESC`),
    resolveTag: db.prepare<[string], string>('SELECT digest FROM image_tags WHERE name_tag = ?').pluck(),
    listImages: db.prepare<[], ImageRow>(`SELECT ${IMAGE_COLUMNS} FROM images ORDER BY created_at DESC, rowid DESC`),
    deleteImage: db.prepare<[string]>('DELETE FROM images WHERE digest = ?'),

    // DO NOTHING, then read back: the first creator keeps the repository.
    claimRepository: db.prepare<RepositoryRecord>(`INSERT INTO repositories (${REPOSITORY_COLUMNS}) VALUES (@name, @owner, @visibility, @created_at)
      ON CONFLICT (name) DO NOTHING`),
    getRepository: db.prepare<[string], RepositoryRecord>(`SELECT ${REPOSITORY_COLUMNS} FROM repositories WHERE name = ?`),
    listRepositories: db.prepare<[], RepositoryRecord>(`SELECT ${REPOSITORY_COLUMNS} FROM repositories ORDER BY name`),
    updateRepository: db.prepare<{ name: string; visibility: string | null }, RepositoryRecord>(`UPDATE repositories SET
        visibility = COALESCE(@visibility, visibility)
      WHERE name = @name RETURNING ${REPOSITORY_COLUMNS}`),

    nextLogSeq: db.prepare<[string], number>('SELECT COALESCE(MAX(seq), 0) + 1 FROM agent_logs WHERE agent_id = ?').pluck(),
    insertLog: db.prepare<[string, number, string, LogLevel, string, string | null]>(`INSERT INTO agent_logs (${LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    listLogs: db.prepare<LogFilterParams, LogRow>(`SELECT ${LOG_COLUMNS} FROM agent_logs WHERE ${LOG_FILTER_SQL} ORDER BY seq`),
    // The newest `tail` matching lines, turned back to oldest first.
    listLogsTail: db.prepare<LogFilterParams & { tail: number }, LogRow>(`SELECT * FROM (
        SELECT ${LOG_COLUMNS} FROM agent_logs WHERE ${LOG_FILTER_SQL} ORDER BY seq DESC LIMIT @tail
      ) ORDER BY seq`),

    // Past the highest seq retention ever deleted too: a seq is a client's cursor, never reused.
    nextEventSeq: db.prepare<{ agentId: string }, number>(`SELECT MAX(
        COALESCE((SELECT MAX(seq) FROM agent_events WHERE agent_id = @agentId), 0),
        COALESCE((SELECT last_pruned_seq FROM agent_event_marks WHERE agent_id = @agentId), 0)
      ) + 1`).pluck(),
    insertEvent: db.prepare<[string, number, string, string, string, string]>(`INSERT INTO agent_events (${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    listEvents: db.prepare<[string, number, number], EventRow>(`SELECT ${EVENT_COLUMNS} FROM agent_events WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
    firstEventSeq: db.prepare<[string], number>('SELECT COALESCE(MIN(seq), 0) FROM agent_events WHERE agent_id = ?').pluck(),
    lastEventSeq: db.prepare<[string], number>('SELECT COALESCE(MAX(seq), 0) FROM agent_events WHERE agent_id = ?').pluck(),
    deleteEventsThrough: db.prepare<[string, number]>('DELETE FROM agent_events WHERE agent_id = ? AND seq <= ?'),
    markEventsPruned: db.prepare<[string, number]>(`INSERT INTO agent_event_marks (agent_id, last_pruned_seq) VALUES (?, ?)
      ON CONFLICT (agent_id) DO UPDATE SET last_pruned_seq = MAX(last_pruned_seq, excluded.last_pruned_seq)`),

    nextMessageSeq: db.prepare<[string], number>('SELECT COALESCE(MAX(seq), 0) + 1 FROM agent_messages WHERE agent_id = ?').pluck(),
    insertMessage: db.prepare<MessageRow>(`INSERT INTO agent_messages (${MESSAGE_COLUMNS})
      VALUES (@agent_id, @seq, @role, @content, @tool_calls, @tool_call_id, @tool_name, @message_id, @created_at)`),
    listMessages: db.prepare<[string], MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM agent_messages WHERE agent_id = ? ORDER BY seq`),
    // The newest `limit` messages, turned back to oldest first.
    listMessagesTail: db.prepare<[string, number], MessageRow>(`SELECT * FROM (
        SELECT ${MESSAGE_COLUMNS} FROM agent_messages WHERE agent_id = ? ORDER BY seq DESC LIMIT ?
      ) ORDER BY seq`),
    // Bytes, not characters: length() of TEXT counts characters, of a BLOB its UTF-8 bytes.
    conversationStats: db.prepare<[string], { messages: number; bytes: number }>(`SELECT COUNT(*) AS messages,
        COALESCE(SUM(length(CAST(content AS BLOB))), 0) AS bytes FROM agent_messages WHERE agent_id = ?`),

    getMeta: db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck(),
    // Changes when another connection (another process) commits; our own commits leave it alone.
    dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
    setMeta: db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/** The newest messages of one agent, oldest first; `complete` when they are all it has. */
interface CachedConversation {
  messages: MessageRecord[];
  chars: number;
  complete: boolean;
}

type WriteOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A write waiting for the group commit, with the promise its caller awaits. */
interface QueuedWrite {
  write: () => unknown;
  /** No savepoint needed (see #groupCommitted). */
  singleStatement: boolean;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

/** Records `next` as the agent's next seq (bounded: past the bound an arbitrary old entry goes, a miss only costs the query). */
function rememberNextSeq(known: Map<string, number>, agentId: string, next: number): void {
  if (known.size >= NEXT_SEQ_CACHE_AGENTS) known.delete(known.keys().next().value as string);
  known.set(agentId, next);
}

/** The SQLite back end of {@link Store}. Build it with {@link openSqliteStore}. */
export class SqliteStore implements Store {
  readonly #path: string;
  readonly #db: SqliteDatabase;
  #statements: Statements | undefined;
  /** findAgents statements by WHERE clause (see there). */
  readonly #findAgentStatements = new Map<string, Statement<Record<string, string | number>, AgentRow>>();
  #closed = false;
  /** Appends waiting for the group commit (see the file comment). */
  #queuedWrites: QueuedWrite[] = [];
  #commitScheduled = false;
  /**
   * Agent lists by owner (ALL_AGENTS: every agent), as last read. Listing agents is what
   * dashboards poll, and the query is most of a list request's cost (≈ 40% of the bare node:http
   * baseline's CPU for 50 agents, measured here). Valid while nothing changed the agents table:
   * our own writes to it clear the cache, and `PRAGMA data_version` tells us another process
   * committed (see #agentListsSnapshot).
   */
  readonly #agentLists = new Map<string, readonly AgentRecord[]>();
  /**
   * Agent records by id, frozen, as last read or written: every chat turn reads its agent
   * (status, image, parameters) before it starts (≈ 2% of a turn's CPU as a query). Kept exact
   * like #agentLists: our own writes to an agent replace or drop its entry inside their commit,
   * anything else (another process, a failed commit, a user's deletion) empties the cache.
   */
  readonly #agents = new Map<string, AgentRecord>();
  /**
   * The next seq of each agent's logs, events and messages, as our own appends left them. A
   * turn appends six rows, five of which asked SQLite for MAX(seq) first. Only used inside the
   * group commit's transaction, after its data_version check (so no other connection can have
   * appended since); set after a write succeeded, dropped with the agent, emptied with the
   * other caches (another process's commit, a failed COMMIT).
   */
  readonly #nextSeqs = { logs: new Map<string, number>(), events: new Map<string, number>(), messages: new Map<string, number>() };
  /**
   * The newest messages of recently active agents. Every turn reads the agent's history (up to
   * 100 messages by default) and appends to it; reading it back from SQLite was the largest
   * single cost of a chat turn here (≈ 20% of the server's CPU under 100 chatting sockets).
   * Our own appends extend an entry inside their commit; anything else that changes messages
   * (a delete, another process) drops it. Bounded per agent and in agents (see the constants).
   */
  readonly #conversations = new Map<string, CachedConversation>();
  /** `PRAGMA data_version` when the caches above were last known valid. */
  #cachesDataVersion = -1;
  /** The group commit's transaction function, made once (better-sqlite3 builds several wrappers per call). */
  #groupTransaction: Transaction<(queued: readonly QueuedWrite[], outcomes: WriteOutcome[]) => void> | undefined;

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
  }

  async ping(): Promise<void> {
    this.#stmts().ping.get();
  }

  /** Closes the file. Safe to call more than once; every later call rejects `unavailable`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // What callers were promised is committed (or rejected) before the file goes.
    this.#commitQueued();
    this.#closed = true;
    this.#statements = undefined;
    this.#findAgentStatements.clear();
    this.#db.close();
  }

  async createUser(user: NewUserRecord): Promise<void> {
    const s = this.#stmts();
    this.#commitQueued();
    const row = { ...user, id: user.id ?? newUserId(), token_version: user.token_version ?? 0, can_push: user.can_push ? (1 as const) : (0 as const) };
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
    this.#commitQueued();
    const result = run(() =>
      s.updateUser.run({
        username,
        password_hash: patch.password_hash ?? null,
        role: patch.role ?? null,
        can_push: patch.can_push === undefined ? null : patch.can_push ? 1 : 0,
        updated_at: patch.updated_at ?? null,
        bump: patch.bump_token_version === true ? 1 : 0,
      }),
    );
    return result.changes > 0;
  }

  async deleteUser(username: string): Promise<boolean> {
    const s = this.#stmts();
    this.#commitQueued();
    this.#clearCaches();
    // Agents go first, explicitly: their delete trigger removes logs and events, and the
    // result does not depend on foreign_keys being on.
    return this.#db.transaction(() => {
      s.deleteAgentsOfOwner.run(username);
      return s.deleteUser.run(username).changes > 0;
    })();
  }

  async createAgent(agent: AgentRecord): Promise<void> {
    const s = this.#stmts();
    const row = { ...agent, parameters: JSON.stringify(agent.parameters ?? {}), environment: JSON.stringify(agent.environment ?? {}) };
    // Group-committed like the appends: creating an agent journals right after (see AgentService).
    await this.#groupCommitted(() => {
      this.#agentLists.clear();
      run(() => s.insertAgent.run(row), {
        conflict: (message) =>
          message.includes('agents.owner') ? `agent named "${agent.name}" already exists for user "${agent.owner}"` : `agent "${agent.id}" already exists`,
        // SQLite does not say which key failed; look it up, only on this rare path.
        foreignKey: () =>
          s.userExists.get(agent.owner) === undefined ? `unknown owner "${agent.owner}"` : `unknown image ${agent.image_id}`,
      });
    }, true);
  }

  /** The record is frozen and may be shared between calls (see #agents). */
  async getAgent(id: string): Promise<AgentRecord | null> {
    const s = this.#stmts();
    this.#checkCaches(s);
    const cached = this.#agents.get(id);
    if (cached !== undefined) return cached;
    const row = s.getAgent.get(id);
    if (row === undefined) return null;
    return this.#cacheAgent(id, row);
  }

  /** Newest first. The records are frozen and may be shared between calls (see #agentLists). */
  async listAgents(filter: { owner?: string } = {}): Promise<AgentRecord[]> {
    const s = this.#stmts();
    this.#checkCaches(s);
    const lists = this.#agentLists;
    const key = filter.owner ?? ALL_AGENTS;
    let records = lists.get(key);
    if (records === undefined) {
      const rows = filter.owner === undefined ? s.listAgents.all() : s.listAgentsOfOwner.all(filter.owner);
      records = rows.map((row) => deepFreeze(toAgent(row)));
      // Bounded: past the bound the oldest list is dropped (a miss only costs the query).
      if (lists.size >= AGENT_LIST_CACHE_SIZE) lists.delete(lists.keys().next().value as string);
      lists.set(key, records);
    }
    return records.slice();
  }

  async updateAgent(id: string, patch: AgentPatch): Promise<AgentRecord | null> {
    const s = this.#stmts();
    const params = { id, status: patch.status ?? null, name: patch.name ?? null, updated_at: patch.updated_at ?? null };
    return this.#groupCommitted(() => {
      this.#agentLists.clear();
      this.#agents.delete(id);
      const row = run(() => s.updateAgent.get(params), { conflict: () => `an agent named "${patch.name ?? ''}" already exists for this owner` });
      // Inside the commit: the entry is what this transaction stored (a failed COMMIT empties the caches).
      return row === undefined ? null : this.#cacheAgent(id, row);
    }, true);
  }

  async addAgentUsage(id: string, requests: number, tokens: number, updatedAt: string): Promise<AgentRecord | null> {
    const s = this.#stmts();
    // Cleared inside the commit: a list read between queueing and committing must not be kept.
    return this.#groupCommitted(() => {
      this.#agentLists.clear();
      this.#agents.delete(id);
      const row = s.addAgentUsage.get({ id, requests, tokens, updated_at: updatedAt });
      return row === undefined ? null : this.#cacheAgent(id, row);
    }, true);
  }

  async deleteAgent(id: string): Promise<boolean> {
    const s = this.#stmts();
    this.#commitQueued();
    this.#agentLists.clear();
    this.#agents.delete(id);
    this.#conversations.delete(id);
    // The delete trigger removes the agent's rows (and prune marks): numbering would restart.
    this.#nextSeqs.logs.delete(id);
    this.#nextSeqs.events.delete(id);
    this.#nextSeqs.messages.delete(id);
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
      statement = this.#open().prepare<Record<string, string | number>, AgentRow>(
        `SELECT ${AGENT_COLUMNS} FROM agents ${where} ORDER BY created_at DESC, rowid DESC LIMIT @limit`,
      );
      this.#findAgentStatements.set(where, statement);
    }
    this.#stmts();
    return statement.all(params).map(toAgent);
  }

  async putImage(image: Omit<ImageRecord, 'tags'>, tags: string[]): Promise<void> {
    const s = this.#stmts();
    this.#commitQueued();
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
    this.#commitQueued();
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
    this.#commitQueued();
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
    this.#commitQueued();
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
    return this.#groupCommitted(() => {
      const known = this.#nextSeqs.logs;
      let seq = known.get(agentId) ?? (s.nextLogSeq.get(agentId) as number);
      known.delete(agentId);
      const stored = records.map((record): LogRecord => {
        s.insertLog.run(agentId, seq, record.timestamp, record.level, record.message, record.fields === undefined ? null : JSON.stringify(record.fields));
        return { ...record, seq: seq++ };
      });
      rememberNextSeq(known, agentId, seq);
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
    return this.#groupCommitted(() => {
      const known = this.#nextSeqs.events;
      let seq = known.get(agentId) ?? (s.nextEventSeq.get({ agentId }) as number);
      known.delete(agentId);
      const stored = events.map((event): EventRecord => {
        const data = event.data ?? {};
        s.insertEvent.run(agentId, seq, event.event_type, event.timestamp, event.content, JSON.stringify(data));
        return { agent_id: agentId, seq: seq++, event_type: event.event_type, timestamp: event.timestamp, content: event.content, data };
      });
      rememberNextSeq(known, agentId, seq);
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
    this.#commitQueued();
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
    return this.#groupCommitted(() => {
      const known = this.#nextSeqs.messages;
      let seq = known.get(agentId) ?? (s.nextMessageSeq.get(agentId) as number);
      known.delete(agentId);
      const rows = messages.map((message) => {
        const row = toMessageRow(agentId, seq++, message);
        s.insertMessage.run(row);
        return row;
      });
      rememberNextSeq(known, agentId, seq);
      // Inside the commit (see #conversations); the cache keeps its own frozen copies.
      this.#extendConversation(agentId, rows.map((row) => deepFreeze(toMessage(row))));
      return rows.map(toMessage);
    }, messages.length === 1);
  }

  /** Oldest first. The records are frozen and may be shared between calls (see #conversations). */
  async listMessages(agentId: string, options: { limit?: number } = {}): Promise<MessageRecord[]> {
    const s = this.#stmts();
    const limit = options.limit === undefined ? undefined : nonNegativeInteger(options.limit, 'limit');
    this.#checkCaches(s);
    const cached = this.#conversations.get(agentId);
    if (cached !== undefined && (cached.complete || (limit !== undefined && cached.messages.length >= limit))) {
      // Most recently used last, so the bound evicts the agent that chatted longest ago.
      this.#conversations.delete(agentId);
      this.#conversations.set(agentId, cached);
      const { messages } = cached;
      return limit === undefined || limit >= messages.length ? messages.slice() : messages.slice(messages.length - limit);
    }
    const rows = limit === undefined ? s.listMessages.all(agentId) : s.listMessagesTail.all(agentId, limit);
    const messages = rows.map((row) => deepFreeze(toMessage(row)));
    const chars = messages.reduce((sum, m) => sum + m.content.length, 0);
    if (messages.length <= CONVERSATION_CACHE_MESSAGES && chars <= CONVERSATION_CACHE_CHARS) {
      if (this.#conversations.size >= CONVERSATION_CACHE_AGENTS) this.#conversations.delete(this.#conversations.keys().next().value as string);
      // Fewer rows than asked for: that is the whole conversation.
      this.#conversations.set(agentId, { messages: messages.slice(), chars, complete: limit === undefined || rows.length < limit });
    }
    return messages;
  }

  async conversationStats(agentId: string): Promise<{ messages: number; bytes: number }> {
    const row = this.#stmts().conversationStats.get(agentId);
    return { messages: row?.messages ?? 0, bytes: row?.bytes ?? 0 };
  }

  async getMeta(key: string): Promise<string | null> {
    return (this.#stmts().getMeta.get(key)) ?? null;
  }

  async setMeta(key: string, value: string): Promise<void> {
    const s = this.#stmts();
    this.#commitQueued();
    s.setMeta.run(key, value);
  }

  /**
   * Queues `write` for the group commit at the end of this turn of the event loop and resolves
   * with its result once the COMMIT returned (rejects with its own error, mapped like `run`).
   * `singleStatement`: the write changes the database with one statement only (reads aside),
   * which SQLite already undoes whole when it fails, so it needs no savepoint of its own.
   */
  #groupCommitted<T>(write: () => T, singleStatement: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queuedWrites.push({ write, singleStatement, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#commitScheduled) {
        this.#commitScheduled = true;
        // setImmediate, not a microtask: every append issued while this turn of the loop
        // handles its I/O joins the same transaction.
        setImmediate(this.#commitScheduledWrites);
      }
    });
  }

  readonly #commitScheduledWrites = (): void => {
    this.#commitScheduled = false;
    this.#commitQueued();
  };

  #commitGroup(): Transaction<(queued: readonly QueuedWrite[], outcomes: WriteOutcome[]) => void> {
    if (this.#groupTransaction === undefined) {
      const db = this.#open();
      // Called inside the group's transaction, a transaction function runs as a SAVEPOINT.
      const inSavepoint = db.transaction((work: () => unknown) => work());
      const s = this.#stmts();
      this.#groupTransaction = db.transaction((queued: readonly QueuedWrite[], outcomes: WriteOutcome[]) => {
        // Holding the write lock now: what data_version says cannot change until COMMIT, so the
        // next-seq cache is exact for every write below (see #nextSeqs).
        this.#checkCaches(s);
        for (const { write, singleStatement } of queued) {
          try {
            outcomes.push({ ok: true, value: run(singleStatement ? write : () => inSavepoint(write)) });
          } catch (err) {
            outcomes.push({ ok: false, error: err });
          }
        }
      });
    }
    this.#open();
    return this.#groupTransaction;
  }

  /** Runs every queued write in one IMMEDIATE transaction, each in its own savepoint, then settles their promises. */
  #commitQueued(): void {
    if (this.#queuedWrites.length === 0) return;
    const queued = this.#queuedWrites;
    this.#queuedWrites = [];
    const outcomes: WriteOutcome[] = [];
    try {
      this.#commitGroup().immediate(queued, outcomes);
    } catch (err) {
      // BEGIN or COMMIT failed (busy past the timeout, disk full, closed): nothing was stored,
      // whatever the writes already put in the read caches.
      this.#clearCaches();
      const failure = sqliteFailure(err);
      for (const { reject } of queued) reject(failure);
      return;
    }
    queued.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) resolve(outcome.value);
      else reject(outcome?.error);
    });
  }

  /** Empties the read caches when another connection committed since they were filled. */
  #checkCaches(s: Statements): void {
    const version = s.dataVersion.get() as number;
    if (version !== this.#cachesDataVersion) {
      this.#clearCaches();
      this.#cachesDataVersion = version;
    }
  }

  #clearCaches(): void {
    this.#agentLists.clear();
    this.#agents.clear();
    this.#nextSeqs.logs.clear();
    this.#nextSeqs.events.clear();
    this.#nextSeqs.messages.clear();
    this.#conversations.clear();
  }

  /** Freezes and caches the agent read or written as `row` (bounded: past it, the oldest entry goes). */
  #cacheAgent(id: string, row: AgentRow): AgentRecord {
    const record = deepFreeze(toAgent(row));
    if (this.#agents.size >= AGENT_CACHE_SIZE && !this.#agents.has(id)) this.#agents.delete(this.#agents.keys().next().value as string);
    this.#agents.set(id, record);
    return record;
  }

  /** Adds messages our own commit just stored to the agent's cached conversation, if it has one. */
  #extendConversation(agentId: string, added: readonly MessageRecord[]): void {
    const cached = this.#conversations.get(agentId);
    if (cached === undefined) return;
    for (const message of added) {
      cached.messages.push(message);
      cached.chars += message.content.length;
    }
    // Keep the newest: what falls off the front means the entry no longer holds everything.
    while (cached.messages.length > CONVERSATION_CACHE_MESSAGES || cached.chars > CONVERSATION_CACHE_CHARS) {
      const dropped = cached.messages.shift();
      if (dropped === undefined) break;
      cached.chars -= dropped.content.length;
      cached.complete = false;
    }
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

function openFailureReason(err: unknown): string {
  if (isSentinelError(err)) return err.message;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOENT':
      return 'the directory does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    case 'SQLITE_NOTADB':
      return 'the file is not a SQLite database';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

interface ConstraintMessages {
  /** Message for a UNIQUE / PRIMARY KEY violation; gets SQLite's message to tell keys apart. */
  conflict?: (sqliteMessage: string) => string;
  /** Message for a FOREIGN KEY violation. */
  foreignKey?: () => string;
}

/** Runs one write and turns SQLite's failures into the SentinelError codes callers branch on. */
function run<T>(write: () => T, messages: ConstraintMessages = {}): T {
  try {
    return write();
  } catch (err) {
    throw sqliteFailure(err, messages);
  }
}

/** The SentinelError a SQLite failure means to callers (other errors unchanged). */
function sqliteFailure(err: unknown, messages: ConstraintMessages = {}): unknown {
  if (isSentinelError(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : '';
  switch (code) {
    case 'SQLITE_CONSTRAINT_UNIQUE':
    case 'SQLITE_CONSTRAINT_PRIMARYKEY':
      return new SentinelError('conflict', messages.conflict?.(message) ?? 'the record already exists', { cause: err });
    case 'SQLITE_CONSTRAINT_FOREIGNKEY':
      return new SentinelError('invalid_request', messages.foreignKey?.() ?? 'a referenced record does not exist', { cause: err });
    case 'SQLITE_CONSTRAINT_CHECK':
    case 'SQLITE_CONSTRAINT_NOTNULL':
      // SQLite's text names the constraint and its SQL: it stays in `cause` (logged), never in the message.
      return new SentinelError('invalid_request', STORE_REFUSED_MESSAGE, { cause: err });
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return new SentinelError('unavailable', 'the database is busy; try again', { cause: err });
    case 'SQLITE_FULL':
      return new SentinelError('unavailable', 'the database disk is full', { cause: err });
    default:
      return err;
  }
}

function canonicalTimestamp(value: string, what: string): string {
  const ms = parseRfc3339(value);
  if (ms === undefined) throw new SentinelError('invalid_request', `${what} must be an RFC 3339 timestamp`);
  return new Date(ms).toISOString();
}

function levelRank(level: LogLevel): number {
  const rank = LEVEL_RANK[level];
  if (rank === undefined) throw new SentinelError('invalid_request', `unknown log level "${String(level)}"`);
  return rank;
}

function nonNegativeInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new SentinelError('invalid_request', `${what} must be a non-negative integer`);
  return value;
}

function toUser(row: UserRow): UserRecord {
  return { ...row, can_push: row.can_push === 1 };
}

/** Freezes `value` and everything reachable from it (records shared between callers must not change). */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function toAgent(row: AgentRow): AgentRecord {
  return {
    ...row,
    parameters: JSON.parse(row.parameters) as Record<string, unknown>,
    environment: JSON.parse(row.environment) as Record<string, string>,
  };
}

function toLog(row: LogRow): LogRecord {
  const { fields, ...rest } = row;
  return fields === null ? rest : { ...rest, fields: JSON.parse(fields) as Record<string, unknown> };
}

function toMessageRow(agentId: string, seq: number, message: NewMessageRecord): MessageRow {
  return {
    agent_id: agentId,
    seq,
    role: message.role,
    content: message.content,
    tool_calls: message.tool_calls === undefined ? null : JSON.stringify(message.tool_calls),
    tool_call_id: message.tool_call_id ?? null,
    tool_name: message.tool_name ?? null,
    message_id: message.message_id ?? null,
    created_at: message.created_at,
  };
}

/** Optional columns that are NULL are left out, so a record round-trips to what was appended. */
function toMessage(row: MessageRow): MessageRecord {
  const record: MessageRecord = { agent_id: row.agent_id, seq: row.seq, role: row.role, content: row.content, created_at: row.created_at };
  if (row.tool_calls !== null) record.tool_calls = JSON.parse(row.tool_calls) as ToolCallRecord[];
  if (row.tool_call_id !== null) record.tool_call_id = row.tool_call_id;
  if (row.tool_name !== null) record.tool_name = row.tool_name;
  if (row.message_id !== null) record.message_id = row.message_id;
  return record;
}

function toEvent(row: EventRow): EventRecord {
  return { ...row, data: JSON.parse(row.data) as Record<string, unknown> };
}
