/**
 * The SQLite store's SQL: every statement, prepared once per connection after migrate()
 * (preparing per call costs more than most queries), plus the one query built per call.
 */
import type { Database as SqliteDatabase, RunResult } from 'better-sqlite3';
import type { LogLevel } from '../../contract/logger.js';
import type { AgentStatus, RepositoryRecord, Role } from '../../contract/models.js';
import {
  AGENT_COLUMNS,
  AUDIT_COLUMNS,
  EVENT_COLUMNS,
  IMAGE_COLUMNS,
  LOG_COLUMNS,
  MESSAGE_COLUMNS,
  NEW_RUN_COLUMNS,
  REPOSITORY_COLUMNS,
  RUN_COLUMNS,
  USER_COLUMNS,
  type AgentParams,
  type AgentRow,
  type AuditRow,
  type EventRow,
  type ImageRow,
  type LogRow,
  type MessageParams,
  type MessageRow,
  type RunPatchParams,
  type RunRow,
  type UserRow,
} from '../rows.js';
import type { RunStatus } from '../../runs/types.js';

/** SQL's rank of a log level: the order of LOG_LEVELS (debug lowest). */
const LEVEL_RANK_SQL = `(CASE level WHEN 'debug' THEN 0 WHEN 'info' THEN 1 WHEN 'warn' THEN 2 ELSE 3 END)`;
const LOG_FILTER_SQL = `agent_id = @agentId AND seq > @afterSeq AND timestamp >= @since AND ${LEVEL_RANK_SQL} >= @minRank`;

/** SQLite has no boolean: `can_push` and `disabled` are written as 0 or 1. */
interface UserParams extends Omit<UserRow, 'can_push' | 'disabled'> {
  can_push: 0 | 1;
  disabled: 0 | 1;
}

interface UserPatchParams {
  username: string;
  password_hash: string | null;
  role: Role | null;
  can_push: 0 | 1 | null;
  updated_at: string | null;
  disabled: 0 | 1 | null;
  /** Quotas may be set to NULL (unlimited): each has a flag saying whether to write it. */
  set_quota_tokens: 0 | 1;
  quota_tokens: number | null;
  set_quota_turns: 0 | 1;
  quota_turns: number | null;
  set_quota_agents: 0 | 1;
  quota_agents: number | null;
  bump: 0 | 1;
  keep_an_admin: 0 | 1;
}

/** listAudit's bind parameters: each statement is given exactly the ones its WHERE names. */
interface AuditListParams {
  since: number;
  actor?: string;
  action?: string;
  limit: number;
}

interface LogFilterParams {
  agentId: string;
  afterSeq: number;
  since: string;
  minRank: number;
}

/** SQLite binds no booleans: the patch's `set_*` flags go in as 0 or 1. */
export type SqliteRunPatchParams = { [K in keyof RunPatchParams]: RunPatchParams[K] extends boolean ? 0 | 1 : RunPatchParams[K] } & {
  id: string;
  /** JSON array of the statuses the update may start from, or null for any. */
  from: string | null;
  /** The stored required_action text the update expects (written by the same serializer), or null for any. */
  expect_action: string | null;
};

interface ListRunsParams {
  agentId: string;
  status: RunStatus | null;
  before: string | null;
  limit: number;
}

interface FindRunsParams {
  /** JSON array of statuses. */
  statuses: string;
  agentId: string | null;
  instanceId: string | null;
  expiresBefore: string | null;
  limit: number;
}

/** Bind parameters as a statement takes them: positional as a tuple, named as one object. */
type BindArgs<P> = P extends unknown[] ? P : [P];

/**
 * What the store uses of a better-sqlite3 statement. Declared here because the typings' own
 * statement type sits in a namespace that exported declarations cannot name.
 */
export interface PreparedStatement<Args extends unknown[], R> {
  run(...params: Args): RunResult;
  get(...params: Args): R | undefined;
  all(...params: Args): R[];
}

function prepare<P extends unknown[] | object = unknown[], R = unknown>(db: SqliteDatabase, sql: string): PreparedStatement<BindArgs<P>, R> {
  return db.prepare<P, R>(sql) as PreparedStatement<BindArgs<P>, R>;
}

/** {@link prepare} for a statement that returns its first column only. */
function preparePluck<P extends unknown[] | object = unknown[], R = unknown>(db: SqliteDatabase, sql: string): PreparedStatement<BindArgs<P>, R> {
  return db.prepare<P, R>(sql).pluck() as PreparedStatement<BindArgs<P>, R>;
}

