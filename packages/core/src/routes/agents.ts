/**
 * Agent routes. Tenancy lives in AgentService (another user's agent is a 404); the schemas
 * here cap every input before it reaches the service or the Store.
 */
import { followAgentLogs } from '../agents/log-follow.js';
import { AGENT_NAME_PATTERN, type AgentService } from '../agents/service.js';
import type { EventBus } from '../bus.js';
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';
import { unavailable } from '../contract/errors.js';
import { LOG_LEVELS, type LogLevel } from '../contract/logger.js';
import { prepareJson } from './prepared-json.js';
import { principalOf, streamResult, type JsonSchema, type RouteDef } from '../contract/route.js';
import { WEBHOOK_URL_SCHEMA } from '../webhooks/url.js';

/**
 * Agent references in paths: an id (or a prefix of one) or a name (see AgentService). A
 * traversal-looking or oversized reference is a 400 before any lookup: names start with a
 * letter or digit and hold no slash.
 */
export const AGENT_ID_PATTERN = `^(?:[A-Za-z0-9_-]{1,64}|${AGENT_NAME_PATTERN.slice(1, -1)})$`;

const agentIdParams: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: AGENT_ID_PATTERN } },
  required: ['id'],
  additionalProperties: false,
};

export const CREATE_AGENT_BODY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    image: { type: 'string', minLength: 1, maxLength: 256 },
    name: { type: 'string', pattern: AGENT_NAME_PATTERN },
    parameters: { type: 'object', maxProperties: 64 },
    environment: {
      type: 'object',
      maxProperties: 64,
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' },
      additionalProperties: { type: 'string', maxLength: 4096 },
    },
    webhook: WEBHOOK_URL_SCHEMA,
  },
  required: ['image'],
  additionalProperties: false,
};

const logsQuery: JsonSchema = {
  type: 'object',
  properties: {
    since: { type: 'string', minLength: 1, maxLength: 64 },
    // A string on the wire: 'all' or a count (converted by the handler).
    tail: { type: 'string', pattern: '^(?:all|[0-9]{1,7})$' },
    level: { type: 'string', enum: [...LOG_LEVELS] },
    // `true`: keep streaming new lines (NDJSON, or SSE when asked) until the client leaves.
    follow: { type: 'boolean' },
  },
  additionalProperties: false,
};

export const AGENT_RESOURCE_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    image: { type: 'string', description: 'The image reference as resolved (name:tag)' },
    image_id: { type: 'string', description: 'Digest of the image the agent runs' },
    status: { type: 'string', enum: ['created', 'running', 'stopped', 'error'] },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
    model: { type: 'string', description: 'provider/name' },
    owner: { type: 'string' },
    parameters: { type: 'object' },
    environment: { type: 'array', items: { type: 'string' }, description: 'Names of the variables set; values are never returned' },
    api_usage: { type: 'object', properties: { requests: { type: 'integer' }, tokens: { type: 'integer' } }, required: ['requests', 'tokens'], additionalProperties: false },
    endpoints: { type: 'object', properties: { chat: { type: 'string' }, events: { type: 'string' } }, required: ['chat', 'events'], additionalProperties: false },
    runnable: { type: 'boolean', description: 'False when this server cannot run the image as configured now (unknown provider or tool, provider without API key)' },
    reason: { type: 'string', description: 'Why the agent cannot run (only when runnable is false)' },
    warnings: { type: 'array', items: { type: 'string' }, description: 'On creation only: what will keep the agent from running (empty when nothing)' },
    webhook: { type: 'string', description: "Default webhook URL of the agent's runs (a run's own wins); on creation and GET /v1/agents/{id}, when set" },
  },
  required: ['id', 'name', 'image', 'image_id', 'status', 'created_at', 'updated_at', 'model', 'owner', 'parameters', 'environment', 'api_usage', 'endpoints', 'runnable'],
  additionalProperties: false,
};

/** One log line, in the list answer and as each item of a followed stream. */
export const LOG_RECORD_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    agent_id: { type: 'string' },
    seq: { type: 'integer' },
    timestamp: { type: 'string', format: 'date-time' },
    level: { type: 'string', enum: [...LOG_LEVELS] },
    message: { type: 'string' },
    fields: { type: 'object' },
  },
  required: ['agent_id', 'seq', 'timestamp', 'level', 'message'],
  additionalProperties: false,
};


/** The agent resource as the examples of the OpenAPI document show it. */
export const AGENT_EXAMPLE = {
  id: 'a1b2c3d4e5f6',
  name: 'helper',
  image: 'sentinel/helper:latest',
  image_id: 'sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945',
  status: 'running',
  created_at: '2026-01-02T03:04:05.000Z',
  updated_at: '2026-01-02T03:04:05.000Z',
  model: 'openai/gpt-4o-mini',
  owner: 'alice',
  parameters: {},
  environment: ['LANG'],
  api_usage: { requests: 0, tokens: 0 },
  endpoints: { chat: 'ws://127.0.0.1:8080/v1/agents/a1b2c3d4e5f6/chat', events: 'ws://127.0.0.1:8080/v1/agents/a1b2c3d4e5f6/events' },
  runnable: true,
};

