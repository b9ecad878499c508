/**
 * Sessions and WebSocket tickets (docs/ARCHITECTURE.md#auth-and-tenancy):
 * - POST /v1/auth/logout (session, 204): revokes the presented login token everywhere
 * - POST /v1/users/:name/revoke-tokens (admin, 204): revokes every token the user holds so far
 * - POST /v1/ws-tickets (201) → {ticket, expires_at}: a one-time ticket for a WebSocket upgrade
 */
import type { AgentService } from '../agents/service.js';
import type { AuthService } from '../auth/service.js';
import type { TicketChannel, TicketService } from '../auth/tickets.js';
import { USERNAME_PATTERN, type UserService } from '../auth/users.js';
import { auditFromRoute, noAudit, type AuditRecorder } from '../contract/audit.js';
import { insufficientScope } from '../contract/errors.js';
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';
import { hasScope } from '../contract/scopes.js';
import { CHAT_ENDPOINT, EVENTS_ENDPOINT } from '../protocol/endpoints.js';

export interface SessionRouteDeps {
  auth: AuthService;
  users: UserService;
  agents: AgentService;
  tickets: TicketService;
  /** Default {@link noAudit}. */
  audit?: AuditRecorder;
}

const userParamsSchema: JsonSchema = {
  type: 'object',
  properties: { name: { type: 'string', minLength: 1, maxLength: 64, pattern: USERNAME_PATTERN } },
  required: ['name'],
  additionalProperties: false,
};

const ticketBodySchema: JsonSchema = {
  type: 'object',
  properties: {
    agent_id: { type: 'string', minLength: 1, maxLength: 256, description: 'The agent (id, short id or name) the ticket opens' },
    channel: { type: 'string', enum: ['chat', 'events'], description: 'Which WebSocket endpoint of the agent' },
  },
  required: ['agent_id', 'channel'],
  additionalProperties: false,
};

const ticketResponseSchema: JsonSchema = {
  type: 'object',
  properties: {
    ticket: { type: 'string', description: 'Pass as `?ticket=` on the upgrade; valid once' },
    expires_at: { type: 'string', format: 'date-time' },
  },
  required: ['ticket', 'expires_at'],
  additionalProperties: false,
};

const ENDPOINT_OF = { chat: CHAT_ENDPOINT, events: EVENTS_ENDPOINT } as const;

export function sessionRoutes(deps: SessionRouteDeps): RouteDef[] {
  const { auth, users, agents, tickets } = deps;
  const audit = deps.audit ?? noAudit;
  return [
    {
      method: 'POST',
      path: '/v1/auth/logout',
      auth: 'user',
      // Only a login token can be logged out; an API key is revoked with DELETE /v1/keys/{id}.
      credentials: 'session',
      summary: 'Revoke the presented login token on every instance (its open sockets close with 4401)',
      status: 204,
      handler: async (_input, ctx) => {
        const principal = principalOf(ctx);
        await auth.logout(principal);
        audit.record(auditFromRoute(ctx, 'auth.logout', `user:${principal.username}`));
        return undefined;
      },
    },
    {
      method: 'POST',
      path: '/v1/users/:name/revoke-tokens',
      auth: 'admin',
      scope: 'admin',
      summary: "Revoke every token issued to the user so far (their open sockets close with 4401)",
      status: 204,
      schemas: { params: userParamsSchema },
      handler: async (input: { params: { name: string } }, ctx) => {
        await users.revokeTokens(input.params.name, principalOf(ctx));
        audit.record(auditFromRoute(ctx, 'auth.tokens_revoked', `user:${input.params.name}`));
        return undefined;
      },
    },
    {
      method: 'POST',
      path: '/v1/ws-tickets',
      auth: 'user',
      // The route needs the least of the two; the chat channel needs agents:chat too (checked below).
      scope: 'agents:read',
      summary: 'A one-time ticket (30 s) to open the chat or events WebSocket of one agent without a token in the URL',
      status: 201,
      schemas: { body: ticketBodySchema, response: ticketResponseSchema },
      // not_found: no such agent, or another user's.
      errors: ['not_found'],
      maxBodyBytes: 4096,
      handler: async (input: { body: { agent_id: string; channel: TicketChannel } }, ctx) => {
        const principal = principalOf(ctx);
        const endpoint = ENDPOINT_OF[input.body.channel];
        if (!hasScope(principal, endpoint.scope)) throw insufficientScope(endpoint.scope);
        // Another user's agent is a 404, as everywhere; the ticket names the resolved id.
        const record = await agents.getRecord(principal, input.body.agent_id);
        return tickets.issue(principal, record.id, input.body.channel, auth.claimsOf(principal));
      },
    },
  ];
}
