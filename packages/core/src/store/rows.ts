/**
 * Rows as both stores' tables hold them, and the one set of row ↔ record mappers they share.
 * The tables have the same columns on SQLite and PostgreSQL; what differs is how a driver hands
 * some of them back: SQLite has no boolean or JSON type (0/1 and text), pg returns booleans and
 * jsonb already parsed. Each row type is its record from contract/models.ts with those columns
 * widened, so a field added to a record shows up here.
 */
import type { AuditEntry, NewAuditEntry } from '../contract/audit.js';
import type {
  AgentRecord,
  EventRecord,
  ImageRecord,
  LogRecord,
  MessageRecord,
  NewMessageRecord,
  ToolCallRecord,
  UserRecord,
} from '../contract/models.js';
import type { NewRunRecord, RequiredAction, RunPatch, RunRecord, RunStatus } from '../runs/types.js';
import { canonicalTimestamp, nonNegativeInteger } from './arguments.js';

/** A JSON column as read: text from SQLite, already parsed (jsonb) from pg. Every value stored is an object or array, never a string. */
export type JsonColumn<T> = T | string;

/** A boolean column as read: 0 or 1 from SQLite, a boolean from pg. */
export type FlagColumn = boolean | 0 | 1;

/** A `users` row. */
export type UserRow = Omit<UserRecord, 'can_push' | 'disabled'> & { can_push: FlagColumn; disabled: FlagColumn };

/** An `agents` row as read. */
export type AgentRow = Omit<AgentRecord, 'parameters' | 'environment'> & {
  parameters: JsonColumn<AgentRecord['parameters']>;
  environment: JsonColumn<AgentRecord['environment']>;
};

/** An agent as written: its JSON columns as text, which both drivers accept. */
export type AgentParams = AgentRow & { parameters: string; environment: string };

/** An `images` row: the tags live in their own table. */
export type ImageRow = Omit<ImageRecord, 'tags'>;

/** An `agent_logs` row; `fields` is NULL when the line has none. */
export type LogRow = Omit<LogRecord, 'fields'> & { fields: JsonColumn<NonNullable<LogRecord['fields']>> | null };

/** An `agent_events` row. */
export type EventRow = Omit<EventRecord, 'data'> & { data: JsonColumn<EventRecord['data']> };

/** The message fields that are optional, stored as nullable columns. */
type OptionalMessageField = 'tool_calls' | 'tool_call_id' | 'tool_name' | 'message_id';

/** An `agent_messages` row as read. */
export type MessageRow = Omit<MessageRecord, OptionalMessageField> & {
  tool_calls: JsonColumn<ToolCallRecord[]> | null;
  tool_call_id: string | null;
  tool_name: string | null;
  message_id: string | null;
};

/** A message as written: `tool_calls` as text, which both drivers accept. */
export type MessageParams = MessageRow & { tool_calls: string | null };

/** Column lists, in table order, for SELECT and INSERT on either database. */
export const USER_COLUMNS =
  'id, username, password_hash, role, can_push, token_version, disabled, quota_tokens_per_day, quota_turns_per_day, quota_concurrent_agents, created_at, updated_at';
export const AGENT_COLUMNS = 'id, name, owner, image, image_id, status, model, parameters, environment, usage_requests, usage_tokens, created_at, updated_at';
export const IMAGE_COLUMNS = 'digest, manifest, config, config_digest, size, created_at';
export const REPOSITORY_COLUMNS = 'name, owner, visibility, created_at';
export const LOG_COLUMNS = 'agent_id, seq, timestamp, level, message, fields';
export const EVENT_COLUMNS = 'agent_id, seq, event_type, timestamp, content, data';
export const AUDIT_COLUMNS = 'seq, at, actor, action, target, address, request_id, details';
export const MESSAGE_COLUMNS = 'agent_id, seq, role, content, tool_calls, tool_call_id, tool_name, message_id, created_at';
/** A run's API fields; the internal columns (pos, idempotency_key, request_hash, instance_id) are selected by name where needed. */
export const RUN_COLUMNS = 'id, agent_id, owner, message_id, status, input, output, usage, error, required_action, webhook, last_seq, created_at, started_at, ended_at';
/** Every column a new run is inserted with, in the order of {@link toRunParams}' positional values. */
export const NEW_RUN_COLUMNS = 'id, agent_id, owner, message_id, status, input, usage, webhook, idempotency_key, request_hash, instance_id, created_at';

function fromJson<T>(value: JsonColumn<T>): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** The record of a `users` row. */
export function toUser(row: UserRow): UserRecord {
  return {
    ...row,
    can_push: row.can_push === true || row.can_push === 1,
    disabled: row.disabled === true || row.disabled === 1,
    // pg returns BIGINT as text; the quotas fit in a double.
    quota_tokens_per_day: row.quota_tokens_per_day === null ? null : Number(row.quota_tokens_per_day),
    quota_turns_per_day: row.quota_turns_per_day === null ? null : Number(row.quota_turns_per_day),
    quota_concurrent_agents: row.quota_concurrent_agents === null ? null : Number(row.quota_concurrent_agents),
  };
}

/** The row an agent is inserted as (absent JSON objects stored as `{}`). */
export function toAgentParams(agent: AgentRecord): AgentParams {
  return { ...agent, parameters: JSON.stringify(agent.parameters ?? {}), environment: JSON.stringify(agent.environment ?? {}) };
}

/** The record of an `agents` row. */
export function toAgent(row: AgentRow): AgentRecord {
  return { ...row, parameters: fromJson(row.parameters), environment: fromJson(row.environment) };
}

