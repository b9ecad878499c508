/**
 * Frames a chat client sends (docs/ARCHITECTURE.md#the-protocol), parsed and validated. The schemas are compiled
 * once, at import; a bad frame becomes a SentinelError the session turns into an `error` frame,
 * with the frame's `message_id`/`request_id` when it had a readable one.
 */
import { SentinelError } from '../contract/errors.js';
import { TOOL_NAME_PATTERN } from '../images/sentinelfile.js';
import type { JsonSchema } from '../contract/route.js';
import { compileJsonLimits, type JsonLimitsCheck } from '../contract/json-limits.js';
import { compileValidator, type Validator } from '../contract/validation.js';
import { CLIENT_ID_PATTERN } from '../contract/ids.js';

/** Longest chat message, in characters. */
export const MAX_MESSAGE_CHARS = 100_000;
/** Longest client frame the core parses, in characters (transports cap payloads lower). */
export const MAX_CLIENT_FRAME_CHARS = 1_048_576;

export interface ClientMessageFrame {
  type: 'message';
  content: string;
  message_id?: string;
  /** Stream the answer (`stream_start`, chunks, `stream_end`) or send one `response`. Default true. */
  stream?: boolean;
  /** Cancel the message's run when this socket closes before it ended. Default false: the run goes on (`resume` it). */
  cancel_on_disconnect?: boolean;
}

export interface ClientToolRequestFrame {
  type: 'tool_request';
  tool: string;
  /** Default `{}`. */
  parameters?: Record<string, unknown>;
  request_id?: string;
}

/** Cancels a message's run, by `message_id` or by `run_id` (one of them is required). */
export interface ClientCancelFrame {
  type: 'cancel';
  message_id?: string;
  run_id?: string;
}

/** Replays a run's frames after `since` (default 0: all of them), then its live ones until its terminal frame. */
export interface ClientResumeFrame {
  type: 'resume';
  run_id: string;
  since?: number;
}

/**
 * A person's decision on a `tool_approval_required` request of the agent's run waiting for one
 * (README "Tool approval"); a refusal's `reason` reaches the model.
 */
export interface ClientToolApprovalFrame {
  type: 'tool_approval';
  request_id: string;
  approve: boolean;
  /** Why (at most 2000 characters). Default none. */
  reason?: string;
}

export type ClientFrame = ClientMessageFrame | ClientToolRequestFrame | ClientCancelFrame | ClientResumeFrame | ClientToolApprovalFrame;

export type ParsedClientFrame =
  | { ok: true; frame: ClientFrame }
  | { ok: false; error: SentinelError; ids: { message_id?: string; request_id?: string; run_id?: string } };

const id = { type: 'string', pattern: CLIENT_ID_PATTERN };
/** The shape of a run id (`run_` and 24 hex digits). */
export const RUN_ID_PATTERN = '^run_[0-9a-f]{24}$';
const runId = { type: 'string', pattern: RUN_ID_PATTERN };
/** The shape of a tool approval request id (`apr_` and 16 hex digits). */
export const APPROVAL_REQUEST_ID_PATTERN = '^apr_[0-9a-f]{16}$';
/** Longest reason of a tool approval decision, in characters (it is shown to the model and journaled). */
export const MAX_APPROVAL_REASON_CHARS = 2_000;
// Clients often stamp their frames like the server does; a timestamp is accepted and ignored.
const timestamp = { type: 'string', maxLength: 64 };

