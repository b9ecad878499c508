/**
 * The agent runtime (docs/ARCHITECTURE.md#runtime-providers-and-tools): runs an agent's turns one at a time, in arrival order, from
 * a bounded queue. A turn stores the user message, sends the conversation (within a budget) to
 * the image's model provider, streams the answer to a listener, runs the tools the model calls
 * (only those the image lists), stores what was said, counts usage and journals it all.
 * Every turn has an AbortSignal: a client cancel, stop, delete and shutdown end it promptly,
 * and every turn ends with exactly one terminal callback (`onEnd` or `onError`).
 *
 * With several instances (a shared bus and a distributed {@link TurnLock}), each turn holds the
 * agent's lock while it runs, so turns of one agent never overlap anywhere; stop, delete and
 * cancel travel as control messages on the bus to whichever instance runs the turn.
 *
 * `AgentRuntime` composes the parts and keeps the agents' lifecycle state (stopped, being
 * deleted, shutting down): {@link AgentQueues} (queue.ts) orders the turns, {@link Coordination}
 * (coordination.ts) holds the turn locks and talks to the other instances, {@link TurnRunner}
 * (turn-runner.ts) runs the model/tool loop of one turn, and {@link TurnRecorder}
 * (turn-record.ts) writes what a turn leaves behind.
 */
import type { EventBus } from '../bus.js';
import { SentinelError } from '../contract/errors.js';
import type { AgentJournal } from '../journal.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { ImageService } from '../images/service.js';
import type { ProviderCatalog } from '../providers/catalog.js';
import type { Store } from '../store/types.js';
import type { ToolCallRecord } from '../contract/models.js';
import { isoTimestamp } from '../clock.js';
import type { ToolSet } from '../tools/tool-set.js';
import type { SentinelMetrics } from '../telemetry/metrics.js';
import { runInContext, traceTurn } from '../telemetry/tracing.js';
import { Coordination } from './coordination.js';
import { AgentQueues } from './queue.js';
import { inProcessTurnLock, type TurnLock } from './turn-lock.js';
import { TurnRecorder } from './turn-record.js';
import { pendingToolCalls, TurnRunner, type TurnQuota } from './turn-runner.js';
import type { SubmitResult, ToolOutcome, ToolRequest, Turn, TurnListener, TurnRequest } from './turn.js';

export type {
  ApprovalDecision,
  ApprovalRequest,
  ApprovalRequired,
  SubmitResult,
  ToolCallOutcome,
  ToolOutcome,
  ToolRequest,
  TurnAbortReason,
  TurnEnd,
  TurnEndReason,
  TurnListener,
  TurnRequest,
  TurnUsage,
} from './turn.js';

/** The knobs of the runtime, as `createSentinelApi({ runtime })` takes them. */
export interface RuntimeOptions {
  /** Messages that may wait per agent beyond the one being answered; past it, `agent_busy`. Default 8. */
  queueLimit?: number;
  /** Rounds of model tool calls per turn; a model that asks for more ends the turn with reason `tool_rounds`. Default 4. */
  maxToolRounds?: number;
  /** Time limit of one tool run, in ms. Default 30000. */
  toolTimeoutMs?: number;
  /** Most history messages sent to the model per turn. Default 100. */
  historyMaxMessages?: number;
  /** Most history characters sent to the model per turn (oldest whole messages are dropped first). Default 48000. */
  historyMaxChars?: number;
  /** How long stop, delete and shutdown wait for a turn to settle after aborting it, in ms. Default 5000. */
  settleTimeoutMs?: number;
  /** Delay before each chunk of the built-in `echo` provider, in ms (used by `createSentinelApi`). Default 15. */
  echoChunkDelayMs?: number;
}

