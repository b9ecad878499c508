/**
 * Versioned schema of the SQLite store. Each entry is applied once, in order, in its own
 * transaction, and recorded in `schema_migrations`. Never edit a released entry: a database
 * that already recorded its version would silently miss the change. Append a new one.
 */
export interface SqliteMigration {
  /** Strictly increasing, from 1. */
  version: number;
  /** Short human name, recorded next to the version. */
  name: string;
  /** Statements run with `db.exec` inside the migration's transaction. */
  sql: string;
}

/** The table that records applied migrations; created outside the list so it can be read first. */
export const SQLITE_MIGRATIONS_TABLE_SQL = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY NOT NULL,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
);`;

/** Every migration the code knows, oldest first. */
export const sqliteMigrations: SqliteMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE users (
  username      TEXT PRIMARY KEY NOT NULL,
  password_hash TEXT NOT NULL,
  role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
  can_push      INTEGER NOT NULL DEFAULT 0 CHECK (can_push IN (0, 1)),
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL
);

CREATE TABLE images (
  digest        TEXT PRIMARY KEY NOT NULL,
  manifest      TEXT NOT NULL,
  config        TEXT NOT NULL,
  config_digest TEXT NOT NULL,
  size          INTEGER NOT NULL CHECK (size >= 0),
  created_at    TEXT NOT NULL
);

CREATE TABLE image_tags (
  name_tag TEXT PRIMARY KEY NOT NULL,
  digest   TEXT NOT NULL REFERENCES images (digest) ON DELETE CASCADE
);
-- The cascade from images looks tags up by digest; without this it scans the table.
CREATE INDEX image_tags_by_digest ON image_tags (digest);

CREATE TABLE agents (
  id             TEXT PRIMARY KEY NOT NULL,
  name           TEXT NOT NULL,
  owner          TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
  image          TEXT NOT NULL,
  -- RESTRICT: an agent keeps running the exact image it was created from, so that image
  -- cannot vanish while the agent exists.
  image_id       TEXT NOT NULL REFERENCES images (digest) ON DELETE RESTRICT,
  status         TEXT NOT NULL CHECK (status IN ('created', 'running', 'stopped', 'error')),
  model          TEXT NOT NULL,
  parameters     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(parameters)),
  environment    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(environment)),
  usage_requests INTEGER NOT NULL DEFAULT 0,
  usage_tokens   INTEGER NOT NULL DEFAULT 0,
  created_at     TEXT NOT NULL,
  updated_at     TEXT NOT NULL,
  UNIQUE (owner, name)
);
-- (owner, created_at) serves both the owner filter and the newest-first order of listAgents.
CREATE INDEX agents_by_owner ON agents (owner, created_at);
CREATE INDEX agents_by_image ON agents (image_id);

-- Logs and events carry no foreign key to agents: a late line written while an agent is
-- being deleted must not fail the writer. The trigger below removes them with the agent.
CREATE TABLE agent_logs (
  agent_id  TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  timestamp TEXT NOT NULL,
  level     TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
  message   TEXT NOT NULL,
  fields    TEXT CHECK (fields IS NULL OR json_valid(fields)),
  PRIMARY KEY (agent_id, seq)
);
CREATE INDEX agent_logs_by_time ON agent_logs (agent_id, timestamp);

CREATE TABLE agent_events (
  agent_id   TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  timestamp  TEXT NOT NULL,
  content    TEXT NOT NULL,
  data       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
  PRIMARY KEY (agent_id, seq)
);

-- Fires for direct deletes and for the cascade from users alike.
CREATE TRIGGER agents_delete_history AFTER DELETE ON agents
BEGIN
  DELETE FROM agent_logs WHERE agent_id = OLD.id;
  DELETE FROM agent_events WHERE agent_id = OLD.id;
END;

CREATE TABLE meta (
  key   TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'conversation history and event retention',
    sql: `
-- The conversation sent to the model on every turn. Like logs and events, no foreign key:
-- the delete trigger below removes it with the agent.
CREATE TABLE agent_messages (
  agent_id     TEXT NOT NULL,
  seq          INTEGER NOT NULL,
  role         TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
  content      TEXT NOT NULL,
  tool_calls   TEXT CHECK (tool_calls IS NULL OR json_valid(tool_calls)),
  tool_call_id TEXT,
  tool_name    TEXT,
  message_id   TEXT,
  created_at   TEXT NOT NULL,
  PRIMARY KEY (agent_id, seq)
);

-- The highest event seq retention ever deleted, per agent. Event seq numbers are cursors that
-- clients hold (since / Last-Event-ID): pruning every event must not let numbering restart.
CREATE TABLE agent_event_marks (
  agent_id        TEXT PRIMARY KEY NOT NULL,
  last_pruned_seq INTEGER NOT NULL
);

