/**
 * The run service (docs/ARCHITECTURE.md#runs): every turn of an agent is a run. `create`
 * stores the run (idempotent by key, per agent, for 24 h) and submits its turn to the
 * {@link AgentRuntime}; the run's {@link TurnListener} turns the runtime's callbacks into the
 * run's frames (journal.ts) and its end into the run's final status, compare-and-set in the
 * Store. The chat socket and the REST routes drive runs only through this service.
 *
 * Runs outlive sockets, not servers: on start, and periodically with several instances, runs
 * still queued or running on an instance that is gone are ended `failed` / `interrupted`
 * with a terminal `error` frame, so no run stays `running` forever.
 */
import { createHash } from 'node:crypto';
import type { AgentService } from '../agents/service.js';
import type { EventBus } from '../bus.js';
import { isoTimestamp } from '../clock.js';
import { isSentinelError, SentinelError } from '../contract/errors.js';
import { newMessageId, newResponseId, newRunId } from '../contract/ids.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentRecord, Principal } from '../contract/models.js';
import type { AnswerEndReason, ServerFrame } from '../protocol/frames.js';
import type { AgentRuntime, ApprovalDecision, ApprovalRequired, TurnEnd, TurnListener } from '../runtime/runtime.js';
import { RunApprovals, type ApprovalFrame, type RunDecision } from './approvals.js';
import { frameOf, isTerminalFrameJson, type JournaledFrame, type LiveRun, type RunJournal } from './journal.js';
import { endedPatch, failedPatch, INTERRUPTED_MESSAGE, isActiveStatus, isTerminalStatus, transitionOf } from './status.js';
import type { Store } from '../store/types.js';
import { captureTraceContext, runInContext } from '../telemetry/tracing.js';
import type { Context } from '@opentelemetry/api';
import { checkWebhookUrl, type WebhookAddressPolicy } from '../webhooks/url.js';
import type { RequiredAction, RunFrameRow, RunRecord, RunStatus, RunUsage } from './types.js';

/** Which instances are alive (the Redis one is redis/instance-liveness.ts). */
export interface InstanceLiveness {
  /** Marks `instanceId` alive for `ttlMs`. */
  beat(instanceId: string, ttlMs: number): Promise<void>;
  /** The ones of `instanceIds` that are alive. */
  alive(instanceIds: string[]): Promise<Set<string>>;
  /** `instanceId` stopped cleanly. */
  gone(instanceId: string): Promise<void>;
  /** Every instance that beat since it was last forgotten (alive or not). */
  known(): Promise<string[]>;
  /** Drops `instanceId` from {@link known} (it is gone and has no run left). */
  forget(instanceId: string): Promise<void>;
}

/** A transition a listener of {@link RunService.onTransition} hears of. */
export type RunTransition = 'completed' | 'failed' | 'cancelled' | 'requires_action';

export interface RunServiceOptions {
  store: Store;
  agents: AgentService;
  runtime: AgentRuntime;
  journal: RunJournal;
  bus: EventBus;
  /** This instance's id, recorded in the runs it runs. Required. */
  instanceId: string;
  /**
   * With several instances: who is alive, for the sweep of runs whose instance went away.
   * Default none: a single instance, whose earlier runs are all interrupted once it starts.
   */
  liveness?: InstanceLiveness;
  /** How long an idempotency key (a chat `message_id`, an `Idempotency-Key`) holds, in ms. Default 24 h. */
  idempotencyWindowMs?: number;
  /** Heartbeat of this instance's liveness key, in ms (the key lives 3 beats). Default 5000. */
  heartbeatMs?: number;
  /** Sweep for runs of instances that are gone, in ms (with `liveness` only). Default 10000. */
  sweepIntervalMs?: number;
  /** How long a run waits in `requires_action` for a person's decisions before it fails `approval_timeout`, in ms. Default 3600000 (1 h). */
  approvalTimeoutMs?: number;
  /** How often runs whose approval expired are looked for, in ms. Default 5000. */
  approvalSweepIntervalMs?: number;
  /**
   * The Store applies writes in the order they are issued, in one group commit per turn of the
   * event loop (the SQLite store): a run without an idempotency key then starts its turn
   * without waiting for its row to be committed first, and the row shares the commit of the
   * turn's first writes (one COMMIT per message saved). Default false (PostgreSQL: separate
   * connections, so the row must exist before the turn writes to it).
   */
  orderedWrites?: boolean;
  /** Default: silent. */
  logger?: Logger;
  /** Clock for timestamps. Default `Date.now`. */
  now?: () => number;
  /** Where a run's webhook may point (webhooks/url.ts; checked at create). Default: public addresses only. */
  webhookPolicy?: WebhookAddressPolicy;
  /** The agent's default webhook URL, for a run that names none (webhooks/agent-webhooks.ts). Default: none. */
  agentWebhook?: (agentId: string) => Promise<string | null>;
}

/** The input of a run. */
export interface RunInput {
  content: string;
  /** The chat message id. Default: generated (`msg_…`). */
  message_id?: string;
  /** Default: `message_id` when given, else none (a generated message id is no key); null: no key. */
  idempotency_key?: string | null;
  /** Absolute http(s) URL told of the run's transitions. Default none. */
  webhook?: string;
  /** sha256 hex of the canonical request (a REST body); a key reused with another hash is `idempotency_conflict`. Default: of `{content}`. */
  requestHash?: string;
  /** The trace context the run's turn is a child of (taken before any await by the caller). Default: the active one when `create` is called. */
  traceContext?: Context;
}

