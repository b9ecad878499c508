/**
 * Versioned schema of the PostgreSQL store: the SQLite migrations (store/sqlite/migrations.ts)
 * expressed for PostgreSQL, with the same versions and names. They are applied in one
 * transaction under an advisory lock, so several instances starting at once queue instead of
 * racing, and each version is recorded in `schema_migrations`. Never edit a released entry:
 * a database that already recorded its version would silently miss the change. Append one.
 *
 * Differences from SQLite, each for a reason:
 * - Text keys, digests and ISO timestamps use `COLLATE "C"`: byte order, like SQLite's BINARY,
 *   so `ORDER BY created_at`, the digest prefix range and `since` compare exactly as there
 *   (a linguistic collation may ignore punctuation).
 * - JSON columns are `jsonb` (validated by the server); images keep their manifest and config
 *   as `text`, because their sha256 digests are over the exact bytes.
 * - `ordinal` (an identity column) breaks ties in newest-first lists the way SQLite's rowid does.
 * - Per-agent sequence numbers come from one counter row per agent and kind (`agent_sequences`),
 *   advanced by an upsert: the row lock serialises concurrent appends from every instance, and
 *   the counter never goes back when events are pruned, which replaces SQLite's
 *   `agent_event_marks` high-water mark.
 * - The history of a deleted agent goes through a trigger function, as in SQLite.
 * - Version 5 (the embedded registry's tables) exists only here: with SQLite the embedded
 *   registry is the OCI layouts in the data directory.
 */
export interface PostgresMigration {
  /** Strictly increasing, from 1 (the same numbers as the SQLite migrations, but for PostgreSQL-only ones such as 5). */
  version: number;
  /** Short human name, recorded next to the version. */
  name: string;
  /** Statements run as one simple-protocol query inside the migration transaction. */
  sql: string;
}

/** The table that records applied migrations; created outside the list so it can be read first. */
export const POSTGRES_MIGRATIONS_TABLE_SQL = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
);`;

/** Every migration the code knows, oldest first. */
export const postgresMigrations: PostgresMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE users (
  username      TEXT COLLATE "C" PRIMARY KEY,
  password_hash TEXT NOT NULL,
  role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
  can_push      BOOLEAN NOT NULL DEFAULT FALSE,
  created_at    TEXT COLLATE "C" NOT NULL,
  updated_at    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE images (
  digest        TEXT COLLATE "C" PRIMARY KEY,
  manifest      TEXT NOT NULL,
  config        TEXT NOT NULL,
  config_digest TEXT NOT NULL,
  size          BIGINT NOT NULL CHECK (size >= 0),
  created_at    TEXT COLLATE "C" NOT NULL,
  ordinal       BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE image_tags (
  name_tag TEXT COLLATE "C" PRIMARY KEY,
  digest   TEXT COLLATE "C" NOT NULL REFERENCES images (digest) ON DELETE CASCADE
);
-- The cascade from images and the tag list of an image look tags up by digest.
CREATE INDEX image_tags_by_digest ON image_tags (digest);

CREATE TABLE agents (
  id             TEXT COLLATE "C" PRIMARY KEY,
  name           TEXT NOT NULL,
  owner          TEXT COLLATE "C" NOT NULL REFERENCES users (username) ON DELETE CASCADE,
  image          TEXT NOT NULL,
  -- RESTRICT: an agent keeps running the exact image it was created from, so that image
  -- cannot vanish while the agent exists.
  image_id       TEXT COLLATE "C" NOT NULL REFERENCES images (digest) ON DELETE RESTRICT,
  status         TEXT NOT NULL CHECK (status IN ('created', 'running', 'stopped', 'error')),
  model          TEXT NOT NULL,
  parameters     JSONB NOT NULL DEFAULT '{}',
  environment    JSONB NOT NULL DEFAULT '{}',
  usage_requests BIGINT NOT NULL DEFAULT 0,
  usage_tokens   BIGINT NOT NULL DEFAULT 0,
  created_at     TEXT COLLATE "C" NOT NULL,
  updated_at     TEXT COLLATE "C" NOT NULL,
  ordinal        BIGINT GENERATED ALWAYS AS IDENTITY,
  CONSTRAINT agents_owner_name_key UNIQUE (owner, name)
);
-- (owner, created_at) serves both the owner filter and the newest-first order of listAgents.
CREATE INDEX agents_by_owner ON agents (owner, created_at);
CREATE INDEX agents_by_image ON agents (image_id);

-- Logs and events carry no foreign key to agents: a late line written while an agent is
-- being deleted must not fail the writer. The trigger below removes them with the agent.
CREATE TABLE agent_logs (
  agent_id  TEXT COLLATE "C" NOT NULL,
  seq       BIGINT NOT NULL,
  timestamp TEXT COLLATE "C" NOT NULL,
  level     TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
  message   TEXT NOT NULL,
  fields    JSONB,
  PRIMARY KEY (agent_id, seq)
);
CREATE INDEX agent_logs_by_time ON agent_logs (agent_id, timestamp);

CREATE TABLE agent_events (
  agent_id   TEXT COLLATE "C" NOT NULL,
  seq        BIGINT NOT NULL,
  event_type TEXT NOT NULL,
  timestamp  TEXT NOT NULL,
  content    TEXT NOT NULL,
  data       JSONB NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, seq)
);

-- The last seq handed out per agent and kind. Appends advance it with one upsert whose row
-- lock makes concurrent appenders (on any instance) take consecutive ranges in turn.
CREATE TABLE agent_sequences (
  agent_id TEXT COLLATE "C" NOT NULL,
  kind     TEXT NOT NULL CHECK (kind IN ('log', 'event', 'message')),
  last_seq BIGINT NOT NULL,
  PRIMARY KEY (agent_id, kind)
);

-- SET search_path FROM CURRENT: the body finds the tables of the schema it was created in,
-- whatever the search_path of the session that deletes the agent.
CREATE FUNCTION sentinel_delete_agent_history() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  DELETE FROM agent_logs WHERE agent_id = OLD.id;
  DELETE FROM agent_events WHERE agent_id = OLD.id;
  DELETE FROM agent_sequences WHERE agent_id = OLD.id;
  RETURN NULL;
END;
$$;

-- Fires for direct deletes and for the cascade from users alike.
CREATE TRIGGER agents_delete_history AFTER DELETE ON agents
FOR EACH ROW EXECUTE FUNCTION sentinel_delete_agent_history();

CREATE TABLE meta (
  key   TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'conversation history and event retention',
    sql: `