/** What `new AgentRuntime` takes: the runtime knobs and the services a turn uses. */
export interface AgentRuntimeOptions extends Omit<RuntimeOptions, 'echoChunkDelayMs'> {
  store: Store;
  journal: AgentJournal;
  images: ImageService;
  providers: ProviderCatalog;
  tools: ToolSet;
  /** Default: silent. */
  logger?: Logger;
  /** Clock for stored timestamps and durations. Default `Date.now`. */
  now?: () => number;
  /** Held by each turn while it runs, so one agent's turns never overlap across instances. Default {@link inProcessTurnLock}. */
  turnLock?: TurnLock;
  /**
   * With a shared bus (several instances), stop, delete and cancel reach the agent's turns on
   * every instance, and theirs reach this one. Default none: this instance's turns only.
   */
  bus?: EventBus;
  /** Per-user quotas on turns and tokens, checked before each turn's provider call. Default none. */
  quota?: TurnQuota;
  /** Records turns, provider calls and the queue gauges. Default: none. */
  metrics?: SentinelMetrics;
  /** Record message text in provider and tool spans (see `TracingOptions.captureContent`). Default `false`. */
  captureContent?: boolean;
}

/** Runs the agents' turns (see the top of this file); one per API instance. */
export class AgentRuntime {
  private readonly store: Store;
  private readonly logger: Logger;
  private readonly settleTimeoutMs: number;
  private readonly queues: AgentQueues;
  private readonly coordination: Coordination;
  private readonly runner: TurnRunner;
  private readonly recorder: TurnRecorder;
  private readonly now: () => number;

  /** Agents known to be stopped: submits are refused at once. */
  private readonly stopped = new Set<string>();
  /** Agents being deleted (from `remove` to `forget`): nothing more is accepted or stored for them. */
  private readonly removing = new Set<string>();
  private shuttingDown: Promise<void> | undefined;

  constructor(options: AgentRuntimeOptions) {
    const knobs = {
      queueLimit: options.queueLimit ?? 8,
      maxToolRounds: options.maxToolRounds ?? 4,
      toolTimeoutMs: options.toolTimeoutMs ?? 30_000,
      historyMaxMessages: options.historyMaxMessages ?? 100,
      historyMaxChars: options.historyMaxChars ?? 48_000,
      settleTimeoutMs: options.settleTimeoutMs ?? 5_000,
    };
    for (const [name, value] of Object.entries(knobs)) {
      // A zero queue or zero rounds is a valid (strict) setting; a negative or fractional one is a mistake.
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`runtime option ${name} must be a non-negative integer, got ${value}`);
    }
    const logger = options.logger ?? silentLogger;
    const now = options.now ?? Date.now;
    this.store = options.store;
    this.logger = logger;
    this.settleTimeoutMs = knobs.settleTimeoutMs;
    this.now = now;
    this.recorder = new TurnRecorder({ store: options.store, journal: options.journal, logger, now });
    this.runner = new TurnRunner({
      store: options.store,
      images: options.images,
      providers: options.providers,
      tools: options.tools,
      recorder: this.recorder,
      logger,
      now,
      maxToolRounds: knobs.maxToolRounds,
      toolTimeoutMs: knobs.toolTimeoutMs,
      historyMaxMessages: knobs.historyMaxMessages,
      historyMaxChars: knobs.historyMaxChars,
      isRemoving: (agentId) => this.removing.has(agentId),
      ...(options.quota ? { quota: options.quota } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
      captureContent: options.captureContent === true,
    });
    this.coordination = new Coordination({
      turnLock: options.turnLock ?? inProcessTurnLock,
      bus: options.bus,
      settleTimeoutMs: knobs.settleTimeoutMs,
      logger,
      abortAgent: (agentId, reason) => void this.queues.abortAgent(agentId, reason),
      cancel: (agentId, messageId) => void this.queues.cancel(agentId, messageId),
    });
    // Re-entered after the lock's await: the turn's first store reads are children of its span.
    const runTurn = (turn: Turn) => runInContext(turn.traceContext, () => this.runner.run(turn));
    this.queues = new AgentQueues({
      limit: knobs.queueLimit,
      run: (turn) => traceTurn(turn, { agentId: turn.agentId, messageId: turn.request.messageId, responseId: turn.responseId }, () => this.coordination.runLocked(turn, runTurn)),
      watch: (agentId) => this.coordination.watch(agentId),
      logger,
    });
    options.metrics?.watchTurnQueues(() => this.queues.stats());
  }