const ACTIVE: RunStatus[] = ['queued', 'running'];
const ZERO_USAGE = Object.freeze({ input_tokens: 0, output_tokens: 0, total_tokens: 0 });
/** How often `wait` and a remote subscription look at the Store when the bus says nothing, in ms. */
const POLL_MS = 500;
const SWEEP_BATCH = 500;

/** sha256 hex of `{content}`: the request hash of a chat message. */
export function messageRequestHash(content: string): string {
  return createHash('sha256').update(JSON.stringify({ content })).digest('hex');
}

export class RunService {
  private readonly store: Store;
  private readonly agents: AgentService;
  private readonly runtime: AgentRuntime;
  private readonly journal: RunJournal;
  private readonly bus: EventBus;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly liveness: InstanceLiveness | undefined;
  private readonly windowMs: number;
  private readonly heartbeatMs: number;
  private readonly sweepIntervalMs: number;
  private readonly webhookPolicy: WebhookAddressPolicy;
  private readonly agentWebhook: ((agentId: string) => Promise<string | null>) | undefined;
  private readonly transitionListeners = new Set<(run: RunRecord, event: RunTransition) => void>();
  /**
   * Agents with a run in requires_action, as this instance knows them: loaded at start, kept
   * by the transitions it makes or hears of ({@link noteRequiresAction}); a message for one of
   * them checks the Store.
   */
  private readonly awaitingApproval = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  private readonly orderedWrites: boolean;
  private sweeping: Promise<void> | undefined;
  private closed = false;
  private readonly approvals: RunApprovals;
  /** This instance's id. */
  readonly instanceId: string;

  constructor(options: RunServiceOptions) {
    this.store = options.store;
    this.agents = options.agents;
    this.runtime = options.runtime;
    this.journal = options.journal;
    this.bus = options.bus;
    this.instanceId = options.instanceId;
    this.liveness = options.liveness;
    this.webhookPolicy = options.webhookPolicy ?? {};
    this.agentWebhook = options.agentWebhook;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.windowMs = options.idempotencyWindowMs ?? 24 * 3600_000;
    this.heartbeatMs = options.heartbeatMs ?? 5_000;
    this.sweepIntervalMs = options.sweepIntervalMs ?? 10_000;
    this.approvals = new RunApprovals({
      store: this.store,
      logger: this.logger,
      now: this.now,
      instanceId: this.instanceId,
      ...(options.approvalTimeoutMs === undefined ? {} : { timeoutMs: options.approvalTimeoutMs }),
      ...(options.approvalSweepIntervalMs === undefined ? {} : { sweepIntervalMs: options.approvalSweepIntervalMs }),
      emit: (run, frame) => this.journal.appendDetached(run.id, run.agent_id, (seq) => approvalFrame(run, seq, isoTimestamp(this.now()), frame)),
      resume: (run, continuation) => this.continueRun(run, continuation),
      abandon: (run, action, why) => this.answerPendingCalls(run, action, why),
      onExpired: (run) => {
        this.logger.info('run approval expired', { run_id: run.id, agent_id: run.agent_id });
        this.emitTransition(run);
      },
    });
    this.orderedWrites = options.orderedWrites ?? false;
  }

  /**
   * Interrupts the runs left queued or running by instances that are gone (on a single
   * instance: every such run, since none can be this start's), then keeps this instance's
   * heartbeat and the periodic sweep going (with liveness).
   */
  async start(): Promise<void> {
    if (this.liveness) {
      await this.liveness.beat(this.instanceId, this.heartbeatMs * 3);
      const beat = setInterval(() => {
        this.liveness!.beat(this.instanceId, this.heartbeatMs * 3).catch((err: unknown) =>
          this.logger.warn('instance heartbeat failed', { instance_id: this.instanceId, error: errorText(err) }),
        );
      }, this.heartbeatMs);
      const sweep = setInterval(() => void this.sweep(), this.sweepIntervalMs);
      beat.unref();
      sweep.unref();
      this.timers.push(beat, sweep);
    }
    await this.sweep();
    // Runs that wait for a person survive restarts: their agents stay busy.
    for (const run of await this.store.findRuns({ status: ['requires_action'], limit: 1000 })) this.noteRequiresAction(run.agent_id);
    this.approvals.start();
  }

