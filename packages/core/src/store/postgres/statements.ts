/**
 * The PostgreSQL store's SQL that is built from parts or used by several methods: the image
 * select with its tags, the log filter, and the appends that reserve their seq range. The
 * one-off statements stay next to the method that runs them.
 */
import { AUDIT_COLUMNS, EVENT_COLUMNS, IMAGE_COLUMNS, LOG_COLUMNS, MESSAGE_COLUMNS } from '../rows.js';

/** The tags ride along in the same query: one round trip per image list, sorted like SQLite's BINARY. */
export const IMAGE_SELECT = `SELECT ${IMAGE_COLUMNS},
  ARRAY(SELECT t.name_tag FROM image_tags t WHERE t.digest = images.digest ORDER BY t.name_tag) AS tags FROM images`;
/** The WHERE of listLogs: $1 agent, $2 after seq, $3 since (canonical timestamp), $4 the levels wanted. */
export const LOG_FILTER_SQL = 'agent_id = $1 AND seq > $2 AND timestamp >= $3 AND level = ANY($4::text[])';

/**
 * Advances the agent's counter of one kind by $2 and returns the seq just before the new range.
 * The upsert takes the counter row's lock; a concurrent append of the same agent (any instance)
 * waits for this transaction and then continues from its result, so ranges are consecutive and
 * rows become visible in seq order.
 */
function reserveSql(kind: 'log' | 'event' | 'message'): string {
  return `counter AS (
    INSERT INTO agent_sequences AS s (agent_id, kind, last_seq) VALUES ($1, '${kind}', $2::bigint)
    ON CONFLICT (agent_id, kind) DO UPDATE SET last_seq = s.last_seq + EXCLUDED.last_seq
    RETURNING s.last_seq - $2::bigint AS base
  )`;
}

/** Appends log lines: $1 agent, $2 count, then one array per column. Returns the seq before the new rows. */
export const APPEND_LOGS_SQL = `WITH ${reserveSql('log')}, inserted AS (
    INSERT INTO agent_logs (${LOG_COLUMNS})
    SELECT $1, counter.base + l.ord, l.timestamp, l.level, l.message, l.fields
    FROM counter, unnest($3::text[], $4::text[], $5::text[], $6::jsonb[]) WITH ORDINALITY AS l(timestamp, level, message, fields, ord)
  )
  SELECT base FROM counter`;

/** Appends events, like {@link APPEND_LOGS_SQL}. */
export const APPEND_EVENTS_SQL = `WITH ${reserveSql('event')}, inserted AS (
    INSERT INTO agent_events (${EVENT_COLUMNS})
    SELECT $1, counter.base + e.ord, e.event_type, e.timestamp, e.content, e.data
    FROM counter, unnest($3::text[], $4::text[], $5::text[], $6::jsonb[]) WITH ORDINALITY AS e(event_type, timestamp, content, data, ord)
  )
  SELECT base FROM counter`;

/** Appends messages, like {@link APPEND_LOGS_SQL}. */
export const APPEND_MESSAGES_SQL = `WITH ${reserveSql('message')}, inserted AS (
    INSERT INTO agent_messages (${MESSAGE_COLUMNS})
    SELECT $1, counter.base + m.ord, m.role, m.content, m.tool_calls, m.tool_call_id, m.tool_name, m.message_id, m.created_at
    FROM counter, unnest($3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::text[], $9::text[])
      WITH ORDINALITY AS m(role, content, tool_calls, tool_call_id, tool_name, message_id, created_at, ord)
  )
  SELECT base FROM counter`;


/**
 * Appends audit entries: $1 count, then one array per column. Returns the seq before the new
 * rows. The UPDATE of the single counter row serialises appenders on every instance, so rows
 * commit in seq order (see migration 8).
 */
export const APPEND_AUDIT_SQL = `WITH counter AS (
    UPDATE audit_sequence SET last_seq = last_seq + $1::bigint WHERE id = 1
    RETURNING last_seq - $1::bigint AS base
  ), inserted AS (
    INSERT INTO audit_log (${AUDIT_COLUMNS})
    SELECT counter.base + a.ord, a.at, a.actor, a.action, a.target, a.address, a.request_id, a.details
    FROM counter, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
      WITH ORDINALITY AS a(at, actor, action, target, address, request_id, details, ord)
  )
  SELECT base FROM counter`;
