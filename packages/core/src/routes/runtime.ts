/**
 * Agent lifecycle routes: `POST /v1/agents/:id/stop` and `POST /v1/agents/:id/start`, like
 * `docker stop` / `docker start`. Both are idempotent and return the agent resource; another
 * user's agent is a 404 (AgentService).
 */
import type { AgentService } from '../agents/service.js';
import { AGENT_EXAMPLE, AGENT_ID_PATTERN, AGENT_RESOURCE_SCHEMA } from './agents.js';
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';

const agentIdParams: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: AGENT_ID_PATTERN } },
  required: ['id'],
  additionalProperties: false,
};


/** POST /v1/agents/:id/stop and /start (any logged-in user, on their own agents; admins on all). */
export function runtimeRoutes(deps: { agents: AgentService }): RouteDef[] {
  const { agents } = deps;
  return [
    {
      method: 'POST',
      path: '/v1/agents/:id/stop',
      auth: 'user',
      scope: 'agents:write',
      summary: 'Stop an agent: its turns end (reason "stopped") and new messages are refused until it is started (idempotent)',
      schemas: { params: agentIdParams, response: AGENT_RESOURCE_SCHEMA },
      errors: ['conflict'],
      examples: { response: { ...AGENT_EXAMPLE, status: 'stopped' } },
      handler: (input: { params: { id: string } }, ctx) => agents.stop(principalOf(ctx), input.params.id, ctx.origin),
    },
    {
      method: 'POST',
      path: '/v1/agents/:id/start',
      auth: 'user',
      scope: 'agents:write',
      summary: 'Start a stopped agent (idempotent)',
      schemas: { params: agentIdParams, response: AGENT_RESOURCE_SCHEMA },
      errors: ['conflict'],
      handler: (input: { params: { id: string } }, ctx) => agents.start(principalOf(ctx), input.params.id, ctx.origin),
    },
  ];
}