  /**
   * Fails (`interrupted`) the queued and running runs whose instance is gone. Resolves when
   * done; a sweep in progress is joined, not doubled. Never rejects.
   */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce()
      .catch((err: unknown) => this.logger.error('interrupted-run sweep failed', { error: errorText(err) }))
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    if (!this.liveness) {
      // A single instance: whatever is queued or running and not live here was left by an earlier start.
      for (;;) {
        const runs = (await this.store.findRuns({ status: ACTIVE, limit: SWEEP_BATCH })).filter((run) => !this.journal.get(run.id));
        for (const run of runs) await this.interrupt(run);
        if (runs.length < SWEEP_BATCH) return;
      }
    }
    const others = (await this.liveness.known()).filter((id) => id !== this.instanceId);
    const alive = await this.liveness.alive(others);
    for (const instanceId of others) {
      if (alive.has(instanceId)) continue;
      for (;;) {
        const runs = await this.store.findRuns({ status: ACTIVE, instanceId, limit: SWEEP_BATCH });
        for (const run of runs) await this.interrupt(run, instanceId);
        if (runs.length < SWEEP_BATCH) break;
      }
      await this.liveness.forget(instanceId);
    }
  }

  /** Ends a run whose instance is gone: `failed` / `interrupted`, the partial answer kept, a terminal `error` frame journaled. */
  private async interrupt(run: RunRecord, instanceId = ''): Promise<void> {
    const content = await this.partialContent(run);
    const endedAt = isoTimestamp(this.now());
    const updated = await this.journal.endOrphan(
      run,
      (seq) => {
        const frame: ServerFrame = { type: 'error', timestamp: endedAt, run_id: run.id, seq, error: INTERRUPTED_MESSAGE, code: 'interrupted', message_id: run.message_id };
        return { json: JSON.stringify(frame) };
      },
      {
        status: 'failed',
        output: { content, reason: 'shutdown' },
        ended_at: endedAt,
        error: { code: 'interrupted', message: INTERRUPTED_MESSAGE },
      },
      ACTIVE,
    );
    if (updated) {
      this.logger.warn('run interrupted: its instance is gone', { run_id: run.id, agent_id: run.agent_id, ...(instanceId ? { instance_id: instanceId } : {}) });
      this.emitTransition(updated);
    }
  }

  /** The text the run streamed before it was cut (its journaled chunks). */
  private async partialContent(run: RunRecord): Promise<string> {
    let content = '';
    for (let after = 0; ; ) {
      const frames = await this.store.listRunFrames(run.id, after);
      for (const frame of frames) {
        if (frame.json.startsWith('{"type":"stream_chunk"')) content += (JSON.parse(frame.json) as { content: string }).content;
      }
      if (frames.length === 0) return content;
      after = frames[frames.length - 1]!.seq;
    }
  }

  /** Stops the heartbeat and the sweep, waits (bounded) for live runs' end writes, and drops this instance's liveness key. */
  async close(settleMs = 5_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    const live = this.journal.liveRuns().map((run) => run.settled);
    if (live.length > 0) await within(Promise.all(live), settleMs);
    await this.sweeping;
    await this.approvals.stop();
    await this.liveness?.gone(this.instanceId).catch(() => undefined);
  }

  /** Calls `listener` once per transition this instance makes (terminal or requires_action). Returns the unsubscribe function. */
  onTransition(listener: (run: RunRecord, event: RunTransition) => void): () => void {
    this.transitionListeners.add(listener);
    return () => this.transitionListeners.delete(listener);
  }

  /** @internal The run's turn started: `running`, compare-and-set from `queued`. */
  markRunning(runId: string): Promise<RunRecord | null> {
    return this.store.updateRun(runId, { status: 'running', started_at: isoTimestamp(this.now()) }, { fromStatus: ['queued'] });
  }

  /**
   * Marks the agent as having a run waiting for an approval (new messages then check the Store
   * and get `agent_busy`). Called by {@link emitTransition}; the approvals part calls it too
   * for such a run it learns of from another instance.
   */
  noteRequiresAction(agentId: string): void {
    this.awaitingApproval.add(agentId);
  }

  /** @internal For the parts that make a transition themselves (approvals): tells the listeners. */
  emitTransition(run: RunRecord): void {
    if (run.status === 'requires_action') this.noteRequiresAction(run.agent_id);
    const event = transitionOf(run.status);
    if (event === undefined) return;
    for (const listener of this.transitionListeners) {
      try {
        listener(run, event);
      } catch (err) {
        this.logger.error('run transition listener failed', { run_id: run.id, error: errorText(err) });
      }
    }
  }

  /**
   * Creates a run and queues its turn, or (`created: false`) finds the run of the same
   * idempotency key, younger than the window, and starts nothing. Errors: `not_found` (agent),
   * `conflict` (stopped), `agent_busy` (queue full, or a run waiting for an approval),
   * `unavailable` (shutting down), `idempotency_conflict` (the key with another request).
   */
  async create(principal: Principal, agentId: string, input: RunInput): Promise<{ run: RunRecord; created: boolean }> {
    // Before the first await: under a context manager without async tracking it is gone after.
    const traceContext = input.traceContext ?? captureTraceContext();
    const agent = await this.agents.getRecord(principal, agentId);
    // The webhook address policy (as for http_fetch): a refused URL is a 400 before anything is stored.
    if (input.webhook !== undefined) await checkWebhookUrl(input.webhook, this.webhookPolicy);
    const key = input.idempotency_key === undefined ? (input.message_id ?? null) : input.idempotency_key;
    const requestHash = input.requestHash ?? (key === null ? null : messageRequestHash(input.content));
    const nowMs = this.now();
    const refused = this.refusal(agent);
    if (refused) throw refused;
    // Checked before the run is stored, so a refused message does not take its idempotency key.
    // Only for an agent known to wait: a Store query per message cost more than the journal.
    const waiting = this.awaitingApproval.has(agent.id) ? await this.waitingRun(agent.id) : undefined;
    if (waiting) {
      if (key !== null && waiting.message_id === key) {
        // The same message again (a reconnect) while its run waits for an approval: that run.
        return { run: waiting, created: false };
      }
      throw new SentinelError('agent_busy', `agent is waiting for a tool approval in run ${waiting.id}`);
    }
    const messageId = input.message_id ?? newMessageId();
    // The run's own URL wins over the agent's default (webhooks/), copied so the record says where it goes.
    const webhook = input.webhook ?? (this.agentWebhook === undefined ? null : await this.agentWebhook(agent.id));
    const createdAt = isoTimestamp(nowMs);
    const runId = newRunId(nowMs);
    const creating = this.store.createRun(
      {
        id: runId,
        agent_id: agent.id,
        owner: agent.owner,
        message_id: messageId,
        status: 'queued',
        input: { content: input.content },
        usage: { ...ZERO_USAGE },
        webhook,
        created_at: createdAt,
        idempotency_key: key,
        request_hash: requestHash,
        instance_id: this.instanceId,
      },
      { idempotencyWindowMs: this.windowMs, nowMs },
    );
    if (key === null && this.orderedWrites) {
      // Nothing can make it exist already: its row is written before anything the turn writes,
      // in the same group commit as the turn's first writes.
      const run = queuedRun(runId, agent, messageId, { ...input, ...(webhook === null ? {} : { webhook }) }, createdAt);
      creating.catch((err: unknown) => this.logger.error('cannot store a run', { run_id: run.id, error: errorText(err) }));
      const { refused: notQueued } = this.startTurn(agent, run, traceContext, creating);
      return { run: notQueued ? ((await notQueued) ?? run) : run, created: true };
    }
    const result = await creating;
    if (!result.created) {
      checkSameRequest(result.requestHash, requestHash);
      return { run: result.run, created: false };
    }
    const { refused: notQueued } = this.startTurn(agent, result.run, traceContext);
    return { run: notQueued ? ((await notQueued) ?? result.run) : result.run, created: true };
  }

  /** Opens the run's journal and queues its turn; `refused` (when the queue refused it) resolves to the failed run. */
  private startTurn(agent: AgentRecord, run: RunRecord, traceContext: Context | undefined, stored?: Promise<unknown>): { refused?: Promise<RunRecord | null> } {
    const live = this.journal.open(run, stored);
    const listener = new RunTurnListener(this, live, run, newResponseId());
    // The turn takes its trace parent from the context it is queued in.
    const submitted = runInContext(traceContext, () =>
      this.runtime.submit(agent.id, { messageId: run.message_id, content: run.input.content, responseId: listener.responseId, owner: live, runId: run.id }, listener),
    );
    return submitted.accepted ? {} : { refused: this.failUnstarted(live, run, submitted.error) };
  }

  /** The agent's run in requires_action, if any (the set is corrected on the way). */
  private async waitingRun(agentId: string): Promise<RunRecord | undefined> {
    const [waiting] = await this.store.findRuns({ status: ['requires_action'], agentId, limit: 1 });
    if (!waiting) this.awaitingApproval.delete(agentId);
    return waiting;
  }

  /** A run of the agent refused before it started (the queue filled meanwhile): failed with that error, journaled. */
  private failUnstarted(live: LiveRun, run: RunRecord, err: SentinelError): Promise<RunRecord | null> {
    const endedAt = isoTimestamp(this.now());
    return live
      .end((seq) => errorFrame(run, seq, endedAt, err), failedPatch(err, '', { ...ZERO_USAGE }, endedAt), ACTIVE)
      .then((updated) => {
        if (updated) this.emitTransition(updated);
        return updated;
      });
  }

  private refusal(agent: AgentRecord): SentinelError | undefined {
    if (this.closed) return new SentinelError('unavailable', 'server is shutting down');
    if (agent.status !== 'running') return new SentinelError('conflict', agent.status === 'stopped' ? 'agent is stopped' : `agent is not running (${agent.status})`);
    return this.runtime.refusal(agent.id);
  }

  /** The run (`not_found` for an unknown run, another agent's, or another user's agent). */
  async get(principal: Principal, agentId: string, runId: string): Promise<RunRecord> {
    const agent = await this.agents.getRecord(principal, agentId);
    // A run of this instance whose row is still on its way to the Store (see orderedWrites).
    const run = (await this.store.getRun(runId)) ?? (await this.journal.get(runId)?.stored.then(() => this.store.getRun(runId))) ?? null;
    if (!run || run.agent_id !== agent.id) throw new SentinelError('not_found', `run "${runId}" not found`);
    return run;
  }

  /** The agent's runs, newest first, `limit` (default 20, at most 100) per page; `next` is the cursor of the next page. */
  async list(principal: Principal, agentId: string, query: { status?: RunStatus; before?: string; limit?: number }): Promise<{ runs: RunRecord[]; next: string | null }> {
    const agent = await this.agents.getRecord(principal, agentId);
    const limit = Math.min(Math.max(1, query.limit ?? 20), 100);
    const rows = await this.store.listRuns(agent.id, {
      limit: limit + 1,
      ...(query.status === undefined ? {} : { status: query.status }),
      ...(query.before === undefined ? {} : { before: query.before }),
    });
    const runs = rows.slice(0, limit);
    return { runs, next: rows.length > limit ? (runs[runs.length - 1]?.id ?? null) : null };
  }

  /**
   * Resolves when the run leaves queued/running (terminal or requires_action), or after
   * `timeoutMs` (or on abort) with its current record.
   */
  async wait(principal: Principal, agentId: string, runId: string, timeoutMs: number, signal?: AbortSignal): Promise<RunRecord> {
    let run = await this.get(principal, agentId, runId);
    const deadline = this.now() + Math.max(0, timeoutMs);
    while (isActiveStatus(run.status) && this.now() < deadline && !signal?.aborted) {
      const live = this.journal.get(runId);
      const remaining = deadline - this.now();
      // A live run here says when it ends; one elsewhere is read again every POLL_MS.
      await Promise.race([live ? live.settled : sleep(Math.min(remaining, POLL_MS)), sleep(remaining), aborted(signal)]);
      run = (await this.store.getRun(runId)) ?? run;
    }
    return run;
  }

  /**
   * Cancels the run: a queued or running one wherever it runs (it ends `cancelled` with its
   * partial answer), one waiting for an approval at once. A terminal run is returned as is.
   * Resolves with the run once the cancel took effect (or after a few seconds with its
   * current record, when another instance has not answered yet).
   */
  async cancel(principal: Principal, agentId: string, runId: string): Promise<RunRecord> {
    const run = await this.get(principal, agentId, runId);
    if (isTerminalStatus(run.status)) return run;
    if (run.status === 'requires_action') {
      const endedAt = isoTimestamp(this.now());
      const updated = await this.journal.endOrphan(
        run,
        (seq) => ({ json: JSON.stringify(endFrame(run, seq, endedAt, newResponseId(), { content: '', reason: 'cancelled', usage: run.usage })) }),
        { status: 'cancelled', output: { content: run.output?.content ?? '', reason: 'cancelled' }, ended_at: endedAt, required_action: null },
        ['requires_action'],
      );
      if (updated) {
        if (run.required_action) await this.answerPendingCalls(updated, run.required_action, 'the run was cancelled');
        this.emitTransition(updated);
        return updated;
      }
      return (await this.store.getRun(runId)) ?? run;
    }
    const live = this.journal.get(runId);
    if (live) {
      this.runtime.cancel(run.agent_id, run.message_id, live);
      await within(live.settled, 5_000);
    } else if (this.runtime.cancelElsewhere(run.agent_id, run.message_id)) {
      return this.wait(principal, agentId, runId, 5_000);
    } else {
      // Nobody runs it (its instance went away): the sweep's verdict, now.
      await this.sweep();
    }
    return (await this.store.getRun(runId)) ?? run;
  }

  /**
   * A person's decision on one tool approval request of the run (runs/approvals.ts): stored
   * and journaled (`event tool_approval`); the last decision continues the run, on this
   * instance. Resolves to the run after the decision. Errors: `not_found` (run, or a request it
   * does not have), `conflict` (the run is not waiting, the request was decided otherwise, or
   * it expired).
   */
  async decide(principal: Principal, agentId: string, runId: string, decision: RunDecision): Promise<RunRecord> {
    return this.approvals.decide(await this.get(principal, agentId, runId), decision);
  }

  /** The agent's run waiting for a tool approval, if any (the chat socket's `tool_approval` frame names none). */
  async runAwaitingApproval(principal: Principal, agentId: string): Promise<RunRecord | undefined> {
    const agent = await this.agents.getRecord(principal, agentId);
    const [run] = await this.store.findRuns({ status: ['requires_action'], agentId: agent.id, limit: 1 });
    return run;
  }

  /** @internal What a run's turn asked approvals for: the action to store, the frames to journal. */
  approvalFor(messageId: string, required: ApprovalRequired): { action: RequiredAction; frames: ApprovalFrame[] } {
    return this.approvals.required(messageId, required);
  }

  /** Fails the expired approvals now (the sweeper does it every `approvalSweepIntervalMs`). */
  sweepApprovals(): Promise<void> {
    return this.approvals.sweep();
  }

  /**
   * Submits the continuation turn of a run every request of which was decided (already
   * `running` in the Store): it journals after the run's last frame, answers as the same
   * response, and its end carries the whole answer and usage of the run.
   */
  private async continueRun(decided: RunRecord, continuation: { calls: RequiredAction['calls']; decisions: Record<string, ApprovalDecision> }): Promise<void> {
    const run = (await this.store.getRun(decided.id)) ?? decided;
    const before = await this.pausedState(run);
    const live = this.journal.open(run, Promise.resolve(), run.last_seq);
    const listener = new RunTurnListener(this, live, run, before.responseId ?? newResponseId(), { content: before.content, usage: run.usage });
    const submitted = this.runtime.submit(
      run.agent_id,
      { messageId: run.message_id, content: run.input.content, responseId: listener.responseId, owner: live, runId: run.id, continuation },
      listener,
    );
    if (!submitted.accepted) {
      const action: RequiredAction = { type: 'tool_approval', requests: [], calls: continuation.calls, decisions: {}, expires_at: isoTimestamp(this.now()) };
      await this.answerPendingCalls(run, action, submitted.error.message);
      await this.failUnstarted(live, run, submitted.error);
    }
  }

  /** The answer streamed before the run paused, and its response id (from its journaled frames). */
  private async pausedState(run: RunRecord): Promise<{ content: string; responseId: string | undefined }> {
    let content = '';
    let responseId: string | undefined;
    for (let after = 0; ; ) {
      const frames = await this.store.listRunFrames(run.id, after);
      for (const row of frames) {
        if (row.json.startsWith('{"type":"stream_chunk"')) content += (JSON.parse(row.json) as { content: string }).content;
        else if (responseId === undefined && row.json.startsWith('{"type":"stream_start"')) responseId = (JSON.parse(row.json) as { response_id: string }).response_id;
      }
      if (frames.length === 0) return { content, responseId };
      after = frames[frames.length - 1]!.seq;
    }
  }

  /** Answers the paused tool calls of a run that will not continue, so its agent takes messages again. Logged, never thrown. */
  private async answerPendingCalls(run: RunRecord, action: RequiredAction, why: string): Promise<void> {
    try {
      await this.runtime.answerPendingCalls(run.agent_id, action.calls, why);
    } catch (err) {
      this.logger.error('cannot answer the paused tool calls of a run', { run_id: run.id, agent_id: run.agent_id, error: errorText(err) });
    }
  }

  /**
   * Delivers the run's frames after `since` (replayed from memory or the Store), then live ones
   * until the terminal frame; `done` resolves once that was delivered, or on abort. Every frame
   * is delivered once, in seq order.
   */
  async subscribe(
    principal: Principal,
    agentId: string,
    runId: string,
    since: number,
    listener: (frame: JournaledFrame) => void,
    signal?: AbortSignal,
  ): Promise<{ run: RunRecord; done: Promise<void> }> {
    const run = await this.get(principal, agentId, runId);
    const live = this.journal.get(runId);
    // A continued run holds only the frames after its pause: earlier ones come from the Store.
    if (live && since >= live.baseSeq) {
      let unsubscribe = () => {};
      let last = since;
      const counted = (frame: JournaledFrame) => {
        last = frame.seq;
        listener(frame);
      };
      const done = new Promise<void>((resolve) => {
        if (signal?.aborted) return resolve();
        unsubscribe = live.subscribe(since, counted);
        signal?.addEventListener('abort', () => (unsubscribe(), resolve()), { once: true });
        // A run paused for an approval goes on later, maybe elsewhere: followed through the Store.
        void live.settled.then(() => (live.paused && !signal?.aborted ? this.followStored(run, last, listener, signal) : undefined)).then(resolve);
      });
      void done.then(() => unsubscribe());
      return { run, done };
    }
    return { run, done: this.followStored(run, since, listener, signal) };
  }

  /**
   * A run this instance does not run (it ended, or it runs elsewhere): the bus first, so no
   * batch published meanwhile is missed, then the Store after the cursor; bus batches fill in
   * live, a gap (a missed batch) is read from the Store again. Deduplicated by seq.
   */
  private followStored(run: RunRecord, since: number, listener: (frame: JournaledFrame) => void, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let last = Math.max(0, since);
      let finished = false;
      /** Looks that found the run ended with frames still missing (see readStore). */
      let misses = 0;
      let reading: Promise<void> = Promise.resolve();
      // A missed batch (a publish lost while Redis was away) is found on the next look.
      const timer = setInterval(() => readStore(), POLL_MS * 4);
      timer.unref();
      const finish = () => {
        if (finished) return;
        finished = true;
        unsubscribe();
        clearInterval(timer);
        resolve();
      };
      const deliver = (frame: RunFrameRow) => {
        if (finished || frame.seq !== last + 1) return;
        last = frame.seq;
        try {
          listener(frame);
        } catch (err) {
          this.logger.error('run frame subscriber failed', { run_id: run.id, error: errorText(err) });
        }
        if (isTerminalFrameJson(frame.json)) finish();
      };
      const readStore = () => {
        reading = reading.then(async () => {
          while (!finished) {
            const frames = await this.store.listRunFrames(run.id, last);
            for (const frame of frames) deliver(frame);
            if (frames.length === 0) break;
          }
          if (!finished) {
            const current = await this.store.getRun(run.id);
            if (current && isTerminalStatus(current.status) && last >= current.last_seq && current.last_seq > 0) {
              // The client saw frames that never became durable (its server was killed) and
              // the terminal frame got a seq it already has: it gets that frame all the same.
              const [terminal] = await this.store.listRunFrames(run.id, current.last_seq - 1, 1);
              if (terminal && isTerminalFrameJson(terminal.json)) {
                last = terminal.seq - 1;
                deliver(terminal);
              }
            }
            // An orphan's end (RunJournal.endOrphan) stores the status before its frame: a frame
            // the run's last_seq counts may be on its way; the bus or the next look brings it.
            if (current && isTerminalStatus(current.status) && this.journal.journaling && last < current.last_seq && misses++ < 2) return;
            // A terminal run whose frames ended without a terminal one (journaling was off): nothing more comes.
            if (!current || isTerminalStatus(current.status)) finish();
          }
        }).catch((err: unknown) => this.logger.error('cannot read run frames', { run_id: run.id, error: errorText(err) }));
      };
      const unsubscribe = this.bus.subscribe(run.agent_id, (message) => {
        if (message.kind === 'resync' || message.kind === 'deleted') return readStore();
        if (message.kind !== 'run_frames' || message.run_id !== run.id) return;
        const first = message.frames[0];
        if (first !== undefined && first.seq > last + 1) return readStore();
        reading = reading.then(() => {
          for (const frame of message.frames) deliver(frame);
        });
      });
      if (signal?.aborted) return finish();
      signal?.addEventListener('abort', finish, { once: true });
      readStore();
    });
  }
}