-- The conversation sent to the model on every turn. Like logs and events, no foreign key:
-- the delete trigger removes it with the agent. (Event retention needs no table here: the
-- agent_sequences counter already never goes back when events are pruned.)
CREATE TABLE agent_messages (
  agent_id     TEXT COLLATE "C" NOT NULL,
  seq          BIGINT NOT NULL,
  role         TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
  content      TEXT NOT NULL,
  tool_calls   JSONB,
  tool_call_id TEXT,
  tool_name    TEXT,
  message_id   TEXT,
  created_at   TEXT NOT NULL,
  PRIMARY KEY (agent_id, seq)
);

CREATE OR REPLACE FUNCTION sentinel_delete_agent_history() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
  DELETE FROM agent_logs WHERE agent_id = OLD.id;
  DELETE FROM agent_events WHERE agent_id = OLD.id;
  DELETE FROM agent_messages WHERE agent_id = OLD.id;
  DELETE FROM agent_sequences WHERE agent_id = OLD.id;
  RETURN NULL;
END;
$$;
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
  name       TEXT COLLATE "C" PRIMARY KEY,
  owner      TEXT COLLATE "C" NOT NULL,
  visibility TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
  created_at TEXT COLLATE "C" NOT NULL
);

-- Nobody owned a repository before this version: each existing one goes to the user its
-- namespace (first path component) names, else to "sentinel", which only admins manage.
INSERT INTO repositories (name, owner, visibility, created_at)
SELECT r.name,
  CASE WHEN r.ns IS NOT NULL AND r.ns <> 'sentinel' AND EXISTS (SELECT 1 FROM users u WHERE u.username = r.ns)
    THEN r.ns ELSE 'sentinel' END,
  'public',
  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