export const CLIENT_FRAME_SCHEMAS: Record<ClientFrame['type'], JsonSchema> = {
  message: {
    type: 'object',
    properties: {
      type: { const: 'message' },
      content: { type: 'string', minLength: 1, maxLength: MAX_MESSAGE_CHARS },
      message_id: id,
      stream: { type: 'boolean' },
      cancel_on_disconnect: { type: 'boolean' },
      timestamp,
    },
    required: ['type', 'content'],
    additionalProperties: false,
  },
  tool_request: {
    type: 'object',
    properties: {
      type: { const: 'tool_request' },
      tool: { type: 'string', pattern: TOOL_NAME_PATTERN },
      parameters: { type: 'object', maxProperties: 64 },
      request_id: id,
      timestamp,
    },
    required: ['type', 'tool'],
    additionalProperties: false,
  },
  cancel: {
    type: 'object',
    properties: { type: { const: 'cancel' }, message_id: id, run_id: runId, timestamp },
    required: ['type'],
    anyOf: [
      { properties: { message_id: id }, required: ['message_id'] },
      { properties: { run_id: runId }, required: ['run_id'] },
    ],
    additionalProperties: false,
  },
  tool_approval: {
    type: 'object',
    properties: {
      type: { const: 'tool_approval' },
      request_id: { type: 'string', pattern: APPROVAL_REQUEST_ID_PATTERN },
      approve: { type: 'boolean' },
      reason: { type: 'string', maxLength: MAX_APPROVAL_REASON_CHARS },
      timestamp,
    },
    required: ['type', 'request_id', 'approve'],
    additionalProperties: false,
  },
  resume: {
    type: 'object',
    properties: { type: { const: 'resume' }, run_id: runId, since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, timestamp },
    required: ['type', 'run_id'],
    additionalProperties: false,
  },
};

const validators = Object.fromEntries(
  Object.entries(CLIENT_FRAME_SCHEMAS).map(([type, schema]) => [type, compileValidator<ClientFrame>(schema, `"${type}" frame`)]),
) as Record<ClientFrame['type'], Validator<ClientFrame>>;

// Depth and size caps per frame type (a tool_request's free-form `parameters` above all).
const limits = Object.fromEntries(
  Object.entries(CLIENT_FRAME_SCHEMAS).map(([type, schema]) => [type, compileJsonLimits(schema, 'frame')]),
) as Record<ClientFrame['type'], JsonLimitsCheck>;

const ID_RE = new RegExp(CLIENT_ID_PATTERN);
const RUN_ID_RE = new RegExp(RUN_ID_PATTERN);

function readableId(value: unknown): string | undefined {
  return typeof value === 'string' && ID_RE.test(value) ? value : undefined;
}

function shown(value: string): string {
  return value.length > 64 ? `${value.slice(0, 64)}…` : value;
}

/** Parses one text frame from a chat client. Never throws. */
export function parseClientFrame(text: string): ParsedClientFrame {
  if (text.length > MAX_CLIENT_FRAME_CHARS) {
    return { ok: false, error: new SentinelError('payload_too_large', `frame larger than ${MAX_CLIENT_FRAME_CHARS} characters`), ids: {} };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: new SentinelError('invalid_request', 'malformed JSON'), ids: {} };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: new SentinelError('invalid_request', 'a frame must be a JSON object with a "type"'), ids: {} };
  }
  const record = value as Record<string, unknown>;
  const message_id = readableId(record.message_id);
  const request_id = readableId(record.request_id);
  const run_id = typeof record.run_id === 'string' && RUN_ID_RE.test(record.run_id) ? record.run_id : undefined;
  const ids = { ...(message_id === undefined ? {} : { message_id }), ...(request_id === undefined ? {} : { request_id }), ...(run_id === undefined ? {} : { run_id }) };
  const type = record.type;
  if (typeof type !== 'string') return { ok: false, error: new SentinelError('invalid_request', 'missing "type"'), ids };
  const validate = Object.hasOwn(validators, type) ? validators[type as ClientFrame['type']] : undefined;
  if (!validate) return { ok: false, error: new SentinelError('invalid_request', `unknown message type "${shown(type)}"`), ids };
  try {
    limits[type as ClientFrame['type']](value);
    return { ok: true, frame: validate(value) };
  } catch (err) {
    return { ok: false, error: err as SentinelError, ids };
  }
}