/**
 * The listener of one run's turn: the runtime's callbacks become the run's frames, its start
 * the `running` status and its end the run's final status, all through the run's journal.
 */
class RunTurnListener implements TurnListener {
  readonly responseId: string;
  private content = '';
  private ending: Promise<RunRecord | null> | undefined;
  private chunkIds: string | undefined;
  private readonly messageId: string;
  private readonly prefix: string;
  /** The run's usage before this turn (a continuation after an approval), added to the turn's. */
  private readonly baseUsage: RunUsage;
  /** Set when the turn asked for approvals: what the run waits for. */
  private approval: { action: RequiredAction; frames: ApprovalFrame[] } | undefined;

  constructor(
    private readonly service: RunService,
    private readonly live: LiveRun,
    private readonly run: RunRecord,
    responseId: string,
    /** A continuation: the answer and usage of the run before it paused. Default: a new run. */
    before?: { content: string; usage: RunUsage },
  ) {
    this.responseId = responseId;
    this.messageId = run.message_id;
    this.prefix = `,"run_id":${JSON.stringify(run.id)},"seq":`;
    this.content = before?.content ?? '';
    this.baseUsage = before?.usage ?? { ...ZERO_USAGE };
  }

  private timestamp(): string {
    return isoTimestamp(Date.now());
  }