/** The record of an `agent_logs` row; a NULL `fields` is left out. */
export function toLog(row: LogRow): LogRecord {
  const { fields, ...rest } = row;
  return fields === null ? rest : { ...rest, fields: fromJson(fields) };
}

/** The record of an `agent_events` row. */
export function toEvent(row: EventRow): EventRecord {
  return { ...row, data: fromJson(row.data) };
}

/** The row `message` is inserted as, under `agentId` and `seq` whatever its own fields say. */
export function toMessageParams(agentId: string, seq: number, message: NewMessageRecord): MessageParams {
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
export function toMessage(row: MessageRow): MessageRecord {
  const record: MessageRecord = { agent_id: row.agent_id, seq: row.seq, role: row.role, content: row.content, created_at: row.created_at };
  if (row.tool_calls !== null) record.tool_calls = fromJson(row.tool_calls);
  if (row.tool_call_id !== null) record.tool_call_id = row.tool_call_id;
  if (row.tool_name !== null) record.tool_name = row.tool_name;
  if (row.message_id !== null) record.message_id = row.message_id;
  return record;
}

/** An `audit_log` row as read. */
export type AuditRow = Omit<AuditEntry, 'details'> & { details: JsonColumn<AuditEntry['details']> };

/** The record of an `audit_log` row. */
export function toAudit(row: AuditRow): AuditEntry {
  return { ...row, details: fromJson(row.details) };
}

/** An entry's columns as written: details as JSON text, which both drivers accept. */
export function toAuditParams(entry: NewAuditEntry): Omit<AuditRow, 'seq'> & { details: string } {
  return {
    at: entry.at,
    actor: entry.actor,
    action: entry.action,
    target: entry.target,
    address: entry.address,
    request_id: entry.request_id,
    details: JSON.stringify(entry.details ?? {}),
  };
}

/** The JSON fields of a run. */
type RunJsonField = 'input' | 'output' | 'usage' | 'error' | 'required_action';

/** A `runs` row as read (its API columns). */
export type RunRow = Omit<RunRecord, RunJsonField> & {
  input: JsonColumn<RunRecord['input']>;
  output: JsonColumn<NonNullable<RunRecord['output']>> | null;
  usage: JsonColumn<RunRecord['usage']>;
  error: JsonColumn<NonNullable<RunRecord['error']>> | null;
  required_action: JsonColumn<RequiredAction> | null;
};

function fromNullableJson<T>(value: JsonColumn<T> | null): T | null {
  return value === null ? null : fromJson(value);
}

/** The record of a `runs` row (pg's BIGINT arrives as a number through the store's type parser, SQLite's as one anyway). */
export function toRun(row: RunRow): RunRecord {
  return {
    id: row.id,
    agent_id: row.agent_id,
    owner: row.owner,
    message_id: row.message_id,
    status: row.status,
    input: fromJson(row.input),
    output: fromNullableJson(row.output),
    usage: fromJson(row.usage),
    error: fromNullableJson(row.error),
    required_action: fromNullableJson(row.required_action),
    webhook: row.webhook,
    last_seq: Number(row.last_seq),
    created_at: row.created_at,
    started_at: row.started_at,
    ended_at: row.ended_at,
  };
}

/** A new run's column values in {@link NEW_RUN_COLUMNS} order: JSON as text, the timestamp canonical (it is compared as text against the idempotency window). */
export function toRunParams(run: NewRunRecord): [string, string, string, string, RunStatus, string, string, string | null, string | null, string | null, string | null, string] {
  return [
    run.id,
    run.agent_id,
    run.owner,
    run.message_id,
    run.status,
    JSON.stringify(run.input),
    JSON.stringify(run.usage),
    run.webhook,
    run.idempotency_key,
    run.request_hash,
    run.instance_id,
    canonicalTimestamp(run.created_at, 'run created_at'),
  ];
}

/**
 * A {@link RunPatch} as both stores' UPDATE binds it: a null value keeps a NOT NULL column, and
 * each nullable column has a `set_*` flag saying whether to write it (null included). JSON as
 * text; timestamps canonical, since sweepers and retention compare them as text.
 */
export interface RunPatchParams {
  status: RunStatus | null;
  set_output: boolean;
  output: string | null;
  usage: string | null;
  set_error: boolean;
  error: string | null;
  set_required_action: boolean;
  required_action: string | null;
  set_started_at: boolean;
  started_at: string | null;
  set_ended_at: boolean;
  ended_at: string | null;
  set_instance_id: boolean;
  instance_id: string | null;
  last_seq: number | null;
}

/** The bind values of `patch` (see {@link RunPatchParams}). */
export function toRunPatchParams(patch: RunPatch): RunPatchParams {
  const json = (value: unknown): string | null => (value === null || value === undefined ? null : JSON.stringify(value));
  const time = (value: string | null | undefined, what: string): string | null => (value === null || value === undefined ? null : canonicalTimestamp(value, what));
  const action = patch.required_action;
  return {
    status: patch.status ?? null,
    set_output: patch.output !== undefined,
    output: json(patch.output),
    usage: json(patch.usage),
    set_error: patch.error !== undefined,
    error: json(patch.error),
    set_required_action: action !== undefined,
    required_action: json(action === null || action === undefined ? action : { ...action, expires_at: canonicalTimestamp(action.expires_at, 'required_action.expires_at') }),
    set_started_at: patch.started_at !== undefined,
    started_at: time(patch.started_at, 'started_at'),
    set_ended_at: patch.ended_at !== undefined,
    ended_at: time(patch.ended_at, 'ended_at'),
    set_instance_id: patch.instance_id !== undefined,
    instance_id: patch.instance_id ?? null,
    last_seq: patch.last_seq === undefined ? null : nonNegativeInteger(patch.last_seq, 'last_seq'),
  };
}