FROM (
  SELECT DISTINCT split_part(name_tag, ':', 1) AS name,
    CASE WHEN position('/' IN name_tag) > 0 THEN split_part(name_tag, '/', 1) END AS ns
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
ALTER TABLE users ADD COLUMN id TEXT COLLATE "C";
UPDATE users SET id = replace(gen_random_uuid()::text, '-', '');
ALTER TABLE users ALTER COLUMN id SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_id_key UNIQUE (id);
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
`,
  },
  {
    // PostgreSQL only (SQLite keeps the embedded registry in the data directory's OCI layouts),
    // so SQLite has no version 5: the runners check each version on its own.
    version: 5,
    name: 'embedded registry in the database',
    sql: `
-- The embedded OCI registry, shared by every instance on this database. A blob is content-
-- addressed: its row and all its chunks are written in one transaction, checked against the
-- digest before the commit, so a reader never sees a partial or wrong blob.
CREATE TABLE registry_blobs (
  digest      TEXT COLLATE "C" PRIMARY KEY CHECK (digest ~ '^sha256:[a-f0-9]{64}$'),
  size        BIGINT NOT NULL CHECK (size >= 0),
  chunk_count INTEGER NOT NULL CHECK (chunk_count >= 0),
  created_at  TEXT NOT NULL
);

-- At most 256 KiB each (the backend's chunk size), numbered from 0.
CREATE TABLE registry_blob_chunks (
  digest TEXT COLLATE "C" NOT NULL REFERENCES registry_blobs (digest) ON DELETE CASCADE,
  idx    INTEGER NOT NULL CHECK (idx >= 0),
  bytes  BYTEA NOT NULL CHECK (octet_length(bytes) <= 262144),
  PRIMARY KEY (digest, idx)
);

-- The manifests a repository holds (what an OCI layout's index.json lists); a repository
-- exists while it holds one.
CREATE TABLE registry_manifests (
  repository TEXT COLLATE "C" NOT NULL,
  digest     TEXT COLLATE "C" NOT NULL REFERENCES registry_blobs (digest),
  media_type TEXT NOT NULL,
  size       BIGINT NOT NULL CHECK (size >= 0),
  created_at TEXT NOT NULL,
  PRIMARY KEY (repository, digest)
);

-- Tags: the last push of a tag wins (an upsert on the key).
CREATE TABLE registry_tags (
  repository TEXT COLLATE "C" NOT NULL,
  tag        TEXT COLLATE "C" NOT NULL,
  digest     TEXT COLLATE "C" NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (repository, tag),
  FOREIGN KEY (repository, digest) REFERENCES registry_manifests (repository, digest)
);
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
  id           TEXT COLLATE "C" PRIMARY KEY,
  user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  username     TEXT COLLATE "C" NOT NULL,
  name         TEXT NOT NULL,
  prefix       TEXT NOT NULL,
  hash         TEXT COLLATE "C" NOT NULL UNIQUE,
  scopes       TEXT[] NOT NULL,
  created_at   TEXT COLLATE "C" NOT NULL,
  last_used_at TEXT COLLATE "C",
  expires_at   TEXT COLLATE "C",
  revoked_at   TEXT COLLATE "C"
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
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN quota_tokens_per_day BIGINT CHECK (quota_tokens_per_day >= 0);
ALTER TABLE users ADD COLUMN quota_turns_per_day BIGINT CHECK (quota_turns_per_day >= 0);
ALTER TABLE users ADD COLUMN quota_concurrent_agents BIGINT CHECK (quota_concurrent_agents >= 0);
`,
  },
  {
    version: 8,
    name: 'audit log',
    sql: `
-- Security-relevant actions (contract/audit.ts), append-only. No foreign keys: an entry
-- outlives the user and the object it names.
CREATE TABLE audit_log (
  seq        BIGINT PRIMARY KEY,
  at         TEXT COLLATE "C" NOT NULL,
  actor      TEXT COLLATE "C",
  action     TEXT COLLATE "C" NOT NULL,
  target     TEXT,
  address    TEXT,
  request_id TEXT,
  details    JSONB NOT NULL DEFAULT '{}'
);
-- The two filters of the audit route, each walked in seq order.
CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);

-- The last seq handed out, in one row. An identity column would number rows in the order
-- their INSERTs ran, not the order they commit, so a reader paging by seq could pass a row
-- that commits later with a lower number. Appends advance this counter with an UPDATE whose
-- row lock makes concurrent appenders (any instance) commit in seq order.
CREATE TABLE audit_sequence (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  last_seq BIGINT NOT NULL
);
INSERT INTO audit_sequence (id, last_seq) VALUES (1, 0);
`,
  },
  {
    // Versions 6 to 8 belong to other features (keys, users, audit); the runner checks each version on its own.
    version: 9,
    name: 'openid connect identities',
    sql: `
-- Which local user an OpenID Connect (issuer, subject) pair is. The link goes with the user.
CREATE TABLE oidc_identities (
  issuer     TEXT COLLATE "C" NOT NULL,
  subject    TEXT COLLATE "C" NOT NULL,
  user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
  jti           TEXT COLLATE "C" PRIMARY KEY,
  username      TEXT COLLATE "C" NOT NULL,
  expires_at_ms BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at_ms);
`,
  },
  {
    version: 11,
    name: 'runs',
    sql: `
-- Every chat turn as a resource (issue 16, runs/types.ts). pos (an identity column) orders the
-- newest-first lists; the API addresses a run by id. The run goes with its agent (the cascade),
-- its frames with the run. Frames are TEXT, not jsonb: the journal returns the exact text sent.
CREATE TABLE runs (
  id              TEXT COLLATE "C" PRIMARY KEY,
  pos             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
  agent_id        TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  owner           TEXT COLLATE "C" NOT NULL,
  message_id      TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'requires_action', 'completed', 'cancelled', 'failed')),
  input           JSONB NOT NULL,
  output          JSONB,
  usage           JSONB NOT NULL,
  error           JSONB,
  required_action JSONB,
  webhook         TEXT,
  last_seq        BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
  idempotency_key TEXT COLLATE "C",
  request_hash    TEXT,
  instance_id     TEXT COLLATE "C",
  created_at      TEXT COLLATE "C" NOT NULL,
  started_at      TEXT COLLATE "C",
  ended_at        TEXT COLLATE "C"
);
-- A key names one run per agent; a run past the idempotency window has its key cleared.
-- createRun's INSERT ... ON CONFLICT relies on this index across instances.
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- listRuns (newest first, before-cursor) and the cascade from agents.
CREATE INDEX runs_by_agent ON runs (agent_id, pos);
-- The sweepers (interrupted runs, expired approvals) look runs up by status.
CREATE INDEX runs_by_status ON runs (status, pos);
-- Frame retention looks ended runs up by end time.
CREATE INDEX runs_by_end ON runs (ended_at) WHERE ended_at IS NOT NULL;