  private add(frame: (seq: number) => ServerFrame): void {
    this.live.append((seq) => {
      const built = frame(seq);
      return { frame: built, json: JSON.stringify(built) };
    });
  }

  beforeStart(): Promise<unknown> {
    return this.service.markRunning(this.run.id);
  }

  onStart(): void {
    const timestamp = this.timestamp();
    this.add((seq) => ({ type: 'event', timestamp, run_id: this.run.id, seq, event_type: 'thinking', message_id: this.messageId }));
    this.add((seq) => ({ type: 'stream_start', timestamp, run_id: this.run.id, seq, message_id: this.messageId, response_id: this.responseId }));
  }

  onChunk(delta: string, index: number): void {
    this.content += delta;
    const timestamp = this.timestamp();
    // The chunks of a run differ only in timestamp, seq, index and content: their JSON is built
    // from the ids escaped once per run, byte for byte what JSON.stringify gives (same key order).
    this.chunkIds ??= `,"message_id":${JSON.stringify(this.messageId)},"response_id":${JSON.stringify(this.responseId)},"chunk_index":`;
    const prefix = this.prefix;
    const ids = this.chunkIds;
    this.live.append((seq) => ({
      frame: { type: 'stream_chunk', timestamp, run_id: this.run.id, seq, message_id: this.messageId, response_id: this.responseId, chunk_index: index, content: delta },
      json: `{"type":"stream_chunk","timestamp":${JSON.stringify(timestamp)}${prefix}${seq}${ids}${index},"content":${JSON.stringify(delta)}}`,
    }));
  }

