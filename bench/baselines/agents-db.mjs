// The agents table as a baseline author would use it: better-sqlite3 with the pragmas any WAL
// guide recommends, statements prepared once, the same list query the server runs, and the
// same resource shape in the answer (so every contender sends the same bytes).
import { randomBytes } from 'node:crypto';
import { Database } from './deps.mjs';

const COLUMNS = 'id, name, owner, image, image_id, status, model, parameters, environment, usage_requests, usage_tokens, created_at, updated_at';

/** The API shape of an agent row; `host` is the request's Host header (for the ws:// endpoints). */
export function toResource(row, host) {
  const base = `ws://${host}/v1/agents/${encodeURIComponent(row.id)}`;
  return {
    id: row.id,
    name: row.name,
    image: row.image,
    image_id: row.image_id,
    status: row.status,
    created_at: row.created_at,
    updated_at: row.updated_at,
    model: row.model,
    owner: row.owner,
    parameters: JSON.parse(row.parameters),
    environment: Object.keys(JSON.parse(row.environment)).sort(),
    api_usage: { requests: row.usage_requests, tokens: row.usage_tokens },
    endpoints: { chat: `${base}/chat`, events: `${base}/events` },
  };
}

/** Opens the seeded database file. */
export function openAgentsDb(path) {
  const db = new Database(path, { timeout: 5000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  const list = db.prepare(`SELECT ${COLUMNS} FROM agents WHERE owner = ? ORDER BY created_at DESC, rowid DESC`);
  const resolveTag = db.prepare('SELECT digest FROM image_tags WHERE name_tag = ?').pluck();
  const imageConfig = db.prepare('SELECT config FROM images WHERE digest = ?').pluck();
  const insert = db.prepare(`INSERT INTO agents (${COLUMNS}) VALUES (@id, @name, @owner, @image, @image_id, @status, @model,
    @parameters, @environment, @usage_requests, @usage_tokens, @created_at, @updated_at)`);

  return {
    listAgents(owner, host) {
      return list.all(owner).map((row) => toResource(row, host));
    },
    /** Inserts a running agent from `body.image` (a name:tag); null when the image is unknown. */
    createAgent(owner, body, host) {
      const ref = body.image.includes(':') ? body.image : `${body.image}:latest`;
      const digest = resolveTag.get(ref);
      if (digest === undefined) return null;
      const config = JSON.parse(imageConfig.get(digest));
      const id = randomBytes(8).toString('hex');
      const now = new Date().toISOString();
      const row = {
        id,
        name: body.name ?? `${config.name.split('/').pop()}-${id.slice(0, 6)}`,
        owner,
        image: ref,
        image_id: digest,
        status: 'running',
        model: `${config.model.provider}/${config.model.name}`,
        parameters: JSON.stringify({ ...config.model.parameters, ...body.parameters }),
        environment: JSON.stringify(body.environment ?? {}),
        usage_requests: 0,
        usage_tokens: 0,
        created_at: now,
        updated_at: now,
      };
      insert.run(row);
      return toResource(row, host);
    },
  };
}

/** The body schema of POST /v1/agents, as the server declares it. */
export const CREATE_AGENT_BODY_SCHEMA = {
  type: 'object',
  properties: {
    image: { type: 'string', minLength: 1, maxLength: 256 },
    name: { type: 'string', pattern: '^[\\p{L}\\p{N}][\\p{L}\\p{N} ._-]{0,63}$' },
    parameters: { type: 'object', maxProperties: 64 },
    environment: {
      type: 'object',
      maxProperties: 64,
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' },
      additionalProperties: { type: 'string', maxLength: 4096 },
    },
  },
  required: ['image'],
  additionalProperties: false,
};