  /** True once {@link shutdown} was called. */
  get isShuttingDown(): boolean {
    return this.shuttingDown !== undefined;
  }

  /**
   * Queues a message for the agent. Refused (nothing is called on `listener`) with
   * `agent_busy` when `queueLimit` messages already wait behind the running one, `conflict`
   * when the agent is stopped, `unavailable` during shutdown. An accepted turn gets exactly one
   * terminal callback.
   */
  submit(agentId: string, request: TurnRequest, listener: TurnListener): SubmitResult {
    const refused = this.refusal(agentId);
    if (refused) return { accepted: false, error: refused };
    return this.queues.submit(agentId, request, listener);
  }

  /** The error {@link submit} would refuse a message for the agent with right now, or undefined (a run checks before it is stored). */
  refusal(agentId: string): SentinelError | undefined {
    if (this.shuttingDown) return new SentinelError('unavailable', 'server is shutting down');
    if (this.removing.has(agentId)) return new SentinelError('not_found', `agent "${agentId}" not found`);
    if (this.stopped.has(agentId)) return new SentinelError('conflict', 'agent is stopped');
    return this.queues.refusal(agentId);
  }

  /**
   * Cancels the message `messageId` (of `owner` only, when given): a queued one is removed and
   * ends with reason `cancelled`; the running one is aborted and ends with `cancelled` and its
   * partial content. False when no such message is queued or running.
   */
  cancel(agentId: string, messageId: string, owner?: object): boolean {
    return this.queues.cancel(agentId, messageId, owner);
  }

  /** Removes the queued (not running) turns of `owner` without any callback (its client left). Returns how many. */
  dropQueued(agentId: string, owner: object): number {
    return this.queues.dropQueued(agentId, owner);
  }

  /** Messages waiting (beyond the running one) for the agent. */
  queuedCount(agentId: string): number {
    return this.queues.queuedCount(agentId);
  }

  /** True while a turn of the agent is running. */
  isBusy(agentId: string): boolean {
    return this.queues.isBusy(agentId);
  }

  /**
   * Marks the agent stopped (new messages are refused with `conflict`), ends its queued turns
   * and aborts the running one with reason `stopped`, and resolves once it settled (at most
   * `settleTimeoutMs`). Idempotent. The caller stores the status.
   */
  async stop(agentId: string): Promise<void> {
    this.stopped.add(agentId);
    this.coordination.tellOtherInstances(agentId, 'stop');
    await this.settle(this.queues.abortAgent(agentId, 'stopped'), agentId);
    // A turn of the agent on another instance ends on the control message; the caller stores
    // "stopped" only when nothing runs anywhere.
    await this.coordination.awaitTurnsElsewhere(agentId);
  }

  /** Accepts messages for the agent again (the caller stores the status). Idempotent. */
  start(agentId: string): void {
    this.stopped.delete(agentId);
  }

  /**
   * First half of deleting an agent: ends every turn of the agent with reason `deleted` and
   * waits for the running one to settle (at most `settleTimeoutMs`). Until {@link forget},
   * messages are refused (`not_found`) and nothing more is stored for the agent, so no row
   * written after the Store deleted the agent's rows can outlive it.
   */
  async remove(agentId: string): Promise<void> {
    this.removing.add(agentId);
    this.coordination.tellOtherInstances(agentId, 'delete');
    await this.settle(this.queues.abortAgent(agentId, 'deleted'), agentId);
    // Held until forget(): no instance starts a turn of the agent while its rows go.
    await this.coordination.holdForRemoval(agentId);
  }