  onThinking(delta: string): void {
    const timestamp = this.timestamp();
    this.add((seq) => ({ type: 'event', timestamp, run_id: this.run.id, seq, event_type: 'thinking', message_id: this.messageId, content: delta }));
  }

  onToolCall(call: { id: string; name: string; arguments: Record<string, unknown> }): void {
    const timestamp = this.timestamp();
    this.add((seq) => ({
      type: 'event',
      timestamp,
      run_id: this.run.id,
      seq,
      event_type: 'tool_call',
      message_id: this.messageId,
      data: { call_id: call.id, tool: call.name, parameters: call.arguments },
    }));
  }

  onToolResult(outcome: { call_id: string; tool: string; status: 'success' | 'error'; result?: unknown; error?: string }): void {
    const timestamp = this.timestamp();
    this.add((seq) => ({
      type: 'tool_result',
      timestamp,
      run_id: this.run.id,
      seq,
      message_id: this.messageId,
      call_id: outcome.call_id,
      tool: outcome.tool,
      status: outcome.status,
      ...(outcome.status === 'success' ? { result: outcome.result } : { error: outcome.error }),
    }));
  }

  onApprovalRequired(required: ApprovalRequired): void {
    this.approval = this.service.approvalFor(this.messageId, required);
  }

  beforeEnd(end: TurnEnd | SentinelError): Promise<unknown> {
    return this.end(end);
  }