/** Every statement, prepared once after migrate(): preparing per call costs more than most queries. */
export function prepareStatements(db: SqliteDatabase) {
  return {
    ping: prepare<[], unknown>(db, 'SELECT 1'),
    insertUser: prepare<UserParams>(db, `INSERT INTO users (${USER_COLUMNS}) VALUES (@id, @username, @password_hash, @role, @can_push, @token_version, @disabled, @quota_tokens_per_day, @quota_turns_per_day, @quota_concurrent_agents, @created_at, @updated_at)`),
    getUser: prepare<[string], UserRow>(db, `SELECT ${USER_COLUMNS} FROM users WHERE username = ?`),
    listUsers: prepare<[], UserRow>(db, `SELECT ${USER_COLUMNS} FROM users ORDER BY username`),
    countUsers: preparePluck<[], number>(db, 'SELECT COUNT(*) FROM users'),
    updateUser: prepare<UserPatchParams>(db, `UPDATE users SET
        password_hash = COALESCE(@password_hash, password_hash),
        role = COALESCE(@role, role),
        can_push = COALESCE(@can_push, can_push),
        updated_at = COALESCE(@updated_at, updated_at),
        disabled = COALESCE(@disabled, disabled),
        quota_tokens_per_day = CASE WHEN @set_quota_tokens = 1 THEN @quota_tokens ELSE quota_tokens_per_day END,
        quota_turns_per_day = CASE WHEN @set_quota_turns = 1 THEN @quota_turns ELSE quota_turns_per_day END,
        quota_concurrent_agents = CASE WHEN @set_quota_agents = 1 THEN @quota_agents ELSE quota_concurrent_agents END,
        token_version = token_version + @bump
      WHERE username = @username
        AND (@keep_an_admin = 0 OR EXISTS (SELECT 1 FROM users other WHERE other.role = 'admin' AND other.disabled = 0 AND other.username <> @username))`),
    deleteAgentsOfOwner: prepare<[string]>(db, 'DELETE FROM agents WHERE owner = ?'),
    deleteUser: prepare<[string]>(db, 'DELETE FROM users WHERE username = ?'),
    userExists: preparePluck<[string], 1>(db, 'SELECT 1 FROM users WHERE username = ?'),

    insertAgent: prepare<AgentParams>(db, `INSERT INTO agents (${AGENT_COLUMNS}) VALUES (@id, @name, @owner, @image, @image_id, @status, @model,
        @parameters, @environment, @usage_requests, @usage_tokens, @created_at, @updated_at)`),
    getAgent: prepare<[string], AgentRow>(db, `SELECT ${AGENT_COLUMNS} FROM agents WHERE id = ?`),
    // rowid breaks ties between agents created in the same millisecond: later insert first.
    listAgents: prepare<[], AgentRow>(db, `SELECT ${AGENT_COLUMNS} FROM agents ORDER BY created_at DESC, rowid DESC`),
    listAgentsOfOwner: prepare<[string], AgentRow>(db, `SELECT ${AGENT_COLUMNS} FROM agents WHERE owner = ? ORDER BY created_at DESC, rowid DESC`),
    updateAgent: prepare<{ id: string; status: AgentStatus | null; name: string | null; updated_at: string | null }, AgentRow>(db, `UPDATE agents SET
        status = COALESCE(@status, status),
        name = COALESCE(@name, name),
        updated_at = COALESCE(@updated_at, updated_at)
      WHERE id = @id RETURNING ${AGENT_COLUMNS}`),
    // One UPDATE reading and writing the counters: concurrent callers cannot lose an increment.
    // No RETURNING: it costs ≈ 10 µs more than the UPDATE and a SELECT of the row together
    // (measured here, better-sqlite3 12 / SQLite 3.4x), and this runs once per chat turn.
    addAgentUsage: prepare<[requests: number, tokens: number, updatedAt: string, id: string]>(db, `UPDATE agents SET
        usage_requests = usage_requests + ?,
        usage_tokens = usage_tokens + ?,
        updated_at = ?
      WHERE id = ?`),
    agentUsage: prepare<[string], { usage_requests: number; usage_tokens: number }>(db, 'SELECT usage_requests, usage_tokens FROM agents WHERE id = ?'),
    deleteAgent: prepare<[string]>(db, 'DELETE FROM agents WHERE id = ?'),
    countAgentsUsingImage: preparePluck<[string], number>(db, 'SELECT COUNT(*) FROM agents WHERE image_id = ?'),

    insertImage: prepare<ImageRow>(db, `INSERT INTO images (${IMAGE_COLUMNS}) VALUES (@digest, @manifest, @config, @config_digest, @size, @created_at)
      ON CONFLICT (digest) DO NOTHING`),
    upsertTag: prepare<[string, string]>(db, `INSERT INTO image_tags (name_tag, digest) VALUES (?, ?)
      ON CONFLICT (name_tag) DO UPDATE SET digest = excluded.digest`),
    getImage: prepare<[string], ImageRow>(db, `SELECT ${IMAGE_COLUMNS} FROM images WHERE digest = ?`),
    tagsOfImage: preparePluck<[string], string>(db, 'SELECT name_tag FROM image_tags WHERE digest = ? ORDER BY name_tag'),
    allTags: prepare<[], { name_tag: string; digest: string }>(db, 'SELECT name_tag, digest FROM image_tags ORDER BY name_tag'),
    imagesInRange: prepare<[string, string], ImageRow>(db, `SELECT ${IMAGE_COLUMNS} FROM images WHERE digest >= ? AND digest < ? ORDER BY created_at DESC, rowid DESC`),
    resolveTag: preparePluck<[string], string>(db, 'SELECT digest FROM image_tags WHERE name_tag = ?'),
    listImages: prepare<[], ImageRow>(db, `SELECT ${IMAGE_COLUMNS} FROM images ORDER BY created_at DESC, rowid DESC`),
    deleteImage: prepare<[string]>(db, 'DELETE FROM images WHERE digest = ?'),

    // DO NOTHING, then read back: the first creator keeps the repository.
    claimRepository: prepare<RepositoryRecord>(db, `INSERT INTO repositories (${REPOSITORY_COLUMNS}) VALUES (@name, @owner, @visibility, @created_at)
      ON CONFLICT (name) DO NOTHING`),
    getRepository: prepare<[string], RepositoryRecord>(db, `SELECT ${REPOSITORY_COLUMNS} FROM repositories WHERE name = ?`),
    listRepositories: prepare<[], RepositoryRecord>(db, `SELECT ${REPOSITORY_COLUMNS} FROM repositories ORDER BY name`),
    updateRepository: prepare<{ name: string; visibility: string | null }, RepositoryRecord>(db, `UPDATE repositories SET
        visibility = COALESCE(@visibility, visibility)
      WHERE name = @name RETURNING ${REPOSITORY_COLUMNS}`),

    nextLogSeq: preparePluck<[string], number>(db, 'SELECT COALESCE(MAX(seq), 0) + 1 FROM agent_logs WHERE agent_id = ?'),
    insertLog: prepare<[string, number, string, LogLevel, string, string | null]>(db, `INSERT INTO agent_logs (${LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    listLogs: prepare<LogFilterParams, LogRow>(db, `SELECT ${LOG_COLUMNS} FROM agent_logs WHERE ${LOG_FILTER_SQL} ORDER BY seq`),
    // The newest `tail` matching lines, turned back to oldest first.
    listLogsTail: prepare<LogFilterParams & { tail: number }, LogRow>(db, `SELECT * FROM (
        SELECT ${LOG_COLUMNS} FROM agent_logs WHERE ${LOG_FILTER_SQL} ORDER BY seq DESC LIMIT @tail
      ) ORDER BY seq`),

    // Past the highest seq retention ever deleted too: a seq is a client's cursor, never reused.
    nextEventSeq: preparePluck<{ agentId: string }, number>(db, `SELECT MAX(
        COALESCE((SELECT MAX(seq) FROM agent_events WHERE agent_id = @agentId), 0),
        COALESCE((SELECT last_pruned_seq FROM agent_event_marks WHERE agent_id = @agentId), 0)
      ) + 1`),
    insertEvent: prepare<[string, number, string, string, string, string]>(db, `INSERT INTO agent_events (${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    listEvents: prepare<[string, number, number], EventRow>(db, `SELECT ${EVENT_COLUMNS} FROM agent_events WHERE agent_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
    firstEventSeq: preparePluck<[string], number>(db, 'SELECT COALESCE(MIN(seq), 0) FROM agent_events WHERE agent_id = ?'),
    lastEventSeq: preparePluck<[string], number>(db, 'SELECT COALESCE(MAX(seq), 0) FROM agent_events WHERE agent_id = ?'),
    deleteEventsThrough: prepare<[string, number]>(db, 'DELETE FROM agent_events WHERE agent_id = ? AND seq <= ?'),
    markEventsPruned: prepare<[string, number]>(db, `INSERT INTO agent_event_marks (agent_id, last_pruned_seq) VALUES (?, ?)
      ON CONFLICT (agent_id) DO UPDATE SET last_pruned_seq = MAX(last_pruned_seq, excluded.last_pruned_seq)`),

    nextMessageSeq: preparePluck<[string], number>(db, 'SELECT COALESCE(MAX(seq), 0) + 1 FROM agent_messages WHERE agent_id = ?'),
    // Positional: binding by name costs ≈ 0.8 µs more per row (measured), and this runs twice per chat turn.
    insertMessage: prepare<[string, number, MessageParams['role'], string, string | null, string | null, string | null, string | null, string]>(db, `INSERT INTO agent_messages (${MESSAGE_COLUMNS})
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    listMessages: prepare<[string], MessageRow>(db, `SELECT ${MESSAGE_COLUMNS} FROM agent_messages WHERE agent_id = ? ORDER BY seq`),
    // The newest `limit` messages, turned back to oldest first.
    listMessagesTail: prepare<[string, number], MessageRow>(db, `SELECT * FROM (
        SELECT ${MESSAGE_COLUMNS} FROM agent_messages WHERE agent_id = ? ORDER BY seq DESC LIMIT ?
      ) ORDER BY seq`),
    // Bytes, not characters: length() of TEXT counts characters, of a BLOB its UTF-8 bytes.
    conversationStats: prepare<[string], { messages: number; bytes: number }>(db, `SELECT COUNT(*) AS messages,
        COALESCE(SUM(length(CAST(content AS BLOB))), 0) AS bytes FROM agent_messages WHERE agent_id = ?`),

    insertAudit: prepare<Omit<AuditRow, 'seq' | 'details'> & { details: string }>(db, `INSERT INTO audit_log (at, actor, action, target, address, request_id, details)
      VALUES (@at, @actor, @action, @target, @address, @request_id, @details)`),
    // One statement per filter combination, each served by the primary key or its index.
    listAudit: prepare<AuditListParams, AuditRow>(db, `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq > @since ORDER BY seq LIMIT @limit`),
    listAuditByActor: prepare<AuditListParams, AuditRow>(db, `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE actor = @actor AND seq > @since ORDER BY seq LIMIT @limit`),
    listAuditByAction: prepare<AuditListParams, AuditRow>(db, `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE action = @action AND seq > @since ORDER BY seq LIMIT @limit`),
    listAuditByBoth: prepare<AuditListParams, AuditRow>(db, `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE actor = @actor AND action = @action AND seq > @since ORDER BY seq LIMIT @limit`),
    addRevokedToken: prepare<[string, string, number]>(db, 'INSERT INTO revoked_tokens (jti, username, expires_at_ms) VALUES (?, ?, ?) ON CONFLICT (jti) DO NOTHING'),
    listRevokedTokens: prepare<[number], { jti: string; username: string; expires_at_ms: number }>(db, 'SELECT jti, username, expires_at_ms FROM revoked_tokens WHERE expires_at_ms > ?'),
    pruneRevokedTokens: prepare<[number]>(db, 'DELETE FROM revoked_tokens WHERE expires_at_ms <= ?'),

    // Runs (migration 11). The idempotency lookup also reads what createRun compares against.
    insertRun: prepare<[string, string, string, string, RunStatus, string, string, string | null, string | null, string | null, string | null, string], RunRow>(db,
      `INSERT INTO runs (${NEW_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ${RUN_COLUMNS}`),
    getRunByKey: prepare<[string, string], RunRow & { request_hash: string | null }>(db,
      `SELECT ${RUN_COLUMNS}, request_hash FROM runs WHERE agent_id = ? AND idempotency_key = ?`),
    clearRunKey: prepare<[string]>(db, 'UPDATE runs SET idempotency_key = NULL WHERE id = ?'),
    getRun: prepare<[string], RunRow>(db, `SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`),
    // Walks runs_by_agent backwards from the cursor's pos; a cursor of another agent (or none
    // that exists) matches nothing rather than restarting from the newest.
    listRuns: prepare<ListRunsParams, RunRow>(db, `SELECT ${RUN_COLUMNS} FROM runs
      WHERE agent_id = @agentId AND (@status IS NULL OR status = @status)
        AND pos < CASE WHEN @before IS NULL THEN 9223372036854775807
          ELSE COALESCE((SELECT c.pos FROM runs c WHERE c.id = @before AND c.agent_id = @agentId), 0) END
      ORDER BY pos DESC LIMIT @limit`),
    // The status condition and the patch in one statement: the compare-and-set is atomic.
    updateRun: prepare<SqliteRunPatchParams, RunRow>(db, `UPDATE runs SET
        status = COALESCE(@status, status),
        output = CASE WHEN @set_output = 1 THEN @output ELSE output END,
        usage = COALESCE(@usage, usage),
        error = CASE WHEN @set_error = 1 THEN @error ELSE error END,
        required_action = CASE WHEN @set_required_action = 1 THEN @required_action ELSE required_action END,
        started_at = CASE WHEN @set_started_at = 1 THEN @started_at ELSE started_at END,
        ended_at = CASE WHEN @set_ended_at = 1 THEN @ended_at ELSE ended_at END,
        instance_id = CASE WHEN @set_instance_id = 1 THEN @instance_id ELSE instance_id END,
        last_seq = MAX(last_seq, COALESCE(@last_seq, 0))
      WHERE id = @id AND (@from IS NULL OR status IN (SELECT value FROM json_each(@from)))
        AND (@expect_action IS NULL OR required_action = @expect_action)
      RETURNING ${RUN_COLUMNS}`),
    raiseRunLastSeq: prepare<[number, string]>(db, 'UPDATE runs SET last_seq = MAX(last_seq, ?) WHERE id = ?'),
    // Positional, like insertMessage: this runs once per journaled batch.
    insertRunFrames: prepare<[string, number, number, string]>(db, 'INSERT INTO run_frames (run_id, first_seq, last_seq, body) VALUES (?, ?, ?, ?)'),
    // Batches never overlap: the one ending first at or after `first` is the only one that can.
    runFramesOverlap: preparePluck<[string, number, number], number>(
      db,
      'SELECT first_seq FROM run_frames WHERE run_id = ? AND last_seq >= ? AND first_seq <= ? ORDER BY last_seq LIMIT 1',
    ),
    // At most `limit` rows: each holds at least one frame.
    listRunFrames: prepare<[string, number, number], RunFrameBatchRow>(
      db,
      'SELECT first_seq, body FROM run_frames WHERE run_id = ? AND last_seq > ? ORDER BY last_seq LIMIT ?',
    ),
    findRuns: prepare<FindRunsParams, RunRow>(db, `SELECT ${RUN_COLUMNS} FROM runs
      WHERE status IN (SELECT value FROM json_each(@statuses))
        AND (@agentId IS NULL OR agent_id = @agentId)
        AND (@instanceId IS NULL OR instance_id = @instanceId)
        AND (@expiresBefore IS NULL OR json_extract(required_action, '$.expires_at') < @expiresBefore)
      ORDER BY pos LIMIT @limit`),
    // Plucks each deleted row's frame count: pruneRunFrames counts frames, not batches.
    pruneRunFrames: preparePluck<[string], number>(
      db,
      'DELETE FROM run_frames WHERE run_id IN (SELECT id FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?) RETURNING last_seq - first_seq + 1',
    ),

    getMeta: preparePluck<[string], string>(db, 'SELECT value FROM meta WHERE key = ?'),
    // Changes when another connection (another process) commits; our own commits leave it alone.
    dataVersion: preparePluck<[], number>(db, 'PRAGMA data_version'),
    setMeta: prepare<[string, string]>(db, 'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
  };
}

/** A row of run_frames as listRunFrames reads it. */
export interface RunFrameBatchRow {
  first_seq: number;
  body: string;
}

/** The prepared statements of one connection. */
export type Statements = ReturnType<typeof prepareStatements>;

/**
 * findAgents' query for one WHERE clause (built from which fields are asked for, values bound
 * by name). The store prepares each once: there are at most eight.
 */
export function prepareFindAgents(db: SqliteDatabase, where: string): PreparedStatement<[Record<string, string | number>], AgentRow> {
  return prepare<Record<string, string | number>, AgentRow>(db, `SELECT ${AGENT_COLUMNS} FROM agents ${where} ORDER BY created_at DESC, rowid DESC LIMIT @limit`);
}