-- One row per written batch of consecutive frames, body = their JSON texts joined with line
-- feeds (see the SQLite migration). Batches of a run never overlap: last_seq orders them.
CREATE TABLE run_frames (
  run_id    TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  first_seq BIGINT NOT NULL CHECK (first_seq > 0),
  last_seq  BIGINT NOT NULL CHECK (last_seq >= first_seq),
  body      TEXT NOT NULL,
  PRIMARY KEY (run_id, last_seq)
);
`,
  },
  {
    version: 12,
    name: 'webhooks',
    sql: `
-- Each user's Standard Webhooks signing secret (whsec_…), made on first use. Kept in clear:
-- the server must sign with it (an HMAC key cannot be stored hashed). Goes with the user.
CREATE TABLE webhook_secrets (
  username   TEXT COLLATE "C" PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
  secret     TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- An agent's default webhook URL (a run's own wins). A table of its own, not a column of
-- agents, so the agent rows and their mappers stay as they are. Goes with the agent.
CREATE TABLE agent_webhooks (
  agent_id TEXT COLLATE "C" PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
  url      TEXT NOT NULL
);

-- One event of one run to one URL. Created once, by the instance that made the run's
-- transition; any instance delivers it after leasing it (claimed_by, claimed_until).
-- No foreign key to runs: deliveries are the webhook feature's, and go with the agent.
CREATE TABLE webhook_deliveries (
  id              TEXT COLLATE "C" PRIMARY KEY,
  run_id          TEXT COLLATE "C" NOT NULL,
  agent_id        TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  owner           TEXT COLLATE "C" NOT NULL,
  event           TEXT NOT NULL CHECK (event IN ('run.completed', 'run.failed', 'run.cancelled', 'run.requires_action')),
  url             TEXT NOT NULL,
  -- text, not jsonb: the signature is over these exact bytes.
  payload         TEXT NOT NULL,
  status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at TEXT COLLATE "C" NOT NULL,
  claimed_until   TEXT COLLATE "C",
  claimed_by      TEXT COLLATE "C",
  created_at      TEXT COLLATE "C" NOT NULL,
  delivered_at    TEXT,
  ordinal         BIGINT GENERATED ALWAYS AS IDENTITY
);
-- The dispatcher's question: which pending deliveries are due? Only pending rows are indexed.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_run ON webhook_deliveries (run_id, created_at, ordinal);
-- The cascade from agents looks deliveries up by agent.
CREATE INDEX webhook_deliveries_by_agent ON webhook_deliveries (agent_id);

CREATE TABLE webhook_attempts (
  delivery_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
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