  onEnd(end: TurnEnd): void {
    void this.end(end);
  }

  onError(err: SentinelError): void {
    void this.end(err);
  }

  /**
   * The turn paused for approvals: the run waits in `requires_action` with what it waits for,
   * its `tool_approval_required` frames journaled in the same writes (delivered once durable).
   */
  private pause(end: TurnEnd, approval: { action: RequiredAction; frames: ApprovalFrame[] }): Promise<RunRecord | null> {
    const run = this.run;
    const timestamp = this.timestamp();
    const patch = { status: 'requires_action' as const, required_action: approval.action, usage: sumUsage(this.baseUsage, end.usage) };
    const builds = approval.frames.map((frame) => (seq: number) => built(approvalFrame(run, seq, timestamp, frame)));
    return this.live.pause(builds, patch, ACTIVE).then((updated) => {
      if (updated) this.service.emitTransition(updated);
      return updated;
    });
  }

  /** The run's end (once: the terminal callback after beforeEnd joins the same promise). */
  private end(end: TurnEnd | SentinelError): Promise<RunRecord | null> {
    return (this.ending ??= this.endOnce(end));
  }

  private endOnce(turnEnd: TurnEnd | SentinelError): Promise<RunRecord | null> {
    const endedAt = this.timestamp();
    const run = this.run;
    if (!isSentinelError(turnEnd) && turnEnd.reason === 'requires_action' && this.approval) return this.pause(turnEnd, this.approval);
    let end = turnEnd;
    if (!isSentinelError(end)) {
      // The whole run's answer and usage: a continuation adds to what came before the pause.
      const usage = sumUsage(this.baseUsage, end.usage);
      end = end.reason === 'requires_action' ? new SentinelError('internal', 'the turn paused without approval requests') : { ...end, content: this.content, usage };
    }
    const failedUsage = sumUsage(this.baseUsage, ZERO_USAGE);
    const ending =
      isSentinelError(end)
        ? this.live.end((seq) => errorFrame(run, seq, endedAt, end), failedPatch(end, this.content, failedUsage, endedAt), ACTIVE)
        : this.live.end(
            (seq) => built(endFrame(run, seq, endedAt, this.responseId, end)),
            // A deleted agent's runs go with it: nothing is written that could outlive the delete.
            end.reason === 'deleted' ? null : endedPatch(answerReason(end.reason), end.content, end.usage, endedAt),
            ACTIVE,
          );
    return ending.then((updated) => {
      if (updated) this.service.emitTransition(updated);
      return updated;
    });
  }
}