DROP TRIGGER agents_delete_history;
CREATE TRIGGER agents_delete_history AFTER DELETE ON agents
BEGIN
  DELETE FROM agent_logs WHERE agent_id = OLD.id;
  DELETE FROM agent_events WHERE agent_id = OLD.id;
  DELETE FROM agent_event_marks WHERE agent_id = OLD.id;
  DELETE FROM agent_messages WHERE agent_id = OLD.id;
END;
`,
  },
  {
    version: 3,
    name: 'repository owners and visibility',
    sql: `
-- A repository (an image name without its tag) belongs to whoever first created it; only its
-- owner or an admin may tag images in it. No foreign key to users: a repository outlives its
-- owner's account, so its name cannot be taken over by whoever builds next.
CREATE TABLE repositories (
  name       TEXT PRIMARY KEY NOT NULL,
  owner      TEXT NOT NULL,
  visibility TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
  created_at TEXT NOT NULL
);

-- Nobody owned a repository before this version: each existing one goes to the user its
-- namespace (first path component) names, else to "sentinel", which only admins manage.
-- Image names hold no ':' (the tag's separator) and tags hold none either.
INSERT INTO repositories (name, owner, visibility, created_at)
SELECT r.name,
  CASE WHEN r.ns IS NOT NULL AND r.ns <> 'sentinel' AND EXISTS (SELECT 1 FROM users u WHERE u.username = r.ns)
    THEN r.ns ELSE 'sentinel' END,
  'public',
  strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM (
  SELECT DISTINCT substr(name_tag, 1, instr(name_tag, ':') - 1) AS name,
    CASE WHEN instr(name_tag, '/') > 0 THEN substr(name_tag, 1, instr(name_tag, '/') - 1) END AS ns
  FROM image_tags
) r;

-- Agent references by name (an admin's lookup spans every owner; (owner, name) serves the rest).
CREATE INDEX agents_by_name ON agents (name);
`,
  },
  {
    version: 4,
    name: 'user ids and token versions',
    sql: `
-- Tokens are bound to an immutable user id (a re-created username is a new user) and to a
-- version that a password change bumps. Existing users get a random id of their own.
ALTER TABLE users ADD COLUMN id TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
UPDATE users SET id = lower(hex(randomblob(16))) WHERE id = '';
CREATE UNIQUE INDEX users_by_id ON users (id);
`,
  },
  {
    version: 6,
    name: 'api keys',
    sql: `
-- Scoped API keys (auth/api-keys.ts). Only the SHA-256 of a key is kept, looked up by that hash.
-- The owner is the immutable user id: deleting the user deletes its keys. Revoked keys stay
-- (revoked_at set) so an id is never reused and a revocation can be traced.
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY NOT NULL,
  user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  username     TEXT NOT NULL,
  name         TEXT NOT NULL,
  prefix       TEXT NOT NULL,
  hash         TEXT NOT NULL UNIQUE,
  scopes       TEXT NOT NULL CHECK (json_valid(scopes)),
  created_at   TEXT NOT NULL,
  last_used_at TEXT,
  expires_at   TEXT,
  revoked_at   TEXT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);
`,
  },
  {
    // Issue 13 numbers its migrations by feature (keys 6, users 7, audit 8, ...); gaps are fine.
    version: 7,
    name: 'disabled users and quotas',
    sql: `
-- An admin can disable an account (its tokens and keys stop at once) and cap its model usage
-- per UTC day and its agents; NULL is unlimited.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
ALTER TABLE users ADD COLUMN quota_tokens_per_day INTEGER CHECK (quota_tokens_per_day >= 0);
ALTER TABLE users ADD COLUMN quota_turns_per_day INTEGER CHECK (quota_turns_per_day >= 0);
ALTER TABLE users ADD COLUMN quota_concurrent_agents INTEGER CHECK (quota_concurrent_agents >= 0);
`,
  },
  {
    version: 8,
    name: 'audit log',
    sql: `
-- Security-relevant actions (contract/audit.ts), append-only. AUTOINCREMENT: a seq is a
-- reader's cursor (GET /v1/audit?since=) and is never handed out twice, even if rows are
-- deleted by hand. No foreign keys: an entry outlives the user and the object it names.
CREATE TABLE audit_log (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  at         TEXT NOT NULL,
  actor      TEXT,
  action     TEXT NOT NULL,
  target     TEXT,
  address    TEXT,
  request_id TEXT,
  details    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details))
);
-- The two filters of the audit route, each walked in seq order.
CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
`,
  },
  {
    // Versions 6 to 8 belong to other features (keys, users, audit); the runner checks each version on its own.
    version: 9,
    name: 'openid connect identities',
    sql: `
-- Which local user an OpenID Connect (issuer, subject) pair is. The link goes with the user.
CREATE TABLE oidc_identities (
  issuer     TEXT NOT NULL,
  subject    TEXT NOT NULL,
  user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
  PRIMARY KEY (issuer, subject)
);
-- The cascade from users looks links up by user id.
CREATE INDEX oidc_identities_by_user ON oidc_identities (user_id);
`,
  },
  {
    version: 10,
    name: 'revoked tokens',
    sql: `
