/**
 * The shapes of runs (README, "Runs"): the run resource of the REST routes and the frames a run
 * streams (chat frames with `run_id` and `seq`, and `tool_approval_required`). Frame types are
 * the core's own (`import type`: nothing of the core is bundled).
 */
import type { AnswerEndReason, AnswerUsage, ServerFrame as CoreServerFrame } from '@sentinel/api-core';

/** Where a run is: `queued` → `running` (↔ `requires_action`) → one of the terminal three. */
export type RunStatus = 'queued' | 'running' | 'requires_action' | 'completed' | 'cancelled' | 'failed';

/** The statuses a run never leaves. */
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['completed', 'cancelled', 'failed'];

/** One tool call waiting for a person's decision. */
export interface ApprovalRequest {
  request_id: string;
  call_id: string;
  tool: string;
  parameters: Record<string, unknown>;
}

/** What a run in `requires_action` waits for. */
export interface RequiredAction {
  type: 'tool_approval';
  requests: ApprovalRequest[];
  /** The model round's calls, run once every request is decided. */
  calls: unknown[];
  /** The decisions taken so far, by request_id. */
  decisions: Record<string, { approve: boolean; reason?: string }>;
  /** RFC 3339: after it the run fails with `approval_timeout`. */
  expires_at: string;
}

/** A run: one turn of an agent, driven by REST or a chat socket. */
export interface Run {
  /** `run_` and 24 hex digits. */
  id: string;
  agent_id: string;
  owner: string;
  /** The turn's message id (the client's, or one the server made). */
  message_id: string;
  status: RunStatus;
  input: { content: string };
  /** Set when the run ends (the partial answer for a cancelled one). */
  output: { content: string; reason: AnswerEndReason } | null;
  usage: AnswerUsage;
  /** `failed` only: e.g. `upstream_error`, `interrupted`, `approval_timeout`. */
  error: { code: string; message: string } | null;
  /** `requires_action` only. */
  required_action: RequiredAction | null;
  webhook: string | null;
  /** The highest frame seq journaled so far (0: none). */
  last_seq: number;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

/** Fields every frame of a run carries on top of the chat frame's own. */
export interface RunFrameFields {
  /** The run the frame belongs to (absent on frames of no run, such as `connection_established`). */
  run_id?: string;
  /** 1, 2, 3… per run: resume after the last one seen. */
  seq?: number;
}

/** `tool_approval_required`: the run waits for a decision on one tool call (`approve`). */
export interface ToolApprovalRequiredFrame {
  type: 'tool_approval_required';
  timestamp: string;
  run_id: string;
  seq: number;
  message_id: string;
  request_id: string;
  tool: string;
  parameters: Record<string, unknown>;
  /** RFC 3339: an undecided request fails the run with `approval_timeout` then. */
  expires_at: string;
}

/** A frame the chat socket or a run's stream sends. */
export type ServerFrame = (CoreServerFrame | ToolApprovalRequiredFrame) & RunFrameFields;

/** A frame of a run (every one has its `run_id` and `seq`). */
export type RunFrame = ServerFrame & { run_id: string; seq: number };

/** A run's terminal frame: `stream_end`, `response` (`stream: false` sockets) or `error`. */
export function isTerminalFrame(frame: { type: string }): boolean {
  return frame.type === 'stream_end' || frame.type === 'response' || frame.type === 'error';
}
