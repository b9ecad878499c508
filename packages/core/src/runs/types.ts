/**
 * Runs (issue 16): every turn of an agent is a run, a durable resource with an id, a status
 * and a journal of the frames it emitted. The API shape is snake_case like every record.
 */
import type { ToolCallRecord } from '../contract/models.js';
import type { AnswerEndReason } from '../protocol/frames.js';

export type RunStatus = 'queued' | 'running' | 'requires_action' | 'completed' | 'cancelled' | 'failed';

/** Statuses a run never leaves. */
export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ['completed', 'cancelled', 'failed'];

/** What a run waits for while `requires_action` (tool approval). */
export interface RequiredAction {
  type: 'tool_approval';
  requests: { request_id: string; call_id: string; tool: string; parameters: Record<string, unknown> }[];
  /** The model round's calls (all of them, gated or not), to run once every request is decided. */
  calls: ToolCallRecord[];
  decisions: Record<string, { approve: boolean; reason?: string }>;
  expires_at: string;
}

export interface RunUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

export interface RunRecord {
  /** `run_` + 24 hex. */
  id: string;
  agent_id: string;
  /** Username of the agent's owner. */
  owner: string;
  /** The chat message_id (the client's or generated); the turn's message id in history and events. */
  message_id: string;
  status: RunStatus;
  input: { content: string };
  /** Set when it ends (the partial content on a cancel or an interruption). */
  output: { content: string; reason: AnswerEndReason } | null;
  usage: RunUsage;
  /** Failed runs only: e.g. `upstream_error`, `interrupted`, `approval_timeout`. */
  error: { code: string; message: string } | null;
  required_action: RequiredAction | null;
  /** Absolute http(s) URL notified of the run's transitions. */
  webhook: string | null;
  /** Highest frame seq journaled so far (0: none). */
  last_seq: number;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

/** A run to insert (Store.createRun). */
export interface NewRunRecord extends Omit<RunRecord, 'last_seq' | 'started_at' | 'ended_at' | 'output' | 'error' | 'required_action'> {
  idempotency_key: string | null;
  /** sha256 hex of the canonical request body (idempotency conflicts). */
  request_hash: string | null;
  /** Which instance runs it (the interrupted-run sweep). */
  instance_id: string | null;
}

/** What Store.updateRun may change. */
export type RunPatch = Partial<Pick<RunRecord, 'status' | 'output' | 'usage' | 'error' | 'required_action' | 'started_at' | 'ended_at' | 'last_seq'>> & {
  instance_id?: string | null;
};

/** One journaled frame of a run: its seq and its JSON text (the exact text clients receive). */
export interface RunFrame {
  seq: number;
  json: string;
}

export type CreateRunResult = { created: true; run: RunRecord } | { created: false; run: RunRecord; requestHash: string | null };

export interface RunQuery {
  status?: RunStatus;
  /** A run id: runs older than it (paging). */
  before?: string;
  limit: number;
}

export interface FindRunsQuery {
  status: RunStatus[];
  agentId?: string;
  instanceId?: string;
  /** required_action.expires_at earlier than this. */
  expiresBefore?: string;
  limit?: number;
}

/** The run methods of the Store (store/types.ts), which is all the run service needs of it. */
export interface RunStore {
  createRun(run: NewRunRecord, options: { idempotencyWindowMs: number; nowMs: number }): Promise<CreateRunResult>;
  getRun(id: string): Promise<RunRecord | null>;
  listRuns(agentId: string, query: RunQuery): Promise<RunRecord[]>;
  updateRun(id: string, patch: RunPatch, options?: { fromStatus?: RunStatus[] }): Promise<RunRecord | null>;
  appendRunFrames(runId: string, frames: RunFrame[]): Promise<void>;
  listRunFrames(runId: string, afterSeq: number, limit?: number): Promise<RunFrame[]>;
  findRuns(query: FindRunsQuery): Promise<RunRecord[]>;
}