-- Tokens revoked before their expiry (logout), by jti. A row is useless once the token has
-- expired anyway, so rows are pruned by expires_at_ms.
CREATE TABLE revoked_tokens (
  jti           TEXT PRIMARY KEY NOT NULL,
  username      TEXT NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at_ms);
`,
  },
  {
    version: 11,
    name: 'runs',
    sql: `
-- Every chat turn as a resource (issue 16, runs/types.ts). pos is the rowid (AUTOINCREMENT:
-- never handed out twice), the order of the newest-first lists; the API addresses a run by id.
-- The run goes with its agent (the cascade), its frames with the run.
CREATE TABLE runs (
  pos             INTEGER PRIMARY KEY AUTOINCREMENT,
  id              TEXT NOT NULL UNIQUE,
  agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  owner           TEXT NOT NULL,
  message_id      TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'requires_action', 'completed', 'cancelled', 'failed')),
  input           TEXT NOT NULL CHECK (json_valid(input)),
  output          TEXT CHECK (output IS NULL OR json_valid(output)),
  usage           TEXT NOT NULL CHECK (json_valid(usage)),
  error           TEXT CHECK (error IS NULL OR json_valid(error)),
  required_action TEXT CHECK (required_action IS NULL OR json_valid(required_action)),
  webhook         TEXT,
  last_seq        INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
  idempotency_key TEXT,
  request_hash    TEXT,
  instance_id     TEXT,
  created_at      TEXT NOT NULL,
  started_at      TEXT,
  ended_at        TEXT
);
-- A key names one run per agent; a run past the idempotency window has its key cleared.
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- listRuns (newest first, before-cursor) and the cascade from agents.
CREATE INDEX runs_by_agent ON runs (agent_id, pos);
-- The sweepers (interrupted runs, expired approvals) look runs up by status.
CREATE INDEX runs_by_status ON runs (status, pos);
-- Frame retention looks ended runs up by end time.
CREATE INDEX runs_by_end ON runs (ended_at) WHERE ended_at IS NOT NULL;

-- The journal: one row per written batch of consecutive frames (first_seq..last_seq), body =
-- the frames' exact JSON texts joined with line feeds (JSON.stringify never writes a raw one).
-- A row per batch, not per frame: a chat turn is one INSERT, not eleven. Batches of a run
-- never overlap, so last_seq orders them as first_seq does. A rowid table with an index, not
-- WITHOUT ROWID: a batch is kilobytes, and big rows inside the key's b-tree cost ~30 µs more
-- per insert (measured: a run row plus an 11-frame batch in one commit, 48 against 76 µs).
CREATE TABLE run_frames (
  run_id    TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  first_seq INTEGER NOT NULL CHECK (first_seq > 0),
  last_seq  INTEGER NOT NULL CHECK (last_seq >= first_seq),
  body      TEXT NOT NULL
);
CREATE UNIQUE INDEX run_frames_by_seq ON run_frames (run_id, last_seq);
`,
  },
  {
    version: 12,
    name: 'webhooks',
    sql: `
-- Each user's Standard Webhooks signing secret (whsec_…), made on first use. Kept in clear:
-- the server must sign with it (an HMAC key cannot be stored hashed). Goes with the user.
CREATE TABLE webhook_secrets (
  username   TEXT PRIMARY KEY NOT NULL REFERENCES users (username) ON DELETE CASCADE,
  secret     TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- An agent's default webhook URL (a run's own wins). A table of its own, not a column of
-- agents, so the agent rows and their mappers stay as they are. Goes with the agent.
CREATE TABLE agent_webhooks (
  agent_id TEXT PRIMARY KEY NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  url      TEXT NOT NULL
);

-- One event of one run to one URL. Created once, by the instance that made the run's
-- transition; any instance delivers it after leasing it (claimed_by, claimed_until).
-- No foreign key to runs: deliveries are the webhook feature's, and go with the agent.
CREATE TABLE webhook_deliveries (
  id              TEXT PRIMARY KEY NOT NULL,
  run_id          TEXT NOT NULL,
  agent_id        TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  owner           TEXT NOT NULL,
  event           TEXT NOT NULL CHECK (event IN ('run.completed', 'run.failed', 'run.cancelled', 'run.requires_action')),
  url             TEXT NOT NULL,
  payload         TEXT NOT NULL CHECK (json_valid(payload)),
  status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at TEXT NOT NULL,
  claimed_until   TEXT,
  claimed_by      TEXT,
  created_at      TEXT NOT NULL,
  delivered_at    TEXT
);
-- The dispatcher's question: which pending deliveries are due? Only pending rows are indexed.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id, created_at);
-- The cascade from agents looks deliveries up by agent.
CREATE INDEX webhook_deliveries_by_agent ON webhook_deliveries (agent_id);

CREATE TABLE webhook_attempts (
  delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL CHECK (attempt >= 1),
  at          TEXT NOT NULL,
  status_code INTEGER,
  error       TEXT,
  duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
  PRIMARY KEY (delivery_id, attempt)
);
`,
  },
];
