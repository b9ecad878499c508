/**
 * Tool approval over REST (issue 16, README "Tool approval"): a person approves or refuses one
 * `tool_approval_required` request of a run waiting in `requires_action`. The decision logic
 * (compare-and-set, continuation, expiry) is in runs/approvals.ts through the RunService; this
 * route validates the edge and maps the result.
 */
import { principalOf, type JsonSchema, type RouteDef } from '../contract/route.js';
import type { Principal } from '../contract/models.js';
import { APPROVAL_REQUEST_ID_PATTERN, MAX_APPROVAL_REASON_CHARS } from '../protocol/client-frames.js';
import type { RunDecision } from '../runs/approvals.js';
import { RUN_EXAMPLE, RUN_ID_PATTERN, RUN_SCHEMA } from '../runs/schema.js';
import type { RunRecord } from '../runs/types.js';
import { AGENT_ID_PATTERN } from './agents.js';

/** The part of the RunService (runs/service.ts) the route calls. */
export interface RunApprovalRoutesService {
  decide(principal: Principal, agentId: string, runId: string, decision: RunDecision): Promise<RunRecord>;
}

const runParams: JsonSchema = {
  type: 'object',
  properties: { id: { type: 'string', pattern: AGENT_ID_PATTERN }, run: { type: 'string', pattern: RUN_ID_PATTERN } },
  required: ['id', 'run'],
  additionalProperties: false,
};

export const RUN_APPROVAL_BODY_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    request_id: { type: 'string', pattern: APPROVAL_REQUEST_ID_PATTERN, description: 'The request_id of a tool_approval_required frame (or of required_action.requests)' },
    approve: { type: 'boolean', description: 'true runs the call; false answers it with {"error":"refused by a person: <reason>"} for the model to see' },
    reason: { type: 'string', maxLength: MAX_APPROVAL_REASON_CHARS, description: `Why (at most ${MAX_APPROVAL_REASON_CHARS} characters); a refusal's reason reaches the model` },
  },
  required: ['request_id', 'approve'],
  additionalProperties: false,
};

/** POST /v1/agents/:id/runs/:run/approvals (scope `agents:chat`, like answering the chat itself). */
export function runApprovalRoutes(options: { runs: RunApprovalRoutesService }): RouteDef[] {
  const { runs } = options;
  return [
    {
      method: 'POST',
      path: '/v1/agents/:id/runs/:run/approvals',
      auth: 'user',
      scope: 'agents:chat',
      summary:
        'Approve or refuse one tool call a run waits for (requires_action): the run after the decision. Once every request is decided the run continues (status running); ' +
        '404 for a request the run does not have, 409 when the run is not waiting (anymore), the request was decided otherwise, or it expired',
      schemas: { params: runParams, body: RUN_APPROVAL_BODY_SCHEMA, response: RUN_SCHEMA },
      maxBodyBytes: 16_384,
      errors: ['conflict'],
      examples: {
        body: { request_id: 'apr_5f0c2a9e1b7d4c36', approve: false, reason: 'not on production data' },
        response: { ...RUN_EXAMPLE, status: 'running', output: null, required_action: null, ended_at: null },
      },
      handler: (input: { params: { id: string; run: string }; body: { request_id: string; approve: boolean; reason?: string } }, ctx) => {
        const { request_id, approve, reason } = input.body;
        return runs.decide(principalOf(ctx), input.params.id, input.params.run, { request_id, approve, ...(reason === undefined ? {} : { reason }) });
      },
    },
  ];
}
