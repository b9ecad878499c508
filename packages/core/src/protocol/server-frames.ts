/**
 * JSON Schemas of the frames the server sends (docs/ARCHITECTURE.md#the-protocol), one per
 * `type`, written to match the {@link ServerFrame} types in frames.ts and the README's frame
 * reference. They describe the wire for the AsyncAPI document (routes/asyncapi.ts); the server
 * never validates its own frames against them, but every WebSocket spec checks each frame it
 * receives against that document, so a frame the server really sends and these do not
 * describe fails the suite.
 */
import { ERROR_CODES } from '../contract/errors.js';
import { CLIENT_ID_PATTERN } from '../contract/ids.js';
import { RUN_ID_PATTERN } from './client-frames.js';
import type { JsonSchema } from '../contract/route.js';
import type { ServerFrameType } from './frames.js';

const timestamp = { type: 'string', format: 'date-time', description: 'When the server sent the frame (RFC 3339).' };
const clientId = { type: 'string', pattern: CLIENT_ID_PATTERN };
const messageId = { ...clientId, description: 'The message this frame is about (the client’s or one the server made up).' };
const requestId = { ...clientId, description: 'The tool_request this frame answers.' };
const responseId = { type: 'string', description: 'The answer’s id, the same in all frames of one answer.' };
const runId = { type: 'string', pattern: RUN_ID_PATTERN, description: 'The run this frame belongs to (frames of a run only).' };
const runSeq = { type: 'integer', minimum: 1, description: 'The frame’s place in its run: 1, 2, 3… without gaps; the cursor of a resume.' };

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

/** `stream_end` and `response` carry the same fields. */
function answerEnd(type: 'stream_end' | 'response', description: string): JsonSchema {
  return {
    type: 'object',
    description,
    properties: {
      type: { const: type },
      timestamp,
      run_id: runId,
      seq: runSeq,
      message_id: messageId,
      response_id: responseId,
      content: { type: 'string', description: 'The whole answer (for a partial one, the text streamed so far).' },
      reason: { enum: ['stop', 'length', 'cancelled', 'error', 'shutdown', 'deleted', 'stopped', 'tool_rounds'] },
      usage,
    },
    required: ['type', 'timestamp', 'message_id', 'response_id', 'content', 'reason', 'usage'],
    additionalProperties: false,
  };
}

/** The schema of each server frame type. */
export const SERVER_FRAME_SCHEMAS: Readonly<Record<ServerFrameType, JsonSchema>> = {
  event: {
    type: 'object',
    description:
      'Something happened: connection_established, thinking, tool_call, cancel_requested (chat; frames of a run carry run_id and seq); agent_status, resync_required and every stored event (events).',
    properties: {
      type: { const: 'event' },
      event_type: { type: 'string' },
      timestamp,
      content: { type: 'string' },
      data: { type: 'object' },
      message_id: messageId,
      run_id: runId,
      seq: { type: 'integer', minimum: 1, description: 'Stored events: increasing per agent; frames of a run: the run’s 1, 2, 3… order.' },
      agent_id: { type: 'string' },
    },
    required: ['type', 'event_type', 'timestamp'],
    additionalProperties: false,
  },
  stream_start: {
    type: 'object',
    description: 'The streamed answer to a message begins.',
    properties: { type: { const: 'stream_start' }, timestamp, run_id: runId, seq: runSeq, message_id: messageId, response_id: responseId },
    required: ['type', 'timestamp', 'message_id', 'response_id'],
    additionalProperties: false,
  },
  stream_chunk: {
    type: 'object',
    description: 'The next piece of the answer; chunks merged in a backed-up send queue keep the first chunk_index.',
    properties: {
      type: { const: 'stream_chunk' },
      timestamp,
      run_id: runId,
      seq: runSeq,
      message_id: messageId,
      response_id: responseId,
      chunk_index: { type: 'integer', minimum: 0 },
      content: { type: 'string' },
    },
    required: ['type', 'timestamp', 'message_id', 'response_id', 'chunk_index', 'content'],
    additionalProperties: false,
  },
  stream_end: answerEnd('stream_end', 'The terminal frame of a streamed answer.'),
  response: answerEnd('response', 'The whole answer in one terminal frame, for a message sent with "stream": false.'),
  tool_result: {
    type: 'object',
    description: 'A tool finished: one the model called (message_id, call_id) or a tool_request (request_id).',
    properties: {
      type: { const: 'tool_result' },
      timestamp,
      run_id: runId,
      seq: runSeq,
      message_id: messageId,
      call_id: { type: 'string' },
      request_id: requestId,
      tool: { type: 'string' },
      status: { enum: ['success', 'error'] },
      result: {},
      error: { type: 'string' },
    },
    required: ['type', 'timestamp', 'tool', 'status'],
    additionalProperties: false,
  },
  error: {
    type: 'object',
    description: 'A frame or a message failed; the socket stays open.',
    properties: {
      type: { const: 'error' },
      timestamp,
      error: { type: 'string', description: 'A human message.' },
      code: { enum: [...ERROR_CODES] },
      run_id: runId,
      seq: runSeq,
      message_id: messageId,
      request_id: requestId,
      retry_after: { type: 'integer', minimum: 0, description: 'Seconds to wait before sending another such frame (code rate_limited only).' },
    },
    required: ['type', 'timestamp', 'error', 'code'],
    additionalProperties: false,
  },
  tool_approval_required: {
    type: 'object',
    description:
      'A run stopped before a tool call that needs a person’s approval (one frame per gated call): decide it with a tool_approval frame or POST /v1/agents/{id}/runs/{run}/approvals before expires_at, or the run fails with approval_timeout.',
    properties: {
      type: { const: 'tool_approval_required' },
      timestamp,
      run_id: runId,
      seq: runSeq,
      message_id: messageId,
      request_id: { type: 'string', pattern: '^apr_[0-9a-f]{16}$', description: 'What a decision names.' },
      tool: { type: 'string' },
      parameters: { type: 'object', description: 'The arguments the model called the tool with.' },
      expires_at: { type: 'string', format: 'date-time', description: 'When an undecided request fails the run (approval_timeout).' },
    },
    required: ['type', 'timestamp', 'run_id', 'seq', 'message_id', 'request_id', 'tool', 'parameters', 'expires_at'],
    additionalProperties: false,
  },
};
