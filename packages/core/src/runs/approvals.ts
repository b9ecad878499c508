/**
 * Tool approval of runs (issue 16, README "Tool approval"): a run whose turn paused on a gated
 * tool call waits in `requires_action` with its {@link RequiredAction} in the Store; people
 * decide each request (chat `tool_approval` frame or `POST …/runs/{run}/approvals`) on any
 * instance, and once every request is decided the instance that stored the last decision moves
 * the run back to `running` (compare-and-set on `requires_action`, so two instances deciding at
 * once cannot both continue) and submits the continuation turn. A sweeper on every instance
 * fails runs whose requests were not decided before `expires_at` (`approval_timeout`), again by
 * compare-and-set. Everything lives in the Store, so approvals survive a restart.
 */
import { isoTimestamp } from '../clock.js';
import { SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import type { ApprovalDecision, ApprovalRequired } from '../runtime/turn.js';
import type { Store } from '../store/types.js';
import type { RequiredAction, RunRecord } from './types.js';

/** Default of {@link RunApprovalsOptions.timeoutMs}: an hour. */
export const DEFAULT_APPROVAL_TIMEOUT_MS = 3_600_000;
/** Default of {@link RunApprovalsOptions.sweepIntervalMs}. */
export const DEFAULT_APPROVAL_SWEEP_INTERVAL_MS = 5_000;

/** A decision that lost its compare-and-set to another one of the same run is merged and written again, at most this often. */
const MAX_DECISION_ATTEMPTS = 8;

/** A person's decision on one request of a run. */
export interface RunDecision {
  request_id: string;
  approve: boolean;
  /** Why; a refusal's reason reaches the model. Default none. */
  reason?: string;
}

/** A frame of the approval flow, without the `run_id`/`seq`/`timestamp` the run's journal adds. */
export type ApprovalFrame =
  | { type: 'tool_approval_required'; message_id: string; request_id: string; tool: string; parameters: Record<string, unknown>; expires_at: string }
  | { type: 'event'; event_type: 'tool_approval'; message_id: string; data: { request_id: string; approve: boolean; reason?: string } }
  | { type: 'error'; error: string; code: 'approval_timeout'; message_id: string };

/** What the approvals need from the run service. */
export interface RunApprovalsOptions {
  store: Store;
  /** Journals one frame of the run (and delivers it to its subscribers); `terminal` for the run's last frame. */
  emit(run: RunRecord, frame: ApprovalFrame, terminal: boolean): Promise<void>;
  /** Submits the continuation turn of `run` (already `running` in the Store). */
  resume(run: RunRecord, continuation: { calls: RequiredAction['calls']; decisions: Record<string, ApprovalDecision> }): Promise<void>;
  /** Answers the paused calls of a run that will not continue (see `AgentRuntime.answerPendingCalls`). */
  abandon(run: RunRecord, action: RequiredAction, why: string): Promise<void>;
  /** Called after this instance failed an expired run. Default: nothing. */
  onExpired?(run: RunRecord): void;
  /** How long a request waits for its decision, ms. Default {@link DEFAULT_APPROVAL_TIMEOUT_MS} (1 h). */
  timeoutMs?: number;
  /** How often expired requests are looked for, ms. Default {@link DEFAULT_APPROVAL_SWEEP_INTERVAL_MS}. */
  sweepIntervalMs?: number;
  /** The instance that continues a run it decided last (stored as the run's `instance_id`). Default none. */
  instanceId?: string;
  /** Clock, epoch ms. Default `Date.now`. */
  now?: () => number;
  logger: Logger;
}

function validDuration(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer of ms, got ${value}`);
  return value;
}

/** The approvals of every run this instance is asked about, and the expiry sweeper. */
export class RunApprovals {
  /** How long a request waits for its decision, ms. */
  readonly timeoutMs: number;
  private readonly options: RunApprovalsOptions;
  private readonly now: () => number;
  private readonly sweepIntervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(options: RunApprovalsOptions) {
    this.options = options;
    this.timeoutMs = validDuration('approval timeout', options.timeoutMs ?? DEFAULT_APPROVAL_TIMEOUT_MS);
    this.sweepIntervalMs = validDuration('approval sweep interval', options.sweepIntervalMs ?? DEFAULT_APPROVAL_SWEEP_INTERVAL_MS);
    this.now = options.now ?? Date.now;
  }

  /**
   * What a run waits for after its turn asked for approvals: the {@link RequiredAction} to
   * store with status `requires_action`, and one `tool_approval_required` frame per request.
   */
  required(messageId: string, required: ApprovalRequired): { action: RequiredAction; frames: ApprovalFrame[] } {
    const expires_at = isoTimestamp(this.now() + this.timeoutMs);
    const action: RequiredAction = { type: 'tool_approval', requests: required.requests.map((r) => ({ ...r })), calls: required.calls, decisions: {}, expires_at };
    const frames: ApprovalFrame[] = action.requests.map((r) => ({
      type: 'tool_approval_required',
      message_id: messageId,
      request_id: r.request_id,
      tool: r.tool,
      parameters: r.parameters,
      expires_at,
    }));
    return { action, frames };
  }

  /**
   * Stores `decision` for `run` and, once every request is decided, continues the run. Returns
   * the run as stored after the decision. Throws `not_found` for a request the run does not
   * have, `conflict` when the run is not waiting (anymore) or the request was decided otherwise;
   * the same decision twice is accepted once and answered with the run both times.
   */
  async decide(run: RunRecord, decision: RunDecision): Promise<RunRecord> {
    const { store } = this.options;
    let current: RunRecord | null = run;
    for (let attempt = 0; attempt < MAX_DECISION_ATTEMPTS; attempt++) {
      if (!current) throw new SentinelError('not_found', `run "${run.id}" not found`);
      const action = current.required_action;
      if (current.status !== 'requires_action' || !action) {
        throw new SentinelError('conflict', `run ${current.id} is not waiting for a tool approval (it is ${current.status})`);
      }
      const request = action.requests.find((r) => r.request_id === decision.request_id);
      if (!request) throw new SentinelError('not_found', `run ${current.id} has no approval request "${decision.request_id}"`);
      const previous = action.decisions[decision.request_id];
      if (previous) {
        if (previous.approve === decision.approve && previous.reason === decision.reason) return current;
        throw new SentinelError('conflict', `approval request ${decision.request_id} was already decided (${previous.approve ? 'approved' : 'refused'})`);
      }
      if (Date.parse(action.expires_at) <= this.now()) {
        await this.expire(current);
        throw new SentinelError('conflict', `approval request ${decision.request_id} expired at ${action.expires_at}`);
      }
      const decided: RequiredAction['decisions'][string] = { approve: decision.approve, ...(decision.reason === undefined ? {} : { reason: decision.reason }) };
      const decisions = { ...action.decisions, [decision.request_id]: decided };
      const complete = action.requests.every((r) => decisions[r.request_id] !== undefined);
      if (!complete) {
        // Compare-and-set on the action as read: a decision another instance stored in between
        // makes this write miss, and the loop merges with it and tries again.
        const updated = await store.updateRun(current.id, { required_action: { ...action, decisions } }, { fromStatus: ['requires_action'], ifRequiredAction: action });
        if (!updated) {
          current = await store.getRun(current.id);
          continue;
        }
        await this.emitDecision(updated, decision);
        return updated;
      }
      const patch = {
        status: 'running' as const,
        required_action: null,
        ...(this.options.instanceId === undefined ? {} : { instance_id: this.options.instanceId }),
      };
      // The compare-and-set that only one decider wins: the run continues once.
      const updated = await store.updateRun(current.id, patch, { fromStatus: ['requires_action'], ifRequiredAction: action });
      if (!updated) {
        current = await store.getRun(current.id);
        continue;
      }
      await this.emitDecision(updated, decision);
      const byCall: Record<string, ApprovalDecision> = {};
      for (const r of action.requests) {
        const d = decisions[r.request_id] as RequiredAction['decisions'][string];
        byCall[r.call_id] = d;
      }
      await this.options.resume(updated, { calls: action.calls, decisions: byCall });
      return updated;
    }
    throw new SentinelError('conflict', `run ${run.id}: too many concurrent decisions, decide again`);
  }

  /**
   * Fails `run` with `approval_timeout` if it still waits (compare-and-set), answering its
   * paused calls and journaling the terminal `error` frame. Returns the failed run, or null
   * when another instance (or a decision) got there first.
   */
  async expire(run: RunRecord): Promise<RunRecord | null> {
    const action = run.required_action;
    if (!action) return null;
    const undecided = action.requests.filter((r) => action.decisions[r.request_id] === undefined).map((r) => r.request_id);
    const message = `no decision on tool approval ${undecided.join(', ')} before ${action.expires_at}`;
    const failed = await this.options.store.updateRun(
      run.id,
      { status: 'failed', error: { code: 'approval_timeout', message }, required_action: null, ended_at: isoTimestamp(this.now()) },
      { fromStatus: ['requires_action'] },
    );
    if (!failed) return null;
    await this.options.abandon(failed, action, 'nobody approved the call in time');
    await this.options.emit(failed, { type: 'error', error: message, code: 'approval_timeout', message_id: failed.message_id }, true);
    this.options.onExpired?.(failed);
    return failed;
  }

  /** Fails every run whose approval expired (on any instance; the compare-and-set makes each fail once). */
  async sweep(): Promise<void> {
    const expired = await this.options.store.findRuns({ status: ['requires_action'], expiresBefore: isoTimestamp(this.now()), limit: 100 });
    for (const run of expired) {
      try {
        await this.expire(run);
      } catch (err) {
        this.options.logger.error('cannot expire run approval', { run_id: run.id, agent_id: run.agent_id, error: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  /** Starts the expiry sweeper (idempotent). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      // One sweep at a time: a slow Store must not pile sweeps up.
      this.sweeping ??= this.sweep()
        .catch((err: unknown) => this.options.logger.error('approval sweep failed', { error: err instanceof Error ? err.message : String(err) }))
        .finally(() => (this.sweeping = undefined));
    }, this.sweepIntervalMs);
    this.timer.unref();
  }

  /** Stops the sweeper and waits for a sweep in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  private emitDecision(run: RunRecord, decision: RunDecision): Promise<void> {
    const data = { request_id: decision.request_id, approve: decision.approve, ...(decision.reason === undefined ? {} : { reason: decision.reason }) };
    return this.options.emit(run, { type: 'event', event_type: 'tool_approval', message_id: run.message_id, data }, false);
  }
}
