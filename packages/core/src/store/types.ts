import type { AgentRecord, EventRecord, ImageRecord, LogRecord, MessageRecord, NewEventRecord, NewLogRecord, NewMessageRecord, NewUserRecord, RepositoryRecord, UserRecord } from '../contract/models.js';
import type { ApiKeyStore } from '../contract/api-keys.js';
import type { AuditEntry, AuditQuery, NewAuditEntry } from '../contract/audit.js';
import type { LogLevel } from '../contract/logger.js';
import type { CreateRunOptions, CreateRunResult, NewRunRecord, RunFrameRow, RunPatch, RunQuery, RunRecord, RunSearch, UpdateRunOptions } from '../runs/types.js';

export type AgentPatch = Partial<Pick<AgentRecord, 'status' | 'updated_at' | 'name'>>;

/** What `updateUser` may change. `id` never changes; `token_version` only goes up, by `bump_token_version`. */
export type UserPatch = Partial<
  Pick<UserRecord, 'password_hash' | 'role' | 'can_push' | 'updated_at' | 'disabled' | 'quota_tokens_per_day' | 'quota_turns_per_day' | 'quota_concurrent_agents'>
> & {
  /** True: add 1 to `token_version` in the same statement (atomic across instances), revoking older tokens. Default false. */
  bump_token_version?: boolean;
  /**
   * True: apply the patch only while some other enabled admin than this user exists (checked in
   * the same statement, so two admins demoting each other at once cannot both succeed); when
   * none does, `updateUser` changes nothing and returns false. Default false.
   */
  keep_an_admin?: boolean;
};

/** An account at an external identity provider: who an OpenID Connect token is about. */
export interface ExternalIdentity {
  /** The issuer URL, exactly as tokens carry it. */
  issuer: string;
  /** The issuer's `sub` for the account. */
  subject: string;
}

/**
 * One token revoked before its expiry (logout): its `jti`, whose it was, and when it would have
 * expired anyway, after which the row is pruned (an expired token is refused without it).
 */
export interface RevokedTokenRecord {
  jti: string;
  username: string;
  /** The token's own expiry, epoch ms. */
  expires_at_ms: number;
}

/** What {@link Store.findAgents} matches; every given field must match. */
export interface AgentQuery {
  /** Only this user's agents. */
  owner?: string;
  /** Agents with exactly this name. */
  name?: string;
  /** Agents whose id starts with these lowercase hex digits (agent ids are hex); other text matches nothing. */
  idPrefix?: string;
  /** At most this many, newest first. Default 100. */
  limit?: number;
}

export interface LogQuery {
  /** Only lines at or after this instant (ISO 8601). */
  since?: string;
  /** Only lines with seq greater than this. */
  afterSeq?: number;
  /** Only the last N matching lines (still returned oldest first). */
  tail?: number;
  /** Minimum level. */
  level?: LogLevel;
}

/**
 * Durable state. Every method is async so embedded (SQLite) and distributed (PostgreSQL)
 * back ends are interchangeable; one conformance suite (`test/store-conformance.ts`) runs
 * against each. A method resolves only once the write is durable: callers answer clients
 * after it, so nothing acknowledged is lost on `kill -9`.
 *
 * Conflicts (duplicate username, duplicate agent id) reject with SentinelError `conflict`.
 */
export interface Store extends ApiKeyStore {
  /** Applies pending migrations. Idempotent; safe to call at every start. */
  migrate(): Promise<void>;
  /** Cheap liveness check (readiness probes). */
  ping(): Promise<void>;
  close(): Promise<void>;

  /** `id` (default: random) must be unique too: a duplicate is `conflict`. */
  createUser(user: NewUserRecord): Promise<void>;
  getUser(username: string): Promise<UserRecord | null>;
  listUsers(): Promise<UserRecord[]>;
  countUsers(): Promise<number>;
  /** Returns false when the user does not exist. */
  updateUser(username: string, patch: UserPatch): Promise<boolean>;
  /** Deletes the user and every agent they own (with its logs, events, runs and run frames). False when unknown. */
  deleteUser(username: string): Promise<boolean>;