/**
 * GET/POST /v1/agents, GET/DELETE /v1/agents/:id, GET /v1/agents/:id/logs (all: any logged-in
 * user). `bus` serves `logs?follow=true`; without it (default: none) follow answers `unavailable`.
 */
export function agentRoutes(deps: { agents: AgentService; bus?: EventBus; audit?: AuditRecorder }): RouteDef[] {
  const { agents, bus } = deps;
  const audit = deps.audit ?? noAudit;
  return [
    {
      method: 'GET',
      path: '/v1/agents',
      auth: 'user',
      scope: 'agents:read',
      summary: 'List agents (your own; every agent for an admin)',
      schemas: { response: { type: 'object', properties: { agents: { type: 'array', items: AGENT_RESOURCE_SCHEMA } }, required: ['agents'], additionalProperties: false } },
      etag: true,
      // Bytes built once per version of the caller's view, with an ETag (If-None-Match → 304).
      handler: (_input, ctx) => agents.listJson(principalOf(ctx), ctx.origin),
    },
    {
      method: 'POST',
      path: '/v1/agents',
      auth: 'user',
      scope: 'agents:write',
      status: 201,
      summary: 'Create and start an agent from an image',
      schemas: { body: CREATE_AGENT_BODY_SCHEMA, response: AGENT_RESOURCE_SCHEMA },
      // conflict: the name is taken; not_found: no such image (or a private one of another user);
      // quota_exceeded: the caller owns as many agents as their quota allows.
      errors: ['conflict', 'not_found', 'quota_exceeded'],
      errorDescriptions: { 429: 'quota_exceeded: you own as many agents as your quota allows; rate_limited: over the write rate limit' },
      examples: { body: { image: 'sentinel/helper:latest', name: 'helper', environment: { LANG: 'en' } }, response: AGENT_EXAMPLE },
      handler: (input: { body: { image: string; name?: string; parameters?: Record<string, unknown>; environment?: Record<string, string>; webhook?: string } }, ctx) =>
        agents.create(principalOf(ctx), input.body, ctx.origin),
    },
    {
      method: 'GET',
      path: '/v1/agents/:id',
      auth: 'user',
      scope: 'agents:read',
      summary: 'Get an agent by id, name or unique id prefix (409 conflict, with the matches in details, when ambiguous)',
      schemas: { params: agentIdParams, response: AGENT_RESOURCE_SCHEMA },
      errors: ['conflict'],
      examples: { response: AGENT_EXAMPLE },
      handler: (input: { params: { id: string } }, ctx) => agents.get(principalOf(ctx), input.params.id, ctx.origin),
    },
    {
      method: 'DELETE',
      path: '/v1/agents/:id',
      auth: 'user',
      scope: 'agents:write',
      summary: 'Stop and delete an agent',
      schemas: { params: agentIdParams },
      errors: ['conflict'],
      handler: async (input: { params: { id: string } }, ctx) => {
        const principal = principalOf(ctx);
        const deleted = await agents.delete(principal, input.params.id);
        // Someone else's agent (only an admin can reach one): the owner should be able to learn who.
        if (deleted.owner !== principal.username) {
          audit.record(auditFromRoute(ctx, 'agent.deleted', `agent:${deleted.id}`, { owner: deleted.owner, name: deleted.name }));
        }
        return undefined;
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:id/logs',
      auth: 'user',
      scope: 'agents:read',
      summary:
        "Get an agent's log lines (since: RFC 3339, unix seconds or a duration like 10m; tail: N or all; level: minimum level; " +
        'follow=true: then stream new lines as NDJSON, or Server-Sent Events with Accept: text/event-stream)',
      schemas: {
        params: agentIdParams,
        query: logsQuery,
        response: { type: 'object', properties: { agent_id: { type: 'string' }, logs: { type: 'array', items: LOG_RECORD_SCHEMA } }, required: ['agent_id', 'logs'], additionalProperties: false },
      },
      etag: true,
      streams: ['ndjson', 'sse'],
      streamItem: LOG_RECORD_SCHEMA,
      // conflict: an ambiguous reference; unavailable: follow without an event bus.
      errors: ['conflict'],
      handler: async (input: { params: { id: string }; query: { since?: string; tail?: string; level?: LogLevel; follow?: boolean } }, ctx) => {
        const { since, tail, level, follow } = input.query;
        const query = {
          ...(since === undefined ? {} : { since }),
          ...(tail === undefined ? {} : { tail: tail === 'all' ? ('all' as const) : Number(tail) }),
          ...(level === undefined ? {} : { level }),
        };
        if (follow === true) {
          if (!bus) throw unavailable('following logs is not available on this server');
          return streamResult(await followAgentLogs({ agents, bus, principal: principalOf(ctx), agentId: input.params.id, query, signal: ctx.signal }));
        }
        // Logs first: a malformed query is a 400 whoever asks. Then the id the reference named.
        const logs = await agents.logs(principalOf(ctx), input.params.id, query);
        const record = await agents.getRecord(principalOf(ctx), input.params.id);
        // Serialized here for the ETag: a client polling logs gets 304 while nothing was added.
        return prepareJson({ agent_id: record.id, logs });
      },
    },
  ];
}
