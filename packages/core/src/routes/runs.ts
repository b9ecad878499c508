/**
 * Runs over REST (issue 16): start a turn without holding a socket, read it, list, wait for it,
 * cancel it, and stream its journaled frames as Server-Sent Events that resume exactly after the
 * last `id:` a client saw (`Last-Event-ID` or `?since=`). Everything about runs lives in the
 * RunService; these routes validate the edge (schemas, the Idempotency-Key header, the webhook
 * URL) and map results onto statuses and headers.
 */
import { createHash } from 'node:crypto';
import { invalidRequest } from '../contract/errors.js';
import { CLIENT_ID_PATTERN } from '../contract/ids.js';
import type { Principal } from '../contract/models.js';
import { createPushIterable } from '../contract/push-iterable.js';
import { COMPONENT_NAME, principalOf, routeReply, streamResult, type JsonSchema, type RouteContext, type RouteDef, type RouteHeaderDoc, type StreamItem, type StreamResult } from '../contract/route.js';
import { MAX_CLIENT_FRAME_CHARS, MAX_MESSAGE_CHARS } from '../protocol/client-frames.js';
import { SERVER_FRAME_SCHEMAS } from '../protocol/server-frames.js';
import { RUN_EXAMPLE, RUN_ID_PATTERN, RUN_SCHEMA } from '../runs/schema.js';
import { RUN_STATUSES, type RunFrameRow, type RunRecord, type RunStatus } from '../runs/types.js';
import { AGENT_ID_PATTERN } from './agents.js';

/** The part of the RunService (runs/service.ts) these routes call. */
export interface RunRoutesService {
  create(
    principal: Principal,
    agentId: string,
    input: { content: string; message_id?: string; idempotency_key?: string; webhook?: string; requestHash?: string },
  ): Promise<{ run: RunRecord; created: boolean }>;
  get(principal: Principal, agentId: string, runId: string): Promise<RunRecord>;
  list(principal: Principal, agentId: string, query: { status?: RunStatus; before?: string; limit?: number }): Promise<{ runs: RunRecord[]; next: string | null }>;
  wait(principal: Principal, agentId: string, runId: string, timeoutMs: number, signal?: AbortSignal): Promise<RunRecord>;
  cancel(principal: Principal, agentId: string, runId: string): Promise<RunRecord>;
  subscribe(
    principal: Principal,
    agentId: string,
    runId: string,
    since: number,
    listener: (frame: RunFrameRow) => void,
    signal?: AbortSignal,
  ): Promise<{ run: RunRecord; done: Promise<void> }>;
}

export interface RunRoutesOptions {
  runs: RunRoutesService;
  /**
   * Frames held for one SSE client that reads slower than they come; past it the stream ends
   * with an `unavailable` error item (the client resumes with Last-Event-ID). A replay is handed
   * over whole, so keep it above the frames of a long run. Default 20 000.
   */
  maxBuffered?: number;
}

/** Longest Idempotency-Key, in characters (the key itself, without quotes). */
export const MAX_IDEMPOTENCY_KEY_CHARS = 255;
/** Longest webhook URL, in characters. */
export const MAX_WEBHOOK_URL_CHARS = 2048;
/** Longest `?wait=`, in seconds: a request is not held longer than a proxy would let it live. */
export const MAX_RUN_WAIT_SECONDS = 60;
/** Default and largest page of `GET …/runs`. */
export const RUN_PAGE = { default: 20, max: 100 } as const;

const agentParams: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: AGENT_ID_PATTERN } },
  required: ['id'],
  additionalProperties: false,
};

const runParams: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: AGENT_ID_PATTERN }, run: { type: 'string', pattern: RUN_ID_PATTERN } },
  required: ['id', 'run'],
  additionalProperties: false,
};

export const CREATE_RUN_BODY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    content: { type: 'string', minLength: 1, maxLength: MAX_MESSAGE_CHARS, description: 'The message to the agent' },
    message_id: { type: 'string', pattern: CLIENT_ID_PATTERN, description: "The turn's message id (default: one the server makes up); also the idempotency key when no Idempotency-Key header is sent" },
    stream: { type: 'boolean', description: "true: answer 200 with the run's frames as Server-Sent Events instead of 202 with the run. Default false" },
    webhook: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_WEBHOOK_URL_CHARS,
      description: "Absolute http(s) URL the run's transitions are POSTed to (default: the agent's webhook, if any)",
    },
  },
  required: ['content'],
  additionalProperties: false,
};

const listQuery: JsonSchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: [...RUN_STATUSES] },
    before: { type: 'string', pattern: RUN_ID_PATTERN, description: 'Cursor: the `next` of the previous page (runs older than this one)' },
    limit: { type: 'integer', minimum: 1, maximum: RUN_PAGE.max, description: `Page size, default ${RUN_PAGE.default}` },
  },
  additionalProperties: false,
};

