/**
 * The distributed Store: PostgreSQL through a `pg` connection pool (docs/ARCHITECTURE.md#scale-out). Several
 * `sentinel api` instances share one database: migrations run under an advisory lock, per-agent
 * sequence numbers come from a counter row whose lock serialises appenders on every instance,
 * and every wait is bounded (connect, pool checkout, statement) so a dead or stuck server turns
 * into SentinelError `unavailable` (HTTP 503), never a hang. The pool drops broken connections
 * and opens new ones by itself, so the store carries on once the server is back.
 *
 * `pg` is loaded with a dynamic import when a store is opened: an instance that runs on SQLite
 * never loads the driver, even from the bundled build.
 */
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { SentinelError, isSentinelError } from '../../contract/errors.js';
import { LOG_LEVELS, silentLogger, type LogLevel, type Logger } from '../../contract/logger.js';
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
import type { AgentPatch, AgentQuery, ExternalIdentity, LogQuery, RevokedTokenRecord, Store, UserPatch } from '../types.js';
import type { ApiKeyRecord, ApiKeyUse } from '../../contract/api-keys.js';
import { newUserId } from '../user-id.js';
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
import type { CreateRunOptions, CreateRunResult, NewRunRecord, RunFrameRow, RunPatch, RunQuery, RunRecord, RunSearch, UpdateRunOptions } from '../../runs/types.js';
import {
  AGENT_COLUMNS,
  AUDIT_COLUMNS,
  EVENT_COLUMNS,
  LOG_COLUMNS,
  MESSAGE_COLUMNS,
  NEW_RUN_COLUMNS,
  REPOSITORY_COLUMNS,
  RUN_COLUMNS,
  USER_COLUMNS,
  toAgent,
  toAgentParams,
  toAudit,
  toAuditParams,
  toEvent,
  toLog,
  toMessage,
  toRun,
  toRunParams,
  toRunPatchParams,
  toUser,
  type AgentRow,
  type AuditRow,
  type EventRow,
  type LogRow,
  type MessageRow,
  type RunRow,
  type UserRow,
} from '../rows.js';
import { isBrokenConnectionError, toStoreError, unavailableReason, type ConstraintMessages } from './errors.js';
import { POSTGRES_MIGRATIONS_TABLE_SQL, postgresMigrations } from './migrations.js';
import { PostgresRegistryBackend } from './registry.js';
import { PgWebhooks } from './webhooks.js';
import type { NewWebhookDelivery, WebhookAttemptOutcome, WebhookAttemptRecord, WebhookClaim, WebhookDeliveryRecord, WebhookDeliveryWithAttempts } from '../../contract/webhooks.js';
import { APPEND_AUDIT_SQL, APPEND_EVENTS_SQL, APPEND_LOGS_SQL, APPEND_MESSAGES_SQL, IMAGE_SELECT, LOG_FILTER_SQL } from './statements.js';
import { isPostgresUrl, redactDatabaseUrl } from './url.js';

export interface PostgresStoreOptions {
  /**
   * `postgres://` or `postgresql://` URL: user, password, host, port, database, and libpq-style
   * query parameters (`sslmode`, `application_name`, ...). Parameters in the URL win over the
   * options below. Required; no default.
   */
  url: string;
  /** Most connections the pool keeps open. Default 10. */
  poolSize?: number;
  /** Longest wait to open a connection or to get a free one from the pool before failing `unavailable`. Default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * Longest a statement may run, lock waits included (the server's `statement_timeout`; the
   * client also gives up shortly after, in case the server stopped answering). Default 10000 ms.
   */
  statementTimeoutMs?: number;
  /**
   * Schema that holds the tables, created when missing (lower-case letters, digits and `_`):
   * lets several stores share one database. Default none: the server's `search_path` (normally `public`).
   */
  schema?: string;
  /** Where failures of idle pooled connections are reported (the pool replaces them). Default silent. */
  logger?: Logger;
}

/** A Store on PostgreSQL. Open one with {@link openPostgresStore}. */
const API_KEY_COLUMNS = 'id, user_id, username, name, prefix, hash, scopes, created_at, last_used_at, expires_at, revoked_at';

export interface PostgresStore extends Store {
  /** The connection URL with its password masked: safe to log. */
  readonly url: string;
  /** The schema holding the tables, or undefined when the server's `search_path` decides. */
  readonly schema: string | undefined;
  /**
   * The embedded registry kept in this database (see store/postgres/registry.ts), shared by every
   * instance on it. Uses the store's pool; closing it is a no-op, closing the store ends it.
   */
  registryBackend(): PostgresRegistryBackend;
}

type PgModule = typeof import('pg').default;

const DEFAULT_POOL_SIZE = 10;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;
/** The client-side timeout trails the server's so the server's clean error normally wins. */
const CLIENT_TIMEOUT_MARGIN_MS = 2000;
/** Idle pooled connections are closed after this long (pg-pool's default, stated). */
const IDLE_TIMEOUT_MS = 10_000;
/** The advisory lock migrations run under: one bigint, the ASCII of "SENTINEL". */
const MIGRATION_LOCK_KEY = '6004496291839624524';
/** The advisory lock that serializes "keep an enabled admin" updates: the ASCII of "SNADMINS". */
const ADMIN_LOCK_KEY = '6002807114941681235';
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** pg's type id of bigint: COUNT(*), SUM(int) and our BIGINT columns. */
const INT8_OID = 20;

/** Runs `work` on one pooled connection; `discard` keeps a connection in doubt out of the pool. */
type ClientWork<T> = (client: PoolClient, discard: (reason: Error) => void) => Promise<T>;