  /** Second half of deleting an agent, once its rows are gone: the runtime drops what it knew of it. */
  forget(agentId: string): void {
    this.removing.delete(agentId);
    this.stopped.delete(agentId);
    this.queues.dropIfIdle(agentId);
    this.coordination.releaseRemoval(agentId);
  }

  /**
   * Asks the other instances to cancel the message `messageId` of the agent wherever it is
   * queued or running (a client's cancel for a message this instance does not have). True
   * when the request went out, which needs a shared bus; false on a single instance.
   */
  cancelElsewhere(agentId: string, messageId: string): boolean {
    return this.coordination.cancelElsewhere(agentId, messageId);
  }

  /**
   * Refuses new messages, ends every turn with reason `shutdown` (partial answers are stored)
   * and resolves when they settled, or after `settleTimeoutMs`. Idempotent.
   */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      const running = this.queues.abortAll('shutdown');
      await this.settle(running.length === 0 ? undefined : Promise.all(running).then(() => undefined), 'all agents');
    })();
    return this.shuttingDown;
  }

  /**
   * Runs a tool directly for a client (`tool_request`), not queued behind turns. Throws
   * SentinelError `forbidden` when the agent's image does not list the tool, `conflict` when
   * the agent is stopped, `not_found` when it is gone, `unavailable` during shutdown. The tool's
   * own failure is not thrown: it is the outcome's `error`. Journaled as `tool_used`.
   */
  async runTool(agentId: string, request: ToolRequest, signal: AbortSignal): Promise<ToolOutcome> {
    if (this.shuttingDown) throw new SentinelError('unavailable', 'server is shutting down');
    const record = this.removing.has(agentId) ? null : await this.store.getAgent(agentId);
    if (!record) throw new SentinelError('not_found', `agent "${agentId}" not found`);
    if (this.stopped.has(agentId) || record.status !== 'running') throw new SentinelError('conflict', 'agent is stopped');
    const def = await this.runner.definition(record.image_id);
    if (!def.tools.includes(request.tool)) throw new SentinelError('forbidden', `tool ${request.tool} is not allowed for this agent`);
    const outcome = await this.runner.executeTool(agentId, request.tool, request.parameters, signal, record.environment);
    if (!this.removing.has(agentId)) await this.recorder.toolUsed(agentId, outcome, request.requestId === undefined ? {} : { request_id: request.requestId });
    return outcome;
  }

  /**
   * Answers the tool calls of a turn that paused for approval and will not be continued (its
   * run was cancelled or expired): each gets a tool result `{"error":"not run: <why>"}`, so
   * the agent takes messages again and the model later sees what became of them. Does nothing
   * (false) unless exactly these calls still wait in the stored history.
   */
  async answerPendingCalls(agentId: string, calls: readonly ToolCallRecord[], why: string): Promise<boolean> {
    if (this.removing.has(agentId)) return false;
    const pending = pendingToolCalls(await this.store.listMessages(agentId, { limit: 1 }));
    if (!pending || pending.length !== calls.length || pending.some((call, i) => call.id !== calls[i]?.id)) return false;
    const when = isoTimestamp(this.now());
    await this.store.appendMessages(
      agentId,
      calls.map((call) => ({ agent_id: agentId, role: 'tool', content: JSON.stringify({ error: `not run: ${why}` }), tool_call_id: call.id, tool_name: call.name, created_at: when })),
    );
    return true;
  }

  /** Waits for `promise` (turns settling after an abort), at most `settleTimeoutMs`; a timeout is logged for `what`. */
  private async settle(promise: Promise<void> | undefined, what: string): Promise<void> {
    if (!promise) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.settleTimeoutMs);
      timer.unref();
    });
    const result = await Promise.race([promise.then(() => 'settled' as const), timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') this.logger.warn('agent turn did not settle in time', { agent: what, timeout_ms: this.settleTimeoutMs });
  }
}