  /**
   * The user an external identity (OpenID Connect issuer and subject) is linked to, or null.
   * A link goes with its user: deleting the user deletes it.
   */
  getIdentityUser(identity: ExternalIdentity): Promise<UserRecord | null>;
  /**
   * Creates `user` and links `identity` to it, in one transaction. `conflict` when the
   * username or id is taken, or the identity is already linked (then nothing is written).
   */
  createIdentityUser(identity: ExternalIdentity, user: NewUserRecord): Promise<void>;

  createAgent(agent: AgentRecord): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | null>;
  /** Newest first. `owner` filters to one user's agents. */
  listAgents(filter?: { owner?: string }): Promise<AgentRecord[]>;
  /** Returns the updated record, or null when unknown. */
  updateAgent(id: string, patch: AgentPatch): Promise<AgentRecord | null>;
  /** Adds to the usage counters atomically; returns the updated record or null. */
  addAgentUsage(id: string, requests: number, tokens: number, updatedAt: string): Promise<AgentRecord | null>;
  /** Deletes the agent with its logs, events, messages, runs and run frames. False when unknown. */
  deleteAgent(id: string): Promise<boolean>;
  countAgentsUsingImage(digest: string): Promise<number>;
  /** Agents matching every field of `query` (agent references by name or id prefix), newest first. */
  findAgents(query: AgentQuery): Promise<AgentRecord[]>;

  /**
   * Stores an image (idempotent by digest) and points each `name:tag` in `tags` at it,
   * moving a tag away from any image that had it. One transaction.
   */
  putImage(image: Omit<ImageRecord, 'tags'>, tags: string[]): Promise<void>;
  getImage(digest: string): Promise<ImageRecord | null>;
  /** Images whose digest hex starts with `hexPrefix` (for short IDs). */
  findImagesByDigestPrefix(hexPrefix: string): Promise<ImageRecord[]>;
  /** The digest `name:tag` points at, or null. */
  resolveTag(nameTag: string): Promise<string | null>;
  /** Newest first, with tags. */
  listImages(): Promise<ImageRecord[]>;
  /** Deletes the image and its tags. False when unknown. */
  deleteImage(digest: string): Promise<boolean>;

  /**
   * Creates the repository unless one of that name exists, atomically (the first creator wins,
   * across instances too), and returns the stored one: the new record or the existing one.
   */
  claimRepository(repository: RepositoryRecord): Promise<RepositoryRecord>;
  getRepository(name: string): Promise<RepositoryRecord | null>;
  /** Every repository, sorted by name. */
  listRepositories(): Promise<RepositoryRecord[]>;
  /** Returns the updated record, or null when unknown. */
  updateRepository(name: string, patch: Partial<Pick<RepositoryRecord, 'visibility'>>): Promise<RepositoryRecord | null>;

  /** Appends log lines for one agent; returns them with their seq. */
  appendLogs(agentId: string, lines: NewLogRecord[]): Promise<LogRecord[]>;
  /** Oldest first. */
  listLogs(agentId: string, query?: LogQuery): Promise<LogRecord[]>;

  /** Appends events for one agent, assigning consecutive seq numbers; returns them. */
  appendEvents(agentId: string, events: NewEventRecord[]): Promise<EventRecord[]>;
  /** Events with seq > afterSeq, oldest first, at most `limit` (default 1000). */
  listEvents(agentId: string, afterSeq: number, limit?: number): Promise<EventRecord[]>;
  /** The smallest seq still retained for the agent (0 when none). */
  firstEventSeq(agentId: string): Promise<number>;
  /**
   * The highest seq assigned to an event of the agent so far, pruned ones included (0 when
   * none): every later append gets a higher one. Only committed appends count.
   */
  lastEventSeq(agentId: string): Promise<number>;
  /**
   * Retention: deletes all but the newest `keepLast` events of the agent; returns how many went.
   * Seq numbers are never reused: later appends continue after the highest seq ever assigned.
   */
  pruneEvents(agentId: string, keepLast: number): Promise<number>;