const getQuery: JsonSchema = {
  type: 'object',
  properties: {
    wait: {
      type: 'number',
      exclusiveMinimum: 0,
      maximum: MAX_RUN_WAIT_SECONDS,
      description: `Block up to this many seconds (at most ${MAX_RUN_WAIT_SECONDS}) until the run leaves queued/running; then the run as it is`,
    },
  },
  additionalProperties: false,
};

/** `since` is an integer so the HTTP transport fills it from Last-Event-ID (see the listener). */
const streamQuery: JsonSchema = {
  type: 'object',
  properties: { since: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Resume after this seq (the last `id:` seen); default 0: from the first frame' } },
  additionalProperties: false,
};

const RUN_LIST_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    runs: { type: 'array', items: RUN_SCHEMA, description: 'Newest first' },
    next: { type: ['string', 'null'], description: 'Pass as `before` for the next (older) page; null on the last page' },
  },
  required: ['runs', 'next'],
  additionalProperties: false,
};

/** The frames a run journals: the chat frames of a turn, each with its run_id and seq. */
const RUN_FRAME_TYPES = ['event', 'stream_start', 'stream_chunk', 'stream_end', 'tool_result', 'error'] as const;

/** One SSE event of a run's stream: `id:` its seq, `event:` its type, `data:` the frame. */
export const RUN_FRAME_ITEM_SCHEMA: JsonSchema = {
  [COMPONENT_NAME]: 'RunFrame',
  description: "A frame of the run, exactly as the chat socket sends it (with run_id and seq); the stream ends after the terminal frame (stream_end or error)",
  anyOf: [...RUN_FRAME_TYPES.map((type) => SERVER_FRAME_SCHEMAS[type]), ...extraFrameSchemas()],
};

/** Frame types other helpers add (tool approval), described once they exist. */
function extraFrameSchemas(): JsonSchema[] {
  const schemas = SERVER_FRAME_SCHEMAS as Readonly<Record<string, JsonSchema>>;
  return ['tool_approval_required'].flatMap((type) => (schemas[type] === undefined ? [] : [schemas[type]]));
}

const IDEMPOTENCY_KEY_HEADER: RouteHeaderDoc = {
  name: 'Idempotency-Key',
  description:
    `draft-ietf-httpapi-idempotency-key-header: a quoted string or a bare token, at most ${MAX_IDEMPOTENCY_KEY_CHARS} characters, unique per agent for 24 h. ` +
    'The same key again answers with the existing run (200, Idempotency-Replayed: true) and starts nothing; the same key with another content, message_id or webhook is 409 idempotency_conflict.',
  schema: { type: 'string', maxLength: MAX_IDEMPOTENCY_KEY_CHARS + 2 },
};

const LOCATION_HEADER: RouteHeaderDoc = { name: 'Location', description: 'The run: /v1/agents/{id}/runs/{run}', schema: { type: 'string' } };
const REPLAYED_HEADER: RouteHeaderDoc = {
  name: 'Idempotency-Replayed',
  description: '`true` when an earlier request with this Idempotency-Key (or message_id) made the run: nothing new was started',
  schema: { type: 'string', enum: ['true'] },
};

// RFC 9110 tchar plus the `:` and `/` an sf-token allows (UUIDs, ULIDs, base64url and URNs all fit).
const BARE_KEY = /^[A-Za-z0-9!#$%&'*+.^_`|~:/-]+$/;
// An RFC 8941 sf-string: printable ASCII, `"` and `\` only escaped.
const QUOTED_KEY = /^"((?:[\x20\x21\x23-\x5B\x5D-\x7E]|\\["\\])*)"$/;

/**
 * The key of an `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header: an sf-string;
 * a bare token is accepted too, as many clients send one), undefined when absent. Anything else
 * is a 400, never silently a request without a key: the client meant it to be retried safely.
 */
