/**
 * The run resource as JSON Schema (the RunRecord API shape of runs/types.ts): the REST routes'
 * response schema (OpenAPI) and what the SDK's types derive from. One place, so the document,
 * the contract checker and the client agree on what a run looks like.
 */
import { COMPONENT_NAME, type JsonSchema } from '../contract/route.js';
import { RUN_STATUSES } from './types.js';

/** Run ids: `run_` + 24 hex (newRunId() in contract/ids.ts). */
export const RUN_ID_PATTERN = '^run_[0-9a-f]{24}$';

const timestamp = { type: 'string', format: 'date-time' };
const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' };

const usage = {
  type: 'object',
  properties: {
    input_tokens: { type: 'integer', minimum: 0 },
    output_tokens: { type: 'integer', minimum: 0 },
    total_tokens: { type: 'integer', minimum: 0 },
  },
  required: ['input_tokens', 'output_tokens', 'total_tokens'],
  additionalProperties: false,
};

const requiredAction = {
  type: ['object', 'null'],
  description: 'What the run waits for (status requires_action only): tool calls a person must approve or refuse.',
  properties: {
    type: { const: 'tool_approval' },
    requests: {
      type: 'array',
      items: {
        type: 'object',
        properties: { request_id: { type: 'string' }, call_id: { type: 'string' }, tool: { type: 'string' }, parameters: { type: 'object' } },
        required: ['request_id', 'call_id', 'tool', 'parameters'],
        additionalProperties: false,
      },
    },
    calls: {
      type: 'array',
      description: "The model round's tool calls, gated or not, run once every request is decided.",
      items: {
        type: 'object',
        properties: { id: { type: 'string' }, name: { type: 'string' }, arguments: { type: 'object' } },
        required: ['id', 'name', 'arguments'],
        additionalProperties: false,
      },
    },
    decisions: {
      type: 'object',
      description: 'Decisions so far, by request_id.',
      additionalProperties: {
        type: 'object',
        properties: { approve: { type: 'boolean' }, reason: { type: 'string' } },
        required: ['approve'],
        additionalProperties: false,
      },
    },
    expires_at: timestamp,
  },
  required: ['type', 'requests', 'calls', 'decisions', 'expires_at'],
  additionalProperties: false,
};

/** A run: one turn of an agent as a resource (`GET /v1/agents/{id}/runs/{run}`). */
export const RUN_SCHEMA: JsonSchema = {
  [COMPONENT_NAME]: 'Run',
  type: 'object',
  description: 'One turn of an agent as a resource: its input, status, output, usage and how far its frame journal goes (last_seq).',
  properties: {
    id: { type: 'string', pattern: RUN_ID_PATTERN },
    agent_id: { type: 'string' },
    owner: { type: 'string', description: "Username of the agent's owner" },
    message_id: { type: 'string', description: "The turn's message id (the client's, or one the server made up), as in the chat frames and the history" },
    status: { type: 'string', enum: [...RUN_STATUSES], description: 'queued → running → completed | cancelled | failed; requires_action while a tool call waits for approval' },
    input: { type: 'object', properties: { content: { type: 'string' } }, required: ['content'], additionalProperties: false },
    output: {
      type: ['object', 'null'],
      description: 'Set when the run ends: the answer (the text streamed so far when it was cancelled) and why it ended',
      properties: {
        content: { type: 'string' },
        reason: { enum: ['stop', 'length', 'cancelled', 'error', 'shutdown', 'deleted', 'stopped', 'tool_rounds'] },
      },
      required: ['content', 'reason'],
      additionalProperties: false,
    },
    usage,
    error: {
      type: ['object', 'null'],
      description: 'Why the run failed (status failed only), e.g. upstream_error, interrupted, approval_timeout',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
      additionalProperties: false,
    },
    required_action: requiredAction,
    webhook: { type: ['string', 'null'], description: 'Where the run’s transitions are POSTed (the request’s URL or the agent’s default)' },
    last_seq: { type: 'integer', minimum: 0, description: 'Highest frame seq journaled so far (0: none yet); a stream resumes after a seq' },
    created_at: timestamp,
    started_at: nullableTimestamp,
    ended_at: nullableTimestamp,
  },
  required: ['id', 'agent_id', 'owner', 'message_id', 'status', 'input', 'output', 'usage', 'error', 'required_action', 'webhook', 'last_seq', 'created_at', 'started_at', 'ended_at'],
  additionalProperties: false,
};

/** A completed run, as the OpenAPI examples show it. */
export const RUN_EXAMPLE = {
  id: 'run_4f53cda18c2baa0c0354bb5f',
  agent_id: 'a1b2c3d4e5f6',
  owner: 'alice',
  message_id: 'msg_8a1f3c5e7b9d0f12',
  status: 'completed',
  input: { content: 'Summarise the release notes' },
  output: { content: 'Three fixes and one new flag.', reason: 'stop' },
  usage: { input_tokens: 42, output_tokens: 9, total_tokens: 51 },
  error: null,
  required_action: null,
  webhook: null,
  last_seq: 14,
  created_at: '2026-01-02T03:04:05.000Z',
  started_at: '2026-01-02T03:04:05.012Z',
  ended_at: '2026-01-02T03:04:06.250Z',
};