  /** Appends conversation messages for one agent (consecutive seq from 1); returns them. */
  appendMessages(agentId: string, messages: NewMessageRecord[]): Promise<MessageRecord[]>;
  /** The newest `limit` messages (default: all), returned oldest first. */
  listMessages(agentId: string, options?: { limit?: number }): Promise<MessageRecord[]>;
  /** Count and total content bytes of the agent's stored conversation (its "memory"). */
  conversationStats(agentId: string): Promise<{ messages: number; bytes: number }>;

  /**
   * Appends audit entries (migration 8), numbering them with increasing seq in call order;
   * returns them as stored. Entries become visible in seq order (across instances too), so a
   * reader paging by `since` never skips one. Append-only: no method changes or deletes them.
   */
  appendAudit(entries: NewAuditEntry[]): Promise<AuditEntry[]>;
  /** Entries with seq > `since` matching `actor`/`action`, oldest first, at most `limit` (default 100, at most 1000). */
  listAudit(query?: AuditQuery): Promise<AuditEntry[]>;

  /**
   * Creates a run (migration 11), atomically with its idempotency check: when a run of the same
   * agent holds `idempotency_key` and was created less than `idempotencyWindowMs` before
   * `nowMs`, nothing is written and that run comes back (`created: false`, with its request
   * hash); an older holder loses the key (set to null) and the new run is inserted, in the
   * same transaction. The key is unique per agent across instances. `invalid_request` when
   * the agent does not exist, `conflict` when the id is taken.
   */
  createRun(run: NewRunRecord, options: CreateRunOptions): Promise<CreateRunResult>;
  getRun(id: string): Promise<RunRecord | null>;
  /** One agent's runs, newest first (creation order), paged with `before` (see {@link RunQuery}). */
  listRuns(agentId: string, query: RunQuery): Promise<RunRecord[]>;
  /**
   * Applies `patch` and returns the updated run; null when the run is unknown or, with
   * `fromStatus`, its status is none of those (compare-and-set: of two concurrent transitions
   * from the same status, on any instance, exactly one applies). `last_seq` never goes down.
   * Timestamps (`started_at`, `ended_at`, `required_action.expires_at`) are stored in canonical
   * `toISOString()` form, since the sweepers compare them as text. Group-committed on SQLite
   * with the turn's other writes.
   */
  updateRun(id: string, patch: RunPatch, options?: UpdateRunOptions): Promise<RunRecord | null>;
  /**
   * Journals frames of a run (the caller numbers them; a (run, seq) taken already is
   * `conflict` and nothing of the batch is written) and raises the run's `last_seq` to the
   * highest. Frames of a run that no longer exists (its agent was deleted) are dropped.
   * Group-committed on SQLite.
   */
  appendRunFrames(runId: string, frames: RunFrameRow[]): Promise<void>;
  /** Frames with seq > afterSeq, oldest first, at most `limit` (default 1000). */
  listRunFrames(runId: string, afterSeq: number, limit?: number): Promise<RunFrameRow[]>;
  /** Runs of any agent matching every field of `query`, oldest first (sweepers). */
  findRuns(query: RunSearch): Promise<RunRecord[]>;
  /** Retention: deletes the frames of runs that ended before `endedBefore` (RFC 3339); returns how many. */
  pruneRunFrames(endedBefore: string): Promise<number>;

  /** Small server-wide settings (e.g. schema metadata). */
  /** Records a revoked token; recording the same `jti` again keeps one row. */
  addRevokedToken(record: RevokedTokenRecord): Promise<void>;
  /** The revoked tokens that have not expired by `nowMs` (expires_at_ms > nowMs), in no particular order. */
  listRevokedTokens(nowMs: number): Promise<RevokedTokenRecord[]>;
  /** Deletes the rows of tokens expired by `nowMs` (expires_at_ms <= nowMs); returns how many. */
  pruneRevokedTokens(nowMs: number): Promise<number>;

  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string): Promise<void>;
}

/**
 * The message of the `invalid_request` a store rejects with when the database refuses a value
 * for a reason no more specific message covers (a CHECK or NOT NULL constraint, data the
 * database cannot hold). Fixed on purpose: the driver's own text (constraint names, SQL,
 * values) stays in the error's `cause`, which the transports log and never send.
 */
export const STORE_REFUSED_MESSAGE = 'invalid record: the store refused a value';