export function parseIdempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = header.trim();
  const quoted = QUOTED_KEY.exec(value);
  const key = quoted ? (quoted[1] as string).replace(/\\(["\\])/g, '$1') : BARE_KEY.test(value) ? value : undefined;
  if (key === undefined) {
    throw invalidRequest('Idempotency-Key must be a quoted string ("…", printable ASCII) or a token (letters, digits and !#$%&\'*+-.^_`|~:/), sent once');
  }
  if (key.length === 0) throw invalidRequest('Idempotency-Key must not be empty');
  if (key.length > MAX_IDEMPOTENCY_KEY_CHARS) throw invalidRequest(`Idempotency-Key must be at most ${MAX_IDEMPOTENCY_KEY_CHARS} characters (got ${key.length})`);
  return key;
}

/**
 * What makes two requests with one key "the same request": sha256 (hex) of the canonical JSON
 * (keys sorted, absent fields left out) of `content`, `webhook` and, when an Idempotency-Key
 * header is the key, `message_id` (without the header, message_id is the key itself). `stream`
 * is left out on purpose: it only says how to answer, so a client whose stream broke may retry
 * with or without it and get the same run. A body of content alone hashes like a chat message
 * (`{"content":…}`), so a message sent over the socket and retried over REST with its
 * message_id finds its run.
 */
export function runRequestHash(body: { content: string; message_id?: string; webhook?: string }, options: { keyed: boolean }): string {
  const canonical: Record<string, string> = { content: body.content };
  if (options.keyed && body.message_id !== undefined) canonical.message_id = body.message_id;
  if (body.webhook !== undefined) canonical.webhook = body.webhook;
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

function checkWebhook(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidRequest('webhook must be an absolute http:// or https:// URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalidRequest('webhook must be an absolute http:// or https:// URL');
  if (parsed.username !== '' || parsed.password !== '') throw invalidRequest('webhook must not carry credentials (user:password@); the deliveries are signed instead');
}

const runLocation = (run: RunRecord) => `/v1/agents/${encodeURIComponent(run.agent_id)}/runs/${run.id}`;

/** `{"type":"stream_chunk",…}` → `stream_chunk`, without parsing the frame when it starts with its type (the journal writes it first). */
export function frameTypeOf(json: string): string {
  const prefix = '{"type":"';
  if (json.startsWith(prefix)) {
    const end = json.indexOf('"', prefix.length);
    if (end > prefix.length) return json.slice(prefix.length, end);
  }
  const parsed = JSON.parse(json) as { type?: unknown };
  return typeof parsed.type === 'string' ? parsed.type : 'message';
}

/** A run's frames after `since` as an SSE stream that ends after the terminal frame. */
async function openRunStream(runs: RunRoutesService, principal: Principal, agentId: string, runId: string, since: number, ctx: RouteContext, maxBuffered: number): Promise<StreamResult> {
  // Its own controller: the stream's end (client gone, overflow) must release the subscription
  // even when the request's signal is still live (a host closing streams at shutdown).
  const controller = new AbortController();
  const abort = () => controller.abort();
  if (ctx.signal.aborted) controller.abort();
  else ctx.signal.addEventListener('abort', abort, { once: true });
  const stream = createPushIterable<StreamItem>({
    maxBuffered,
    signal: controller.signal,
    onReturn: () => {
      ctx.signal.removeEventListener('abort', abort);
      controller.abort();
    },
  });
  try {
    const { done } = await runs.subscribe(
      principal,
      agentId,
      runId,
      since,
      (frame) => {
        stream.push({ json: frame.json, id: String(frame.seq), event: frameTypeOf(frame.json) });
      },
      controller.signal,
    );
    done.then(
      () => stream.end(),
      (err: unknown) => stream.fail(err),
    );
  } catch (err) {
    stream.end();
    throw err;
  }
  return streamResult(stream.iterable, { format: 'sse' });
}

/**
 * POST/GET /v1/agents/:id/runs, GET /v1/agents/:id/runs/:run (`?wait=`), GET …/:run/stream (SSE),
 * POST …/:run/cancel. Starting and cancelling need `agents:chat` (what chatting needs); reading
 * `agents:read`. Another user's agent or run is a 404.
 */
export function runRoutes(options: RunRoutesOptions): RouteDef[] {
  const { runs } = options;
  const maxBuffered = options.maxBuffered ?? 20_000;
  return [
    {
      method: 'POST',
      path: '/v1/agents/:id/runs',
      auth: 'user',
      scope: 'agents:chat',
      status: 202,
      summary:
        'Start a run: the turn goes on in the background whether or not the client stays (202 with the run and its Location); ' +
        "stream: true answers 200 with the run's frames as Server-Sent Events instead. Idempotency-Key (or message_id) makes retries safe",
      schemas: { params: agentParams, body: CREATE_RUN_BODY_SCHEMA, response: RUN_SCHEMA },
      maxBodyBytes: MAX_CLIENT_FRAME_CHARS,
      requestHeaders: [IDEMPOTENCY_KEY_HEADER],
      streams: ['sse'],
      streamItem: RUN_FRAME_ITEM_SCHEMA,
      successResponses: [
        { status: 202, description: 'The run was created; it runs in the background', content: ['json'], headers: [LOCATION_HEADER] },
        {
          status: 200,
          description:
            "With stream: true, the run's frames as Server-Sent Events (id = seq, ending after the terminal frame); without, the run an earlier request with the same key made (Idempotency-Replayed: true)",
          content: ['json', 'sse'],
          headers: [LOCATION_HEADER, REPLAYED_HEADER],
        },
      ],
      // conflict: the agent is stopped (or the reference ambiguous), idempotency_conflict: the key
      // was used with another body; agent_busy: its queue is full or a run waits for approval.
      errors: ['conflict', 'idempotency_conflict', 'agent_busy', 'quota_exceeded'],
      examples: { body: { content: 'Summarise the release notes', webhook: 'https://example.com/hooks/sentinel' }, response: { ...RUN_EXAMPLE, status: 'queued', output: null, usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 }, last_seq: 0, started_at: null, ended_at: null } },
      handler: async (input: { params: { id: string }; body: { content: string; message_id?: string; stream?: boolean; webhook?: string } }, ctx) => {
        const principal = principalOf(ctx);
        const { content, message_id, stream, webhook } = input.body;
        const idempotencyKey = parseIdempotencyKey(ctx.header?.('idempotency-key'));
        if (webhook !== undefined) checkWebhook(webhook);
        const { run, created } = await runs.create(principal, input.params.id, {
          content,
          ...(message_id === undefined ? {} : { message_id }),
          ...(idempotencyKey === undefined ? {} : { idempotency_key: idempotencyKey }),
          ...(webhook === undefined ? {} : { webhook }),
          requestHash: runRequestHash(input.body, { keyed: idempotencyKey !== undefined }),
        });
        const headers: Record<string, string> = { Location: runLocation(run) };
        if (!created) headers['Idempotency-Replayed'] = 'true';
        if (stream === true) return routeReply(await openRunStream(runs, principal, run.agent_id, run.id, 0, ctx, maxBuffered), { status: 200, headers });
        return routeReply(run, { status: created ? 202 : 200, headers });
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:id/runs',
      auth: 'user',
      scope: 'agents:read',
      summary: "List an agent's runs, newest first (status: only those; before + limit: cursor paging, `next` is the cursor of the next page)",
      schemas: { params: agentParams, query: listQuery, response: RUN_LIST_SCHEMA },
      errors: ['conflict'],
      examples: { response: { runs: [RUN_EXAMPLE], next: null } },
      handler: (input: { params: { id: string }; query: { status?: RunStatus; before?: string; limit?: number } }, ctx) =>
        runs.list(principalOf(ctx), input.params.id, { ...input.query, limit: input.query.limit ?? RUN_PAGE.default }),
    },
    {
      method: 'GET',
      path: '/v1/agents/:id/runs/:run',
      auth: 'user',
      scope: 'agents:read',
      summary: `Get a run; wait=N (0 < N ≤ ${MAX_RUN_WAIT_SECONDS} seconds) blocks until it leaves queued/running (ended or requires_action) or N seconds passed, then answers the run as it is`,
      schemas: { params: runParams, query: getQuery, response: RUN_SCHEMA },
      errors: ['conflict'],
      examples: { response: RUN_EXAMPLE },
      handler: (input: { params: { id: string; run: string }; query: { wait?: number } }, ctx) => {
        const { id, run } = input.params;
        const { wait } = input.query;
        if (wait === undefined) return runs.get(principalOf(ctx), id, run);
        return runs.wait(principalOf(ctx), id, run, Math.round(wait * 1000), ctx.signal);
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:id/runs/:run/stream',
      auth: 'user',
      scope: 'agents:read',
      summary:
        "Stream a run's frames as Server-Sent Events (id = seq): the journaled ones after since (or Last-Event-ID), then live ones; the stream ends after the terminal frame",
      schemas: { params: runParams, query: streamQuery },
      streams: ['sse'],
      streamItem: RUN_FRAME_ITEM_SCHEMA,
      errors: ['conflict'],
      handler: async (input: { params: { id: string; run: string }; query: { since?: number } }, ctx) =>
        openRunStream(runs, principalOf(ctx), input.params.id, input.params.run, input.query.since ?? 0, ctx, maxBuffered),
    },
    {
      method: 'POST',
      path: '/v1/agents/:id/runs/:run/cancel',
      auth: 'user',
      scope: 'agents:chat',
      summary: 'Cancel a run (queued, running or waiting for approval, on whichever instance runs it): the run as cancelled, with the partial output; an ended run is answered unchanged',
      schemas: { params: runParams, response: RUN_SCHEMA },
      errors: ['conflict'],
      examples: { response: { ...RUN_EXAMPLE, status: 'cancelled', output: { content: 'Three fixes', reason: 'cancelled' } } },
      handler: (input: { params: { id: string; run: string } }, ctx) => runs.cancel(principalOf(ctx), input.params.id, input.params.run),
    },
  ];
}