class PgStore implements PostgresStore {
  readonly url: string;
  readonly schema: string | undefined;
  readonly #pool: Pool;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #webhooks = new PgWebhooks({
    query: (text, values, messages) => this.#query(text, values, messages),
    transaction: (work) => this.#transaction(work),
  });

  constructor(pg: PgModule, options: Required<Omit<PostgresStoreOptions, 'schema'>> & { schema: string | undefined }) {
    this.url = redactDatabaseUrl(options.url);
    this.schema = options.schema;
    const types = new pg.TypeOverrides();
    // Counters and sizes fit a double; without this pg returns every bigint as a string.
    types.setTypeParser(INT8_OID, (text: string) => Number(text));
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs,
      statement_timeout: options.statementTimeoutMs,
      query_timeout: options.statementTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
      // A transaction left open by a stalled process would hold its row locks forever.
      idle_in_transaction_session_timeout: options.statementTimeoutMs,
      idleTimeoutMillis: IDLE_TIMEOUT_MS,
      keepAlive: true,
      application_name: 'sentinel',
      types,
      ...(options.schema === undefined ? {} : { options: `-c search_path=${options.schema}` }),
    });
    // An idle connection that dies (server restart, network cut) is reported here and replaced
    // by the pool; without a listener the 'error' event would crash the process.
    this.#pool.on('error', (err) => {
      options.logger.warn('postgres connection lost; the pool will reconnect', { reason: unavailableReason(err) ?? err.message });
    });
  }

  /**
   * Creates the schema when one was asked for and applies pending migrations, all in one
   * transaction under a database-wide advisory lock: instances starting together queue here,
   * and each sees what the previous one applied. The lock ends with the transaction, even if
   * the process dies. Waiting on it is bounded by `statementTimeoutMs`.
   */
  async migrate(): Promise<void> {
    await this.#transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
      if (this.schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
      await client.query(POSTGRES_MIGRATIONS_TABLE_SQL);
      const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
      const applied = new Set(rows.map((row) => row.version));
      const current = Math.max(0, ...applied);
      const known = postgresMigrations.at(-1)?.version ?? 0;
      if (current > known) {
        throw new SentinelError(
          'unavailable',
          `database schema version ${current} is newer than this server supports (${known}); upgrade SentinelStacks or use another database`,
        );
      }
      for (const migration of postgresMigrations) {
        if (applied.has(migration.version)) continue;
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          new Date().toISOString(),
        ]);
      }
    });
  }

  async ping(): Promise<void> {
    await this.#query('SELECT 1');
  }

  registryBackend(): PostgresRegistryBackend {
    return new PostgresRegistryBackend({
      database: {
        query: (text, values) => this.#query(text, values),
        transaction: (work) => this.#transaction(work),
      },
    });
  }

  /** Closes every pooled connection. Safe to call more than once; every later call rejects `unavailable`. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#pool.end().catch(() => undefined);
    await this.#closing;
  }

  async createUser(user: NewUserRecord): Promise<void> {
    await this.#query(
      `INSERT INTO users (${USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [
        user.id ?? newUserId(),
        user.username,
        user.password_hash,
        user.role,
        user.can_push,
        user.token_version ?? 0,
        user.disabled ?? false,
        user.quota_tokens_per_day ?? null,
        user.quota_turns_per_day ?? null,
        user.quota_concurrent_agents ?? null,
        user.created_at,
        user.updated_at,
      ],
      { conflict: () => `user "${user.username}" already exists` },
    );
  }

  async getUser(username: string): Promise<UserRecord | null> {
    const [row] = await this.#query<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE username = $1`, [username]);
    return row === undefined ? null : toUser(row);
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.#query<UserRow>(`SELECT ${USER_COLUMNS} FROM users ORDER BY username`)).map(toUser);
  }

  async countUsers(): Promise<number> {
    const [row] = await this.#query<{ count: number }>('SELECT COUNT(*) AS count FROM users');
    return row?.count ?? 0;
  }

  async updateUser(username: string, patch: UserPatch): Promise<boolean> {
    const sql = `UPDATE users SET
        password_hash = COALESCE($2, password_hash),
        role = COALESCE($3, role),
        can_push = COALESCE($4::boolean, can_push),
        updated_at = COALESCE($5, updated_at),
        token_version = token_version + $6::integer,
        disabled = COALESCE($7::boolean, disabled),
        quota_tokens_per_day = CASE WHEN $8::boolean THEN $9::bigint ELSE quota_tokens_per_day END,
        quota_turns_per_day = CASE WHEN $10::boolean THEN $11::bigint ELSE quota_turns_per_day END,
        quota_concurrent_agents = CASE WHEN $12::boolean THEN $13::bigint ELSE quota_concurrent_agents END
      WHERE username = $1
        AND (NOT $14::boolean OR EXISTS (SELECT 1 FROM users other WHERE other.role = 'admin' AND NOT other.disabled AND other.username <> $1))`;
    const params = [
        username,
        patch.password_hash ?? null,
        patch.role ?? null,
        patch.can_push ?? null,
        patch.updated_at ?? null,
        patch.bump_token_version === true ? 1 : 0,
        patch.disabled ?? null,
        patch.quota_tokens_per_day !== undefined,
        patch.quota_tokens_per_day ?? null,
        patch.quota_turns_per_day !== undefined,
        patch.quota_turns_per_day ?? null,
        patch.quota_concurrent_agents !== undefined,
        patch.quota_concurrent_agents ?? null,
        patch.keep_an_admin === true,
    ];
    if (patch.keep_an_admin !== true) {
      const { rowCount } = await this.#result(sql, params);
      return (rowCount ?? 0) > 0;
    }
    // Under READ COMMITTED two admins demoting each other at once would each still see the
    // other as admin; these updates queue on one advisory lock, so the second sees the first.
    return this.#transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [ADMIN_LOCK_KEY]);
      const { rowCount } = await client.query(sql, params);
      return (rowCount ?? 0) > 0;
    });
  }

  /** The foreign key cascades to the user's agents, whose trigger removes their history: one statement, atomic. */
  async deleteUser(username: string): Promise<boolean> {
    const { rowCount } = await this.#result('DELETE FROM users WHERE username = $1', [username]);
    return (rowCount ?? 0) > 0;
  }

  async getIdentityUser(identity: ExternalIdentity): Promise<UserRecord | null> {
    const [row] = await this.#query<UserRow>(
      `SELECT ${USER_COLUMNS.split(', ').map((c) => `u.${c}`).join(', ')} FROM oidc_identities i JOIN users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2`,
      [identity.issuer, identity.subject],
    );
    return row === undefined ? null : toUser(row);
  }

  async createIdentityUser(identity: ExternalIdentity, user: NewUserRecord): Promise<void> {
    const id = user.id ?? newUserId();
    await this.#transaction(
      async (client) => {
        await client.query(`INSERT INTO users (${USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, [
          id, user.username, user.password_hash, user.role, user.can_push, user.token_version ?? 0,
          user.disabled ?? false, user.quota_tokens_per_day ?? null, user.quota_turns_per_day ?? null, user.quota_concurrent_agents ?? null,
          user.created_at, user.updated_at,
        ]);
        await client.query('INSERT INTO oidc_identities (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)', [identity.issuer, identity.subject, id, user.created_at]);
      },
      { conflict: (constraint) => (constraint?.startsWith('oidc_identities') === true ? 'the identity is already linked to a user' : `user "${user.username}" already exists`) },
    );
  }

  async createAgent(agent: AgentRecord): Promise<void> {
    const row = toAgentParams(agent);
    await this.#query(
      `INSERT INTO agents (${AGENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12, $13)`,
      [
        row.id,
        row.name,
        row.owner,
        row.image,
        row.image_id,
        row.status,
        row.model,
        row.parameters,
        row.environment,
        row.usage_requests,
        row.usage_tokens,
        row.created_at,
        row.updated_at,
      ],
      {
        conflict: (constraint) =>
          constraint === 'agents_owner_name_key' ? `agent named "${agent.name}" already exists for user "${agent.owner}"` : `agent "${agent.id}" already exists`,
        foreignKey: (constraint) => (constraint === 'agents_owner_fkey' ? `unknown owner "${agent.owner}"` : `unknown image ${agent.image_id}`),
      },
    );
  }

  async getAgent(id: string): Promise<AgentRecord | null> {
    const [row] = await this.#query<AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents WHERE id = $1`, [id]);
    return row === undefined ? null : toAgent(row);
  }

  async listAgents(filter: { owner?: string } = {}): Promise<AgentRecord[]> {
    // ordinal breaks ties between agents created in the same millisecond: later insert first.
    const rows =
      filter.owner === undefined
        ? await this.#query<AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents ORDER BY created_at DESC, ordinal DESC`)
        : await this.#query<AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents WHERE owner = $1 ORDER BY created_at DESC, ordinal DESC`, [filter.owner]);
    return rows.map(toAgent);
  }

  async updateAgent(id: string, patch: AgentPatch): Promise<AgentRecord | null> {
    const [row] = await this.#query<AgentRow>(
      `UPDATE agents SET
        status = COALESCE($2, status),
        name = COALESCE($3, name),
        updated_at = COALESCE($4, updated_at)
      WHERE id = $1 RETURNING ${AGENT_COLUMNS}`,
      [id, patch.status ?? null, patch.name ?? null, patch.updated_at ?? null],
      { conflict: () => `an agent named "${patch.name ?? ''}" already exists for this owner` },
    );
    return row === undefined ? null : toAgent(row);
  }

  async addAgentUsage(id: string, requests: number, tokens: number, updatedAt: string): Promise<AgentRecord | null> {
    // One UPDATE reading and writing the counters: the row lock serialises concurrent callers.
    const [row] = await this.#query<AgentRow>(
      `UPDATE agents SET usage_requests = usage_requests + $2, usage_tokens = usage_tokens + $3, updated_at = $4
      WHERE id = $1 RETURNING ${AGENT_COLUMNS}`,
      [id, requests, tokens, updatedAt],
    );
    return row === undefined ? null : toAgent(row);
  }

  async deleteAgent(id: string): Promise<boolean> {
    const { rowCount } = await this.#result('DELETE FROM agents WHERE id = $1', [id]);
    return (rowCount ?? 0) > 0;
  }

  async countAgentsUsingImage(digest: string): Promise<number> {
    const [row] = await this.#query<{ count: number }>('SELECT COUNT(*) AS count FROM agents WHERE image_id = $1', [digest]);
    return row?.count ?? 0;
  }

  async findAgents(query: AgentQuery): Promise<AgentRecord[]> {
    const requested = query.limit ?? FIND_AGENTS_LIMIT;
    if (!Number.isSafeInteger(requested) || requested < 0) throw new SentinelError('invalid_request', 'limit must be a non-negative integer');
    if (query.idPrefix !== undefined && !HEX_PREFIX.test(query.idPrefix)) return [];
    const conditions: string[] = [];
    const values: unknown[] = [];
    if (query.owner !== undefined) {
      values.push(query.owner);
      conditions.push(`owner = $${values.length}`);
    }
    if (query.name !== undefined) {
      values.push(query.name);
      conditions.push(`name = $${values.length}`);
    }
    if (query.idPrefix !== undefined) {
      // A range on the primary key; ids are hex, so [prefix, prefix + 'g') is exactly the prefix.
      values.push(query.idPrefix, `${query.idPrefix}${AFTER_HEX}`);
      conditions.push(`id >= $${values.length - 1} AND id < $${values.length}`);
    }
    values.push(Math.min(requested, FIND_AGENTS_LIMIT));
    const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
    const rows = await this.#query<AgentRow>(`SELECT ${AGENT_COLUMNS} FROM agents ${where} ORDER BY created_at DESC, ordinal DESC LIMIT $${values.length}`, values);
    return rows.map(toAgent);
  }

  async putImage(image: Omit<ImageRecord, 'tags'>, tags: string[]): Promise<void> {
    // Sorted and unique: one multi-row upsert may not touch a row twice, and a fixed order
    // means two concurrent puts lock the same tags in the same order (no deadlock).
    const uniqueTags = [...new Set(tags)].sort();
    await this.#transaction(async (client) => {
      await client.query(
        `INSERT INTO images (digest, manifest, config, config_digest, size, created_at) VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (digest) DO NOTHING`,
        [image.digest, image.manifest, image.config, image.config_digest, image.size, image.created_at],
      );
      if (uniqueTags.length > 0) {
        await client.query(
          `INSERT INTO image_tags (name_tag, digest) SELECT tag, $2 FROM unnest($1::text[]) AS tag
          ON CONFLICT (name_tag) DO UPDATE SET digest = EXCLUDED.digest`,
          [uniqueTags, image.digest],
        );
      }
    });
  }

  async getImage(digest: string): Promise<ImageRecord | null> {
    const [row] = await this.#query<ImageRecord>(`${IMAGE_SELECT} WHERE digest = $1`, [digest]);
    return row ?? null;
  }

  async findImagesByDigestPrefix(hexPrefix: string): Promise<ImageRecord[]> {
    const prefix = hexPrefix.toLowerCase();
    // Not hex: no digest can start with it (and it must never reach the range bounds).
    if (!HEX_PREFIX.test(prefix)) return [];
    return this.#query<ImageRecord>(`${IMAGE_SELECT} WHERE digest >= $1 AND digest < $2 ORDER BY created_at DESC, ordinal DESC`, [
      `sha256:${prefix}`,
      `sha256:${prefix}${AFTER_HEX}`,
    ]);
  }

  async resolveTag(nameTag: string): Promise<string | null> {
    const [row] = await this.#query<{ digest: string }>('SELECT digest FROM image_tags WHERE name_tag = $1', [nameTag]);
    return row?.digest ?? null;
  }

  async listImages(): Promise<ImageRecord[]> {
    return this.#query<ImageRecord>(`${IMAGE_SELECT} ORDER BY created_at DESC, ordinal DESC`);
  }

  async claimRepository(repository: RepositoryRecord): Promise<RepositoryRecord> {
    // DO NOTHING, then read back: the first creator keeps the repository, across instances too
    // (the insert waits on a concurrent one's row lock and then sees its row).
    await this.#query(`INSERT INTO repositories (${REPOSITORY_COLUMNS}) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING`, [
      repository.name,
      repository.owner,
      repository.visibility,
      repository.created_at,
    ]);
    const stored = await this.getRepository(repository.name);
    if (stored === null) throw new Error(`repository ${repository.name} vanished right after it was claimed`);
    return stored;
  }

  async getRepository(name: string): Promise<RepositoryRecord | null> {
    const [row] = await this.#query<RepositoryRecord>(`SELECT ${REPOSITORY_COLUMNS} FROM repositories WHERE name = $1`, [name]);
    return row ?? null;
  }

  async listRepositories(): Promise<RepositoryRecord[]> {
    return this.#query<RepositoryRecord>(`SELECT ${REPOSITORY_COLUMNS} FROM repositories ORDER BY name`);
  }

  async updateRepository(name: string, patch: Partial<Pick<RepositoryRecord, 'visibility'>>): Promise<RepositoryRecord | null> {
    const [row] = await this.#query<RepositoryRecord>(
      `UPDATE repositories SET visibility = COALESCE($2, visibility) WHERE name = $1 RETURNING ${REPOSITORY_COLUMNS}`,
      [name, patch.visibility ?? null],
    );
    return row ?? null;
  }

  /**
   * The count gives the friendly message; the RESTRICT foreign key is what guarantees it, for
   * an agent created by another instance between the count and the delete.
   */
  async deleteImage(digest: string): Promise<boolean> {
    return this.#transaction(
      async (client) => {
        const { rows } = await client.query<{ count: number }>('SELECT COUNT(*) AS count FROM agents WHERE image_id = $1', [digest]);
        const users = rows[0]?.count ?? 0;
        if (users > 0) throw new SentinelError('conflict', `image is in use by ${users} agent(s)`);
        const { rowCount } = await client.query('DELETE FROM images WHERE digest = $1', [digest]);
        return (rowCount ?? 0) > 0;
      },
      { foreignKeyCode: 'conflict', foreignKey: () => 'image is in use by an agent' },
    );
  }

  /**
   * Lines are stored under `agentId` whatever their own `agent_id` says. Timestamps are
   * stored in canonical `toISOString()` form because `since` compares them as text.
   */
  async appendLogs(agentId: string, lines: NewLogRecord[]): Promise<LogRecord[]> {
    if (lines.length === 0) return [];
    const records = lines.map((line): Omit<LogRecord, 'seq'> => {
      const record: Omit<LogRecord, 'seq'> = { agent_id: agentId, timestamp: canonicalTimestamp(line.timestamp, 'log timestamp'), level: line.level, message: line.message };
      if (line.fields !== undefined) record.fields = line.fields;
      return record;
    });
    const base = await this.#append(APPEND_LOGS_SQL, agentId, records.length, [
      records.map((r) => r.timestamp),
      records.map((r) => r.level),
      records.map((r) => r.message),
      records.map((r) => (r.fields === undefined ? null : JSON.stringify(r.fields))),
    ]);
    return records.map((record, i) => ({ ...record, seq: base + i + 1 }));
  }

  async listLogs(agentId: string, query: LogQuery = {}): Promise<LogRecord[]> {
    const params = [
      agentId,
      query.afterSeq ?? 0,
      query.since === undefined ? '' : canonicalTimestamp(query.since, 'since'),
      levelsFrom(query.level ?? 'debug'),
    ];
    const rows =
      query.tail === undefined
        ? await this.#query<LogRow>(`SELECT ${LOG_COLUMNS} FROM agent_logs WHERE ${LOG_FILTER_SQL} ORDER BY seq`, params)
        : // The newest `tail` matching lines, turned back to oldest first.
          await this.#query<LogRow>(
            `SELECT * FROM (SELECT ${LOG_COLUMNS} FROM agent_logs WHERE ${LOG_FILTER_SQL} ORDER BY seq DESC LIMIT $5) AS newest ORDER BY seq`,
            [...params, nonNegativeInteger(query.tail, 'tail')],
          );
    return rows.map(toLog);
  }

  /** Events are stored under `agentId` whatever their own `agent_id` says. */
  async appendEvents(agentId: string, events: NewEventRecord[]): Promise<EventRecord[]> {
    if (events.length === 0) return [];
    const data = events.map((event) => event.data ?? {});
    const base = await this.#append(APPEND_EVENTS_SQL, agentId, events.length, [
      events.map((e) => e.event_type),
      events.map((e) => e.timestamp),
      events.map((e) => e.content),
      data.map((d) => JSON.stringify(d)),
    ]);
    return events.map((event, i): EventRecord => ({
      agent_id: agentId,
      seq: base + i + 1,
      event_type: event.event_type,
      timestamp: event.timestamp,
      content: event.content,
      data: data[i] as Record<string, unknown>,
    }));
  }

  async listEvents(agentId: string, afterSeq: number, limit: number = DEFAULT_EVENT_LIMIT): Promise<EventRecord[]> {
    const rows = await this.#query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM agent_events WHERE agent_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, [
      agentId,
      afterSeq,
      nonNegativeInteger(limit, 'limit'),
    ]);
    return rows.map(toEvent);
  }

  async firstEventSeq(agentId: string): Promise<number> {
    const [row] = await this.#query<{ first: number }>('SELECT COALESCE(MIN(seq), 0) AS first FROM agent_events WHERE agent_id = $1', [agentId]);
    return row?.first ?? 0;
  }

  /** The event counter (it never goes back, see the migrations), committed with its rows. */
  async lastEventSeq(agentId: string): Promise<number> {
    const [row] = await this.#query<{ last: number }>(`SELECT last_seq AS last FROM agent_sequences WHERE agent_id = $1 AND kind = 'event'`, [agentId]);
    return row === undefined ? 0 : Number(row.last);
  }

  /**
   * Deletes the oldest events so that at most `keepLast` remain. The numbering goes on from
   * where it was even when every event went (the counter row is never lowered).
   */
  async pruneEvents(agentId: string, keepLast: number): Promise<number> {
    const keep = nonNegativeInteger(keepLast, 'keepLast');
    const { rowCount } = await this.#result(
      'DELETE FROM agent_events WHERE agent_id = $1 AND seq <= (SELECT MAX(seq) FROM agent_events WHERE agent_id = $1) - $2::bigint',
      [agentId, keep],
    );
    return rowCount ?? 0;
  }

  /** Messages are stored under `agentId` whatever their own `agent_id` says. */
  async appendMessages(agentId: string, messages: NewMessageRecord[]): Promise<MessageRecord[]> {
    if (messages.length === 0) return [];
    const base = await this.#append(APPEND_MESSAGES_SQL, agentId, messages.length, [
      messages.map((m) => m.role),
      messages.map((m) => m.content),
      messages.map((m) => (m.tool_calls === undefined ? null : JSON.stringify(m.tool_calls))),
      messages.map((m) => m.tool_call_id ?? null),
      messages.map((m) => m.tool_name ?? null),
      messages.map((m) => m.message_id ?? null),
      messages.map((m) => m.created_at),
    ]);
    return messages.map((message, i) => {
      const record: MessageRecord = { agent_id: agentId, seq: base + i + 1, role: message.role, content: message.content, created_at: message.created_at };
      if (message.tool_calls !== undefined) record.tool_calls = message.tool_calls;
      if (message.tool_call_id !== undefined) record.tool_call_id = message.tool_call_id;
      if (message.tool_name !== undefined) record.tool_name = message.tool_name;
      if (message.message_id !== undefined) record.message_id = message.message_id;
      return record;
    });
  }

  async listMessages(agentId: string, options: { limit?: number } = {}): Promise<MessageRecord[]> {
    const rows =
      options.limit === undefined
        ? await this.#query<MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM agent_messages WHERE agent_id = $1 ORDER BY seq`, [agentId])
        : // The newest `limit` messages, turned back to oldest first.
          await this.#query<MessageRow>(
            `SELECT * FROM (SELECT ${MESSAGE_COLUMNS} FROM agent_messages WHERE agent_id = $1 ORDER BY seq DESC LIMIT $2) AS newest ORDER BY seq`,
            [agentId, nonNegativeInteger(options.limit, 'limit')],
          );
    return rows.map(toMessage);
  }

  async conversationStats(agentId: string): Promise<{ messages: number; bytes: number }> {
    // octet_length: UTF-8 bytes, not characters.
    const [row] = await this.#query<{ messages: number; bytes: number }>(
      'SELECT COUNT(*) AS messages, COALESCE(SUM(octet_length(content)), 0)::bigint AS bytes FROM agent_messages WHERE agent_id = $1',
      [agentId],
    );
    return { messages: row?.messages ?? 0, bytes: row?.bytes ?? 0 };
  }

  /**
   * One transaction: a holder of the key past the window loses it, then the INSERT either
   * takes the key or, ON CONFLICT with the partial unique index, does nothing, and the holder
   * is read back. A concurrent creator with the same key (any instance) makes the INSERT wait
   * for its commit, so exactly one of them inserts; the others see its row. Should that row
   * vanish before the read (its agent deleted, its key cleared), the attempt is repeated.
   */
  async createRun(record: NewRunRecord, options: CreateRunOptions): Promise<CreateRunResult> {
    const params = toRunParams(record);
    const cutoff = idempotencyCutoff(options);
    const key = record.idempotency_key;
    const messages: ConstraintMessages = { conflict: () => `run "${record.id}" already exists`, foreignKey: () => `unknown agent "${record.agent_id}"` };
    for (let attempt = 0; ; attempt++) {
      const result = await this.#transaction(async (client): Promise<CreateRunResult | undefined> => {
        if (key !== null) {
          await client.query('UPDATE runs SET idempotency_key = NULL WHERE agent_id = $1 AND idempotency_key = $2 AND created_at <= $3', [record.agent_id, key, cutoff]);
        }
        const inserted = await client.query<RunRow>(
          `INSERT INTO runs (${NEW_RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12)
          ON CONFLICT (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
          RETURNING ${RUN_COLUMNS}`,
          params,
        );
        const row = inserted.rows[0];
        if (row !== undefined) return { created: true, run: toRun(row) };
        // READ COMMITTED: this statement's snapshot includes the holder that made the INSERT skip.
        const held = await client.query<RunRow & { request_hash: string | null }>(
          `SELECT ${RUN_COLUMNS}, request_hash FROM runs WHERE agent_id = $1 AND idempotency_key = $2`,
          [record.agent_id, key],
        );
        const holder = held.rows[0];
        return holder === undefined ? undefined : { created: false, run: toRun(holder), requestHash: holder.request_hash };
      }, messages);
      if (result !== undefined) return result;
      if (attempt >= 2) throw new SentinelError('unavailable', 'the run could not be created: its idempotency key kept changing hands; try again');
    }
  }

  async getRun(id: string): Promise<RunRecord | null> {
    const [row] = await this.#query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`, [id]);
    return row === undefined ? null : toRun(row);
  }

  /** A cursor of another agent (or none that exists) matches nothing rather than restarting from the newest. */
  async listRuns(agentId: string, query: RunQuery): Promise<RunRecord[]> {
    const rows = await this.#query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM runs
      WHERE agent_id = $1 AND ($2::text IS NULL OR status = $2)
        AND pos < CASE WHEN $3::text IS NULL THEN 9223372036854775807
          ELSE COALESCE((SELECT c.pos FROM runs c WHERE c.id = $3 AND c.agent_id = $1), 0) END
      ORDER BY pos DESC LIMIT $4`,
      [agentId, query.status ?? null, query.before ?? null, runsLimit(query.limit)],
    );
    return rows.map(toRun);
  }

  /** The status condition and the patch in one UPDATE: its row lock makes the compare-and-set atomic across instances. */
  async updateRun(id: string, patch: RunPatch, options: UpdateRunOptions = {}): Promise<RunRecord | null> {
    const p = toRunPatchParams(patch);
    const [row] = await this.#query<RunRow>(
      `UPDATE runs SET
        status = COALESCE($2, status),
        output = CASE WHEN $3::boolean THEN $4::jsonb ELSE output END,
        usage = COALESCE($5::jsonb, usage),
        error = CASE WHEN $6::boolean THEN $7::jsonb ELSE error END,
        required_action = CASE WHEN $8::boolean THEN $9::jsonb ELSE required_action END,
        started_at = CASE WHEN $10::boolean THEN $11 ELSE started_at END,
        ended_at = CASE WHEN $12::boolean THEN $13 ELSE ended_at END,
        instance_id = CASE WHEN $14::boolean THEN $15 ELSE instance_id END,
        last_seq = GREATEST(last_seq, COALESCE($16::bigint, 0))
      WHERE id = $1 AND ($17::text[] IS NULL OR status = ANY($17::text[]))
        AND ($18::jsonb IS NULL OR required_action = $18::jsonb)
      RETURNING ${RUN_COLUMNS}`,
      [
        id,
        p.status,
        p.set_output,
        p.output,
        p.usage,
        p.set_error,
        p.error,
        p.set_required_action,
        p.required_action,
        p.set_started_at,
        p.started_at,
        p.set_ended_at,
        p.ended_at,
        p.set_instance_id,
        p.instance_id,
        p.last_seq,
        options.fromStatus ?? null,
        options.ifRequiredAction === undefined ? null : toRunPatchParams({ required_action: options.ifRequiredAction }).required_action,
      ],
    );
    return row === undefined ? null : toRun(row);
  }

  /**
   * One statement: raising last_seq locks the run's row, so a concurrent delete of the run
   * (with its agent) either waits and takes these frames along, or came first and nothing is
   * inserted. A batch overlapping a stored one fails the statement: nothing of it is written.
   * The overlap check sees the batches committed before the statement began; two instances
   * racing for the same next seq (appendDetached) collide on the primary key (run_id, last_seq).
   */
  async appendRunFrames(runId: string, frames: RunFrameRow[]): Promise<void> {
    if (frames.length === 0) return;
    const { highest, batches } = runFrameBatches(frames, runId);
    const [overlap] = await this.#query<{ overlap: boolean }>(
      `WITH b AS (SELECT * FROM unnest($3::bigint[], $4::bigint[], $5::text[]) AS b(first_seq, last_seq, body)),
      clash AS (SELECT 1 FROM run_frames f, b WHERE f.run_id = $1 AND f.last_seq >= b.first_seq AND f.first_seq <= b.last_seq LIMIT 1),
      run AS (UPDATE runs SET last_seq = GREATEST(last_seq, $2::bigint) WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM clash) RETURNING id),
      ins AS (INSERT INTO run_frames (run_id, first_seq, last_seq, body) SELECT run.id, b.first_seq, b.last_seq, b.body FROM run, b RETURNING 1)
      SELECT EXISTS (SELECT 1 FROM clash) AS overlap`,
      [runId, highest, batches.map((b) => b.first), batches.map((b) => b.last), batches.map((b) => b.body)],
      { conflict: () => `a frame of run "${runId}" is journaled already` },
    );
    if (overlap?.overlap === true) throw new SentinelError('conflict', `a frame of run "${runId}" is journaled already`);
  }

  async listRunFrames(runId: string, afterSeq: number, limit: number = DEFAULT_RUN_FRAME_LIMIT): Promise<RunFrameRow[]> {
    const after = nonNegativeInteger(afterSeq, 'afterSeq');
    const max = nonNegativeInteger(limit, 'limit');
    const frames: RunFrameRow[] = [];
    if (max === 0) return frames;
    // At most `limit` rows: each holds at least one frame.
    const rows = await this.#query<{ first_seq: string | number; body: string }>(
      'SELECT first_seq, body FROM run_frames WHERE run_id = $1 AND last_seq > $2 ORDER BY last_seq LIMIT $3',
      [runId, after, max],
    );
    for (const row of rows) {
      if (!splitRunFrameBatch(Number(row.first_seq), row.body, after, max, frames)) break;
    }
    return frames;
  }

  async findRuns(query: RunSearch): Promise<RunRecord[]> {
    const rows = await this.#query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM runs
      WHERE status = ANY($1::text[])
        AND ($2::text IS NULL OR agent_id = $2)
        AND ($3::text IS NULL OR instance_id = $3)
        AND ($4::text IS NULL OR (required_action->>'expires_at') COLLATE "C" < $4)
      ORDER BY pos LIMIT $5`,
      [
        query.status,
        query.agentId ?? null,
        query.instanceId ?? null,
        query.expiresBefore === undefined ? null : canonicalTimestamp(query.expiresBefore, 'expiresBefore'),
        runsLimit(query.limit ?? FIND_RUNS_LIMIT),
      ],
    );
    return rows.map(toRun);
  }

  async pruneRunFrames(endedBefore: string): Promise<number> {
    const before = canonicalTimestamp(endedBefore, 'endedBefore');
    // Frames, not batch rows, are counted.
    const [row] = await this.#query<{ frames: string | number }>(
      `WITH gone AS (DELETE FROM run_frames WHERE run_id IN (SELECT id FROM runs WHERE ended_at IS NOT NULL AND ended_at < $1) RETURNING last_seq - first_seq + 1 AS n)
      SELECT COALESCE(SUM(n), 0) AS frames FROM gone`,
      [before],
    );
    return Number(row?.frames ?? 0);
  }

  async appendAudit(entries: NewAuditEntry[]): Promise<AuditEntry[]> {
    if (entries.length === 0) return [];
    const rows = entries.map((entry) => toAuditParams({ ...entry, at: canonicalTimestamp(entry.at, 'audit timestamp') }));
    const [row] = await this.#query<{ base: number }>(APPEND_AUDIT_SQL, [
      rows.length,
      rows.map((r) => r.at),
      rows.map((r) => r.actor),
      rows.map((r) => r.action),
      rows.map((r) => r.target),
      rows.map((r) => r.address),
      rows.map((r) => r.request_id),
      rows.map((r) => r.details),
    ]);
    if (row === undefined) throw new Error('the audit sequence row is missing (migration 8)');
    return rows.map((r, i) => toAudit({ ...r, seq: row.base + i + 1 }));
  }

  async listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const { since, actor, action, limit } = auditQueryArguments(query);
    const values: unknown[] = [since];
    let where = 'seq > $1';
    if (actor !== null) {
      values.push(actor);
      where += ` AND actor = $${values.length}`;
    }
    if (action !== null) {
      values.push(action);
      where += ` AND action = $${values.length}`;
    }
    values.push(limit);
    const rows = await this.#query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE ${where} ORDER BY seq LIMIT $${values.length}`, values);
    return rows.map(toAudit);
  }

  async addRevokedToken(record: RevokedTokenRecord): Promise<void> {
    await this.#query('INSERT INTO revoked_tokens (jti, username, expires_at_ms) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING', [
      record.jti,
      record.username,
      record.expires_at_ms,
    ]);
  }

  async listRevokedTokens(nowMs: number): Promise<RevokedTokenRecord[]> {
    const rows = await this.#query<{ jti: string; username: string; expires_at_ms: string | number }>(
      'SELECT jti, username, expires_at_ms FROM revoked_tokens WHERE expires_at_ms > $1',
      [nowMs],
    );
    // BIGINT arrives as a string from pg.
    return rows.map((row) => ({ jti: row.jti, username: row.username, expires_at_ms: Number(row.expires_at_ms) }));
  }

  async pruneRevokedTokens(nowMs: number): Promise<number> {
    return (await this.#result('DELETE FROM revoked_tokens WHERE expires_at_ms <= $1', [nowMs])).rowCount ?? 0;
  }

  async getMeta(key: string): Promise<string | null> {
    const [row] = await this.#query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key]);
    return row?.value ?? null;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [key, value]);
  }

  async createApiKey(key: ApiKeyRecord): Promise<void> {
    await this.#query(
      `INSERT INTO api_keys (${API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $9, $10, $11)`,
      [key.id, key.user_id, key.username, key.name, key.prefix, key.hash, key.scopes, key.created_at, key.last_used_at, key.expires_at, key.revoked_at],
      { conflict: () => `api key "${key.id}" already exists`, foreignKey: () => `unknown user id "${key.user_id}"` },
    );
  }

  async getApiKeyByHash(hash: string): Promise<ApiKeyRecord | null> {
    const [row] = await this.#query<ApiKeyRecord>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE hash = $1`, [hash]);
    return row ?? null;
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    const [row] = await this.#query<ApiKeyRecord>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE id = $1`, [id]);
    return row ?? null;
  }

  async listApiKeys(userId: string): Promise<ApiKeyRecord[]> {
    return this.#query<ApiKeyRecord>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id`, [userId]);
  }

  async countActiveApiKeys(userId: string, now: string): Promise<number> {
    const [row] = await this.#query<{ count: number }>(
      'SELECT COUNT(*)::integer AS count FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)',
      [userId, now],
    );
    return row?.count ?? 0;
  }

  async revokeApiKey(id: string, revokedAt: string): Promise<boolean> {
    const { rowCount } = await this.#result('UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL', [id, revokedAt]);
    return (rowCount ?? 0) > 0;
  }

  /** One statement for the whole batch (one round trip however many keys were used). */
  async touchApiKeys(uses: readonly ApiKeyUse[]): Promise<void> {
    if (uses.length === 0) return;
    await this.#query(
      `UPDATE api_keys AS k SET last_used_at = u.at
      FROM unnest($1::text[], $2::text[]) AS u(id, at)
      WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
      [uses.map((use) => use.id), uses.map((use) => use.last_used_at)],
    );
  }

  getWebhookSecret(username: string): Promise<string | null> {
    return this.#webhooks.getSecret(username);
  }

  ensureWebhookSecret(username: string, candidate: string, now: string): Promise<string> {
    return this.#webhooks.ensureSecret(username, candidate, now);
  }

  setWebhookSecret(username: string, secret: string, now: string): Promise<void> {
    return this.#webhooks.setSecret(username, secret, now);
  }

  setAgentWebhook(agentId: string, url: string | null): Promise<void> {
    return this.#webhooks.setAgentWebhook(agentId, url);
  }

  getAgentWebhook(agentId: string): Promise<string | null> {
    return this.#webhooks.getAgentWebhook(agentId);
  }

  createWebhookDelivery(delivery: NewWebhookDelivery): Promise<void> {
    return this.#webhooks.createDelivery(delivery);
  }

  claimWebhookDeliveries(claim: WebhookClaim): Promise<WebhookDeliveryRecord[]> {
    return this.#webhooks.claim(claim);
  }

  recordWebhookAttempt(deliveryId: string, claimant: string, attempt: WebhookAttemptRecord, outcome: WebhookAttemptOutcome): Promise<boolean> {
    return this.#webhooks.recordAttempt(deliveryId, claimant, attempt, outcome);
  }

  listWebhookDeliveries(runId: string): Promise<WebhookDeliveryWithAttempts[]> {
    return this.#webhooks.listOfRun(runId);
  }

  /** Runs one append statement (see statements.ts); returns the seq before the new rows. */
  async #append(sql: string, agentId: string, count: number, columns: unknown[][]): Promise<number> {
    const [row] = await this.#query<{ base: number }>(sql, [agentId, count, ...columns]);
    if (row === undefined) throw new Error('append returned no sequence base');
    return row.base;
  }

  async #query<R extends QueryResultRow>(text: string, values?: unknown[], messages?: ConstraintMessages): Promise<R[]> {
    return (await this.#result<R>(text, values, messages)).rows;
  }

  /** One statement on a pooled connection, autocommitted, with pg's errors mapped. */
  async #result<R extends QueryResultRow>(text: string, values?: unknown[], messages?: ConstraintMessages): Promise<{ rows: R[]; rowCount: number | null }> {
    try {
      return await this.#withClient((client) => client.query<R>(text, values));
    } catch (err) {
      throw toStoreError(err, messages);
    }
  }

  /** Runs `work` between BEGIN and COMMIT (ROLLBACK on any error), with pg's errors mapped. */
  async #transaction<T>(work: (client: PoolClient) => Promise<T>, messages?: ConstraintMessages): Promise<T> {
    try {
      return await this.#withClient(async (client, discard) => {
        await client.query('BEGIN');
        try {
          const result = await work(client);
          await client.query('COMMIT');
          return result;
        } catch (err) {
          // A connection whose rollback failed may still be inside the transaction: never reuse it.
          await client.query('ROLLBACK').catch((rollbackErr: unknown) => discard(rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr))));
          throw err;
        }
      });
    } catch (err) {
      throw toStoreError(err, messages);
    }
  }

  /**
   * Checks a connection out for `work` and back in. While it is out, its 'error' event is
   * listened to (pg-pool listens only while it is idle; an unheard 'error' would crash the
   * process), and a connection that broke or timed out is destroyed instead of reused.
   */
  async #withClient<T>(work: ClientWork<T>): Promise<T> {
    if (this.#closed) throw new SentinelError('unavailable', 'the store is closed');
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    const discard = (reason: Error) => {
      broken ??= reason;
    };
    client.on('error', discard);
    try {
      return await work(client, discard);
    } catch (err) {
      if (!isSentinelError(err) && isBrokenConnectionError(err)) discard(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      client.off('error', discard);
      client.release(broken);
    }
  }
}

/**
 * Opens a pool on `options.url` (defaults: `poolSize` 10, `connectTimeoutMs` 5000,
 * `statementTimeoutMs` 10000, no `schema`, silent `logger`) and applies pending migrations
 * under an advisory lock, so several instances may call it at once. Rejects with SentinelError
 * `invalid_request` for bad options, and `unavailable` — `cannot open database <url with the
 * password masked>: <reason>` — when the server cannot be reached, refuses the login, or holds
 * a schema newer than this code.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const resolved = resolveOptions(options);
  const { default: pg } = await import('pg');
  const store = new PgStore(pg, resolved);
  try {
    await store.migrate();
    return store;
  } catch (err) {
    await store.close();
    throw new SentinelError('unavailable', `cannot open database ${store.url}: ${openFailureReason(err)}`, { cause: err });
  }
}

function resolveOptions(options: PostgresStoreOptions): ConstructorParameters<typeof PgStore>[1] {
  if (typeof options.url !== 'string' || !isPostgresUrl(options.url)) {
    throw new SentinelError('invalid_request', 'the store URL must be a postgres:// or postgresql:// URL');
  }
  const positive = (value: number | undefined, fallback: number, what: string): number => {
    const resolved = value ?? fallback;
    if (!Number.isSafeInteger(resolved) || resolved < 1) throw new SentinelError('invalid_request', `${what} must be a positive integer`);
    return resolved;
  };
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new SentinelError('invalid_request', 'schema must be 1 to 63 lower-case letters, digits or underscores, not starting with a digit');
  }
  return {
    url: options.url,
    poolSize: positive(options.poolSize, DEFAULT_POOL_SIZE, 'poolSize'),
    connectTimeoutMs: positive(options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs'),
    statementTimeoutMs: positive(options.statementTimeoutMs, DEFAULT_STATEMENT_TIMEOUT_MS, 'statementTimeoutMs'),
    schema: options.schema,
    logger: options.logger ?? silentLogger,
  };
}

const UNAVAILABLE_PREFIX = 'database unavailable: ';

function openFailureReason(err: unknown): string {
  const mapped = toStoreError(err);
  if (isSentinelError(mapped)) return mapped.message.startsWith(UNAVAILABLE_PREFIX) ? mapped.message.slice(UNAVAILABLE_PREFIX.length) : mapped.message;
  return mapped instanceof Error && mapped.message !== '' ? mapped.message : String(mapped);
}


/** The levels at or above `level`, for `level = ANY(...)`. */
function levelsFrom(level: LogLevel): LogLevel[] {
  const rank = LOG_LEVELS.indexOf(level);
  if (rank < 0) throw new SentinelError('invalid_request', `unknown log level "${String(level)}"`);
  return LOG_LEVELS.slice(rank);
}