/** The turn-end reason as a run's answer reason (a paused turn never ends a run). */
function answerReason(reason: TurnEnd['reason']): AnswerEndReason {
  return reason === 'requires_action' ? 'error' : reason;
}

function sumUsage(a: RunUsage, b: RunUsage): RunUsage {
  return { input_tokens: a.input_tokens + b.input_tokens, output_tokens: a.output_tokens + b.output_tokens, total_tokens: a.total_tokens + b.total_tokens };
}

/** A frame of the approval flow with the run's ids and its seq (field order as the frame schemas list them). */
function approvalFrame(run: RunRecord, seq: number, timestamp: string, frame: ApprovalFrame): ServerFrame {
  switch (frame.type) {
    case 'tool_approval_required':
      return { type: frame.type, timestamp, run_id: run.id, seq, message_id: frame.message_id, request_id: frame.request_id, tool: frame.tool, parameters: frame.parameters, expires_at: frame.expires_at };
    case 'event':
      return { type: 'event', timestamp, run_id: run.id, seq, event_type: frame.event_type, message_id: frame.message_id, data: frame.data };
    case 'error':
      return { type: 'error', timestamp, run_id: run.id, seq, error: frame.error, code: frame.code, message_id: frame.message_id };
  }
}

/** The record a new run gets (what createRun returns for it), made here when the caller does not wait for the Store. */
function queuedRun(id: string, agent: AgentRecord, messageId: string, input: RunInput, createdAt: string): RunRecord {
  return {
    id,
    agent_id: agent.id,
    owner: agent.owner,
    message_id: messageId,
    status: 'queued',
    input: { content: input.content },
    output: null,
    usage: { ...ZERO_USAGE },
    error: null,
    required_action: null,
    webhook: input.webhook ?? null,
    last_seq: 0,
    created_at: createdAt,
    started_at: null,
    ended_at: null,
  };
}

function built(frame: ServerFrame): { frame: ServerFrame; json: string } {
  return { frame, json: JSON.stringify(frame) };
}

function endFrame(run: RunRecord, seq: number, timestamp: string, responseId: string, end: TurnEnd): ServerFrame {
  return {
    type: 'stream_end',
    timestamp,
    run_id: run.id,
    seq,
    message_id: run.message_id,
    response_id: responseId,
    content: end.content,
    reason: answerReason(end.reason),
    usage: end.usage,
  };
}

function errorFrame(run: RunRecord, seq: number, timestamp: string, err: SentinelError): { frame: ServerFrame; json: string } {
  return built({ type: 'error', timestamp, run_id: run.id, seq, error: err.message, code: err.code, message_id: run.message_id });
}

function checkSameRequest(stored: string | null, given: string | null): void {
  if (stored !== null && given !== null && stored !== given) {
    throw new SentinelError('idempotency_conflict', 'this idempotency key (message_id) was used for another request within the last 24 hours');
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}

function aborted(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return new Promise(() => {});
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

export { frameOf };
