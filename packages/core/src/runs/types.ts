/**
 * Runs (issue 16): every chat turn is a durable resource with an id, a status and a journal of
 * the frames it sent, so a client can wait for it, resume its stream or cancel it from anywhere.
 * These are the shapes every part of the feature shares: the API record (snake_case, as served),
 * the Store's inputs, and the journal rows. Behaviour lives in runs/service.ts and the stores.
 */
import type { ToolCallRecord } from '../contract/models.js';
import type { AnswerEndReason } from '../protocol/frames.js';

/** Every status a run can have, in lifecycle order (the stores' CHECK constraint lists the same). */
export const RUN_STATUSES = ['queued', 'running', 'requires_action', 'completed', 'cancelled', 'failed'] as const;

/** Where a run is: `completed`, `cancelled` and `failed` are terminal; `requires_action` waits for a person. */
export type RunStatus = (typeof RUN_STATUSES)[number];

/** What a run waiting in `requires_action` needs: decisions on the tool calls that require approval. */
export interface RequiredAction {
  type: 'tool_approval';
  /** The gated calls, one approval request each. */
  requests: { request_id: string; call_id: string; tool: string; parameters: Record<string, unknown> }[];
  /** The model round's calls (all of them, gated or not), to run once every request is decided. */
  calls: ToolCallRecord[];
  /** The decisions so far, by request_id. */
  decisions: Record<string, { approve: boolean; reason?: string }>;
  /** RFC 3339; an undecided request fails the run with `approval_timeout` after this. */
  expires_at: string;
}

/** Token usage of a run so far (all model rounds of the turn). */
export interface RunUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

/** A run as the API serves it. Internal columns (idempotency key, request hash, instance, position) stay in the Store. */
export interface RunRecord {
  /** `run_` + 24 hex (newRunId()). */
  id: string;
  agent_id: string;
  /** Username of the agent's owner (auth checks, the webhook secret). */
  owner: string;
  /** The chat message_id (the client's or a generated one): the turn's message id in history and events. */
  message_id: string;
  status: RunStatus;
  input: { content: string };
  /** Set when the run ends (the partial content on cancel); null before. */
  output: { content: string; reason: AnswerEndReason } | null;
  usage: RunUsage;
  /** `failed` only: e.g. `upstream_error`, `interrupted`, `approval_timeout`. */
  error: { code: string; message: string } | null;
  /** `requires_action` only. */
  required_action: RequiredAction | null;
  /** Absolute http(s) URL notified on transitions, from the request or the agent's default; null for none. */
  webhook: string | null;
  /** Highest frame seq journaled so far (0: none). */
  last_seq: number;
  /** RFC 3339, like every timestamp. */
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

/** What `Store.createRun` takes: a run not started yet, plus the internal columns. */
export type NewRunRecord = Omit<RunRecord, 'last_seq' | 'started_at' | 'ended_at' | 'output' | 'error' | 'required_action'> & {
  /** Unique per agent while younger than the idempotency window; null: no key. */
  idempotency_key: string | null;
  /** sha256 hex of the canonical request body, to tell a replay from a conflicting reuse of the key; null when unknown. */
  request_hash: string | null;
  /** The instance that runs it (scale-out cancel and interrupted-run sweeps); null when none yet. */
  instance_id: string | null;
};

/** What `Store.updateRun` may change. A field left out is kept; null clears a nullable one. */
export type RunPatch = Partial<
  Pick<RunRecord, 'status' | 'output' | 'usage' | 'error' | 'required_action' | 'started_at' | 'ended_at' | 'last_seq'> & {
    instance_id: string | null;
  }
>;

/** One journaled frame of a run: its seq (1, 2, 3… per run) and the exact JSON text sent. */
export interface RunFrameRow {
  seq: number;
  json: string;
}

/** What `Store.listRuns` returns: one agent's runs, newest first. */
export interface RunQuery {
  /** Only runs with this status. Default: any. */
  status?: RunStatus;
  /** Cursor: only runs created before this run (by id, of the same agent). An unknown id matches nothing. */
  before?: string;
  /** At most this many (at most 1000). */
  limit: number;
}

/** What `Store.findRuns` matches (sweepers: interrupted runs, expired approvals); every given field must match. */
export interface RunSearch {
  /** Runs with one of these statuses. */
  status: RunStatus[];
  /** Only this agent's runs. */
  agentId?: string;
  /** Only runs owned by this instance. */
  instanceId?: string;
  /** Only runs whose `required_action.expires_at` is before this RFC 3339 instant. */
  expiresBefore?: string;
  /** At most this many, oldest first. Default 100, at most 1000. */
  limit?: number;
}

/** Options of `Store.createRun`. */
export interface CreateRunOptions {
  /** How long an idempotency key stays taken after its run was created, ms (the API uses 24 h). */
  idempotencyWindowMs: number;
  /** The current time, epoch ms (a parameter so the window can be tested without waiting). */
  nowMs: number;
}

/** What `Store.createRun` did: created the run, or found a run with the same key inside the window. */
export type CreateRunResult = { created: true; run: RunRecord } | { created: false; run: RunRecord; requestHash: string | null };

/** Options of `Store.updateRun`. */
export interface UpdateRunOptions {
  /** Apply the patch only while the run's status is one of these (compare-and-set, atomic across instances). Default: any status. */
  fromStatus?: RunStatus[];
  /**
   * Apply the patch only while the stored `required_action` equals this one (as read): the
   * compare-and-set of two people deciding different requests of one run at once, so neither
   * decision overwrites the other. Default: whatever it is.
   */
  ifRequiredAction?: RequiredAction;
}
