/**
 * The shapes of runs (README, "Runs"): the run resource (generated from the REST routes' schema,
 * models.ts) and the frames a run streams (chat frames with `run_id` and `seq`, and
 * `tool_approval_required`). Frame types are the core's own (`import type`: nothing of the core
 * is bundled).
 */
import type { ServerFrame as CoreServerFrame } from '@sentinel/api-core';
import type { RunStatus } from './models.js';

export type { ApprovalRequest, RequiredAction, Run, RunStatus } from './models.js';

/** The statuses a run never leaves. */
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['completed', 'cancelled', 'failed'];

/** Fields every frame of a run carries on top of the chat frame's own. */
export interface RunFrameFields {
  /** The run the frame belongs to (absent on frames of no run, such as `connection_established`). */
  run_id?: string;
  /** 1, 2, 3… per run: resume after the last one seen. */
  seq?: number;
}

/** `tool_approval_required`: the run waits for a decision on one tool call (`approve`) before `expires_at`. */
export type ToolApprovalRequiredFrame = Extract<CoreServerFrame, { type: 'tool_approval_required' }>;

/** A frame the chat socket or a run's stream sends (the core's own type). */
export type ServerFrame = CoreServerFrame & RunFrameFields;

/** A frame of a run (every one has its `run_id` and `seq`). */
export type RunFrame = ServerFrame & { run_id: string; seq: number };

/** A run's terminal frame: `stream_end`, `response` (`stream: false` sockets) or `error`. */
export function isTerminalFrame(frame: { type: string }): boolean {
  return frame.type === 'stream_end' || frame.type === 'response' || frame.type === 'error';
}
