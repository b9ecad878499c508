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
 */
import type { AgentBusMessage, AgentControlAction, EventBus } from '../bus.js';
import { isSentinelError, SentinelError } from '../contract/errors.js';
import type { ImageService } from '../images/service.js';
import { imageDefinition } from '../images/service.js';
import { isoTimestamp } from '../clock.js';
import type { AgentJournal } from '../journal.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentDefinition, NewMessageRecord, ToolCallRecord } from '../contract/models.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { ChatMessage, ModelProvider, ProviderFinishReason, ProviderRequest, ThinkingBlock } from '../providers/types.js';
import type { Store } from '../store/types.js';
import type { ToolRegistry } from '../tools/registry.js';
import { selectHistory, toChatMessage, withoutUnanswered } from './history.js';
import { newResponseId } from '../contract/ids.js';
import { inProcessTurnLock, type TurnLease, type TurnLock } from './turn-lock.js';

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

export interface AgentRuntimeOptions extends Omit<RuntimeOptions, 'echoChunkDelayMs'> {
  store: Store;
  journal: AgentJournal;
  images: ImageService;
  providers: ProviderRegistry;
  tools: ToolRegistry;
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
}

/** Why a turn ended. */
export type TurnEndReason = 'stop' | 'length' | 'cancelled' | 'error' | 'shutdown' | 'deleted' | 'stopped' | 'tool_rounds';

/** Why a turn was aborted from outside. */
export type TurnAbortReason = 'cancelled' | 'deleted' | 'stopped' | 'shutdown';

export interface TurnUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

/** The end of a turn that was not an error. `content` is every text delta of the turn, joined. */
export interface TurnEnd {
  content: string;
  reason: TurnEndReason;
  usage: TurnUsage;
}

/** One message to answer. */
export interface TurnRequest {
  /** The client's message id (or a generated one); `cancel` finds the turn by it. */
  messageId: string;
  /** The user's message. */
  content: string;
  /** Id of the response. Default: generated (`resp_<hex>`). */
  responseId?: string;
  /** Who submitted it (e.g. a chat session), so `cancel` and `dropQueued` touch only its turns. Default: nobody in particular. */
  owner?: object;
}

/** The result of one tool run, as reported to clients. */
export interface ToolOutcome {
  tool: string;
  status: 'success' | 'error';
  /** The tool's result (success). */
  result?: unknown;
  /** A message safe to show the client (error). */
  error?: string;
  duration_ms: number;
}

/** A model tool call's outcome, with the call it answers. */
export interface ToolCallOutcome extends ToolOutcome {
  call_id: string;
}

/**
 * Callbacks of one turn, in this order: `onStart`, then `onChunk`/`onToolCall`/`onToolResult`
 * as they happen, then exactly one of `onEnd` or `onError`. A turn that ends before it starts
 * (cancelled while queued, refused when it reaches the front) gets only its terminal callback.
 * Callbacks must not throw (a throw is logged and ignored).
 */
export interface TurnListener {
  onStart(info: { messageId: string; responseId: string }): void;
  /** One text delta; `index` counts from 0 across the whole turn. */
  onChunk(delta: string, index: number): void;
  /** One delta of the model's reasoning (extended thinking), never part of the answer or the history. Optional. */
  onThinking?(delta: string): void;
  onToolCall(call: ToolCallRecord): void;
  onToolResult(outcome: ToolCallOutcome): void;
  onEnd(end: TurnEnd): void;
  /** A failed turn: `err.code` is `upstream_error` or `internal` (safe message), or `conflict`/`not_found` when the agent stopped or vanished. */
  onError(err: SentinelError): void;
}

export type SubmitResult = { accepted: true; responseId: string } | { accepted: false; error: SentinelError };

/** A direct tool request (a client's `tool_request`). */
export interface ToolRequest {
  tool: string;
  parameters: Record<string, unknown>;
  /** The client's request id, for the journal. Default none. */
  requestId?: string;
}

const ZERO_USAGE: TurnUsage = Object.freeze({ input_tokens: 0, output_tokens: 0, total_tokens: 0 });
/** Tool calls run per model round; extra calls are answered with an error instead of being run. */
const MAX_TOOL_CALLS_PER_ROUND = 16;
/** Image definitions cached by digest (images are immutable, so the cache never goes stale). */
const DEFINITION_CACHE_SIZE = 256;
const ABORTED = Symbol('aborted');

interface Turn {
  readonly agentId: string;
  readonly request: TurnRequest;
  readonly responseId: string;
  readonly listener: TurnListener;
  readonly controller: AbortController;
  /** Resolves when the signal aborts (never rejects). */
  readonly abortedPromise: Promise<typeof ABORTED>;
  abortReason?: TurnAbortReason;
  /** Set when the turn lost its lock mid-way: it ends with this error. */
  lockLost?: SentinelError;
  /** The terminal callback went out. */
  done: boolean;
  settled?: Promise<void>;
}

interface AgentSlot {
  running?: Turn;
  queue: Turn[];
  /** Ends the slot's bus subscription (shared bus only). */
  unsubscribe?: () => void;
}

/** What a turn produced, to be stored when it ends. */
interface TurnProgress {
  content: string;
  chunkIndex: number;
  /** Text of the model round in progress (kept when the turn is aborted mid-round). */
  roundText: string;
  input_tokens: number;
  output_tokens: number;
  providerCalled: boolean;
  messages: NewMessageRecord[];
}

function finishReasonOf(reason: ProviderFinishReason | undefined): TurnEndReason {
  if (reason === 'length') return 'length';
  // The interface has no "filtered" reason; the answer was cut by the provider, not by us.
  if (reason === 'content_filter') return 'error';
  return 'stop';
}

function usageOf(progress: TurnProgress): TurnUsage {
  return { input_tokens: progress.input_tokens, output_tokens: progress.output_tokens, total_tokens: progress.input_tokens + progress.output_tokens };
}

/** A tool result as the content of a `tool` message: its JSON (a string result as is; an error as `{"error": …}`). */
function toolMessageContent(outcome: ToolOutcome): string {
  if (outcome.status === 'error') return JSON.stringify({ error: outcome.error ?? 'failed' });
  return typeof outcome.result === 'string' ? outcome.result : JSON.stringify(outcome.result ?? null);
}

export class AgentRuntime {
  private readonly store: Store;
  private readonly journal: AgentJournal;
  private readonly images: ImageService;
  private readonly providers: ProviderRegistry;
  private readonly tools: ToolRegistry;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly queueLimit: number;
  private readonly maxToolRounds: number;
  private readonly toolTimeoutMs: number;
  private readonly historyMaxMessages: number;
  private readonly historyMaxChars: number;
  private readonly settleTimeoutMs: number;
  private readonly turnLock: TurnLock;
  private readonly bus: EventBus | undefined;
  /** Turn locks held from `remove` to `forget`, so no instance runs a turn of an agent being deleted. */
  private readonly removalLeases = new Map<string, TurnLease>();

  private readonly slots = new Map<string, AgentSlot>();
  /** Agents known to be stopped: submits are refused at once. */
  private readonly stopped = new Set<string>();
  /** Agents being deleted (from `remove` to `forget`): nothing more is accepted or stored for them. */
  private readonly removing = new Set<string>();
  private readonly definitions = new Map<string, AgentDefinition>();
  private shuttingDown: Promise<void> | undefined;

  constructor(options: AgentRuntimeOptions) {
    this.store = options.store;
    this.journal = options.journal;
    this.images = options.images;
    this.providers = options.providers;
    this.tools = options.tools;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.queueLimit = options.queueLimit ?? 8;
    this.maxToolRounds = options.maxToolRounds ?? 4;
    this.toolTimeoutMs = options.toolTimeoutMs ?? 30_000;
    this.historyMaxMessages = options.historyMaxMessages ?? 100;
    this.historyMaxChars = options.historyMaxChars ?? 48_000;
    this.settleTimeoutMs = options.settleTimeoutMs ?? 5_000;
    this.turnLock = options.turnLock ?? inProcessTurnLock;
    this.bus = options.bus;
    const knobs = {
      queueLimit: this.queueLimit,
      maxToolRounds: this.maxToolRounds,
      toolTimeoutMs: this.toolTimeoutMs,
      historyMaxMessages: this.historyMaxMessages,
      historyMaxChars: this.historyMaxChars,
      settleTimeoutMs: this.settleTimeoutMs,
    };
    for (const [name, value] of Object.entries(knobs)) {
      // A zero queue or zero rounds is a valid (strict) setting; a negative or fractional one is a mistake.
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`runtime option ${name} must be a non-negative integer, got ${value}`);
    }
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
    if (this.shuttingDown) return { accepted: false, error: new SentinelError('unavailable', 'server is shutting down') };
    if (this.removing.has(agentId)) return { accepted: false, error: new SentinelError('not_found', `agent "${agentId}" not found`) };
    if (this.stopped.has(agentId)) return { accepted: false, error: new SentinelError('conflict', 'agent is stopped') };
    let slot = this.slots.get(agentId);
    if (slot?.running && slot.queue.length >= this.queueLimit) {
      return { accepted: false, error: new SentinelError('agent_busy', `agent is busy: ${this.queueLimit} messages are already waiting`) };
    }
    slot ??= this.newSlot(agentId);
    const controller = new AbortController();
    const turn: Turn = {
      agentId,
      request,
      responseId: request.responseId ?? newResponseId(),
      listener,
      controller,
      abortedPromise: new Promise((resolve) => controller.signal.addEventListener('abort', () => resolve(ABORTED), { once: true })),
      done: false,
    };
    slot.queue.push(turn);
    this.pump(agentId, slot);
    return { accepted: true, responseId: turn.responseId };
  }

  /**
   * Cancels the message `messageId` (of `owner` only, when given): a queued one is removed and
   * ends with reason `cancelled`; the running one is aborted and ends with `cancelled` and its
   * partial content. False when no such message is queued or running.
   */
  cancel(agentId: string, messageId: string, owner?: object): boolean {
    const slot = this.slots.get(agentId);
    if (!slot) return false;
    const matches = (t: Turn) => t.request.messageId === messageId && (owner === undefined || t.request.owner === owner);
    const index = slot.queue.findIndex(matches);
    if (index !== -1) {
      const [turn] = slot.queue.splice(index, 1);
      if (turn) this.endUnstarted(turn, 'cancelled');
      return true;
    }
    if (slot.running && matches(slot.running)) {
      this.abortTurn(slot.running, 'cancelled');
      return true;
    }
    return false;
  }

  /** Removes the queued (not running) turns of `owner` without any callback (its client left). Returns how many. */
  dropQueued(agentId: string, owner: object): number {
    const slot = this.slots.get(agentId);
    if (!slot) return 0;
    const kept = slot.queue.filter((t) => t.request.owner !== owner);
    const dropped = slot.queue.length - kept.length;
    for (const turn of slot.queue) if (turn.request.owner === owner) turn.done = true;
    slot.queue = kept;
    return dropped;
  }

  /** Messages waiting (beyond the running one) for the agent. */
  queuedCount(agentId: string): number {
    return this.slots.get(agentId)?.queue.length ?? 0;
  }

  /** True while a turn of the agent is running. */
  isBusy(agentId: string): boolean {
    return this.slots.get(agentId)?.running !== undefined;
  }

  /**
   * Marks the agent stopped (new messages are refused with `conflict`), ends its queued turns
   * and aborts the running one with reason `stopped`, and resolves once it settled (at most
   * `settleTimeoutMs`). Idempotent. The caller stores the status.
   */
  async stop(agentId: string): Promise<void> {
    this.stopped.add(agentId);
    this.tellOtherInstances(agentId, 'stop');
    await this.settle(this.abortAgent(agentId, 'stopped'), agentId);
    // A turn of the agent on another instance ends on the control message; holding the lock
    // once proves it did, so the caller stores "stopped" only when nothing runs anywhere.
    const lease = await this.awaitOtherInstances(agentId);
    await lease?.release();
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
    this.tellOtherInstances(agentId, 'delete');
    await this.settle(this.abortAgent(agentId, 'deleted'), agentId);
    // Held until forget(): no instance starts a turn of the agent while its rows go.
    const lease = await this.awaitOtherInstances(agentId);
    if (lease) {
      void this.removalLeases.get(agentId)?.release();
      this.removalLeases.set(agentId, lease);
    }
  }

  /** Second half of deleting an agent, once its rows are gone: the runtime drops what it knew of it. */
  forget(agentId: string): void {
    this.removing.delete(agentId);
    this.stopped.delete(agentId);
    const slot = this.slots.get(agentId);
    if (slot && !slot.running && slot.queue.length === 0) this.dropSlot(agentId, slot);
    const lease = this.removalLeases.get(agentId);
    if (lease) {
      this.removalLeases.delete(agentId);
      void lease.release();
    }
  }

  /**
   * Asks the other instances to cancel the message `messageId` of the agent wherever it is
   * queued or running (a client's cancel for a message this instance does not have). True
   * when the request went out, which needs a shared bus; false on a single instance.
   */
  cancelElsewhere(agentId: string, messageId: string): boolean {
    if (!this.bus?.shared) return false;
    this.bus.publish(agentId, { kind: 'control', action: 'cancel', message_id: messageId });
    return true;
  }

  /**
   * Refuses new messages, ends every turn with reason `shutdown` (partial answers are stored)
   * and resolves when they settled, or after `settleTimeoutMs`. Idempotent.
   */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      const running: Promise<void>[] = [];
      for (const agentId of [...this.slots.keys()]) {
        const settled = this.abortAgent(agentId, 'shutdown');
        if (settled) running.push(settled);
      }
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
    const def = await this.definition(record.image_id);
    if (!def.tools.includes(request.tool)) throw new SentinelError('forbidden', `tool ${request.tool} is not allowed for this agent`);
    const outcome = await this.executeTool(agentId, request.tool, request.parameters, signal, record.environment);
    if (!this.removing.has(agentId)) await this.journalToolUse(agentId, outcome, request.requestId === undefined ? {} : { request_id: request.requestId });
    return outcome;
  }

  // ---- queue -------------------------------------------------------------------------------

  private pump(agentId: string, slot: AgentSlot): void {
    if (slot.running) return;
    const next = slot.queue.shift();
    if (!next) {
      this.dropSlot(agentId, slot);
      return;
    }
    slot.running = next;
    next.settled = this.runLocked(next).finally(() => {
      slot.running = undefined;
      this.pump(agentId, slot);
    });
  }

  private newSlot(agentId: string): AgentSlot {
    const slot: AgentSlot = { queue: [] };
    // Other instances' stop, delete and cancel matter only while this one has turns of the agent.
    if (this.bus?.shared) slot.unsubscribe = this.bus.subscribe(agentId, (message) => this.onBusMessage(agentId, message));
    this.slots.set(agentId, slot);
    return slot;
  }

  private dropSlot(agentId: string, slot: AgentSlot): void {
    if (this.slots.get(agentId) !== slot) return;
    this.slots.delete(agentId);
    slot.unsubscribe?.();
  }

  /** Control messages from any instance (this one's included: they are idempotent here). */
  private onBusMessage(agentId: string, message: AgentBusMessage): void {
    if (message.kind === 'deleted') {
      void this.abortAgent(agentId, 'deleted');
    } else if (message.kind === 'control') {
      if (message.action === 'cancel') {
        if (message.message_id !== undefined) this.cancel(agentId, message.message_id);
      } else {
        void this.abortAgent(agentId, message.action === 'stop' ? 'stopped' : 'deleted');
      }
    }
  }

  private tellOtherInstances(agentId: string, action: AgentControlAction): void {
    if (this.bus?.shared) this.bus.publish(agentId, { kind: 'control', action });
  }

  /**
   * Waits (at most `settleTimeoutMs`) until no instance runs a turn of the agent, and returns
   * the lock that proves it. Undefined on a single instance, or when it timed out or the lock
   * service is down: stop and delete go on regardless (the Store decides what stays).
   */
  private async awaitOtherInstances(agentId: string): Promise<TurnLease | undefined> {
    if (this.turnLock === inProcessTurnLock) return undefined;
    try {
      return await this.turnLock.acquire(agentId, AbortSignal.timeout(this.settleTimeoutMs));
    } catch (err) {
      this.logger.warn('agent turns on other instances did not settle in time', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }

  /** Runs the turn holding the agent's turn lock, so it never overlaps a turn of the agent on another instance. */
  private async runLocked(turn: Turn): Promise<void> {
    let lease: TurnLease;
    try {
      lease = await this.turnLock.acquire(turn.agentId, turn.controller.signal);
    } catch (err) {
      if (turn.controller.signal.aborted) this.endUnstarted(turn, turn.abortReason ?? 'cancelled');
      else this.terminal(turn, (l) => l.onError(this.publicFailure(turn, err)));
      return;
    }
    const onLost = () => {
      if (turn.controller.signal.aborted) return;
      turn.lockLost = new SentinelError('unavailable', 'the turn lost its agent lock (the event bus was unreachable for too long); send the message again');
      turn.controller.abort(turn.lockLost);
    };
    lease.lost.addEventListener('abort', onLost, { once: true });
    try {
      await this.runTurn(turn);
    } finally {
      lease.lost.removeEventListener('abort', onLost);
      await lease.release();
    }
  }

  /** Ends the agent's queued turns with `reason`, aborts the running one; returns its settle promise. */
  private abortAgent(agentId: string, reason: TurnAbortReason): Promise<void> | undefined {
    const slot = this.slots.get(agentId);
    if (!slot) return undefined;
    const queued = slot.queue;
    slot.queue = [];
    for (const turn of queued) this.endUnstarted(turn, reason);
    if (!slot.running) return undefined;
    this.abortTurn(slot.running, reason);
    return slot.running.settled;
  }

  private abortTurn(turn: Turn, reason: TurnAbortReason): void {
    if (turn.controller.signal.aborted) return;
    turn.abortReason = reason;
    turn.controller.abort(new SentinelError('unavailable', `turn ${reason}`));
  }

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

  private endUnstarted(turn: Turn, reason: TurnAbortReason): void {
    turn.abortReason ??= reason;
    this.terminal(turn, (l) => l.onEnd({ content: '', reason, usage: { ...ZERO_USAGE } }));
  }

  /** Delivers the one terminal callback of a turn. */
  private terminal(turn: Turn, call: (listener: TurnListener) => void): void {
    if (turn.done) return;
    turn.done = true;
    this.notify(turn, call);
  }

  private notify(turn: Turn, call: (listener: TurnListener) => void): void {
    try {
      call(turn.listener);
    } catch (err) {
      this.logger.error('turn listener failed', { agent_id: turn.agentId, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private async definition(digest: string): Promise<AgentDefinition> {
    const cached = this.definitions.get(digest);
    if (cached) return cached;
    const def = imageDefinition(await this.images.resolve(digest));
    if (this.definitions.size >= DEFINITION_CACHE_SIZE) {
      const oldest = this.definitions.keys().next().value;
      if (oldest !== undefined) this.definitions.delete(oldest);
    }
    this.definitions.set(digest, def);
    return def;
  }

  private timestamp(): string {
    return isoTimestamp(this.now());
  }

  // ---- one turn ----------------------------------------------------------------------------

  private async runTurn(turn: Turn): Promise<void> {
    const { agentId, request } = turn;
    const signal = turn.controller.signal;
    const startedAt = this.now();
    const progress: TurnProgress = { content: '', chunkIndex: 0, roundText: '', input_tokens: 0, output_tokens: 0, providerCalled: false, messages: [] };
    let reason: TurnEndReason = 'stop';
    let failure: SentinelError | undefined;
    let started = false;
    try {
      const record = await this.store.getAgent(agentId);
      if (signal.aborted) return this.endUnstarted(turn, turn.abortReason ?? 'cancelled');
      if (!record) throw new SentinelError('not_found', `agent "${agentId}" not found`);
      if (record.status !== 'running') throw new SentinelError('conflict', record.status === 'stopped' ? 'agent is stopped' : `agent is not running (${record.status})`);
      const def = await this.definition(record.image_id);
      const provider = this.providers.get(def.model.provider);
      if (signal.aborted) return this.endUnstarted(turn, turn.abortReason ?? 'cancelled');

      // Issued together so the Store commits them in one group commit (see SqliteStore).
      const [storedMessage, receivedEvent] = await Promise.allSettled([
        this.store.appendMessages(agentId, [
          { agent_id: agentId, role: 'user', content: request.content, message_id: request.messageId, created_at: this.timestamp() },
        ]),
        this.journal.event(agentId, 'message_received', `Message ${request.messageId} received`, { message_id: request.messageId }),
      ]);
      if (storedMessage.status === 'rejected') throw storedMessage.reason;
      started = true;
      if (receivedEvent.status === 'rejected') throw receivedEvent.reason;
      this.notify(turn, (l) => l.onStart({ messageId: request.messageId, responseId: turn.responseId }));

      const stored = await this.store.listMessages(agentId, { limit: this.historyMaxMessages });
      const history = withoutUnanswered(selectHistory(stored, { maxMessages: this.historyMaxMessages, maxChars: this.historyMaxChars }));
      const conversation: ChatMessage[] = def.instructions ? [{ role: 'system', content: def.instructions }] : [];
      conversation.push(...history.map(toChatMessage));
      reason = await this.converse(turn, provider, def, record.parameters, conversation, progress, record.environment);
    } catch (err) {
      if (signal.aborted) {
        reason = turn.abortReason ?? 'cancelled';
        this.keepPartial(turn, progress);
      } else {
        failure = this.publicFailure(turn, err);
      }
    }
    await this.finishTurn(turn, { started, reason, failure, progress, durationMs: this.now() - startedAt });
  }

  /** The model rounds of a turn: stream, run the tools asked for, feed the results back, repeat. */
  private async converse(
    turn: Turn,
    provider: ModelProvider,
    def: AgentDefinition,
    parameters: Record<string, unknown>,
    conversation: ChatMessage[],
    progress: TurnProgress,
    /** The agent's environment: for its tools only, never part of a provider request. */
    environment: Readonly<Record<string, string>>,
  ): Promise<TurnEndReason> {
    const signal = turn.controller.signal;
    const allowed = new Set(def.tools);
    const tools = this.tools.specs(def.tools);
    for (let round = 0; ; round++) {
      progress.roundText = '';
      // A copy: the provider may keep the array, and the next round appends to ours.
      const request: ProviderRequest = { model: def.model.name, messages: [...conversation], tools, parameters, signal };
      const { calls, callErrors, finish, thinking } = await this.streamRound(turn, provider, request, progress);
      const text = progress.roundText;
      progress.roundText = '';
      if (signal.aborted) {
        if (text) progress.messages.push(this.assistantMessage(turn, text));
        return turn.abortReason ?? 'cancelled';
      }
      if (calls.length === 0) {
        if (text) progress.messages.push(this.assistantMessage(turn, text));
        return finishReasonOf(finish);
      }
      if (round >= this.maxToolRounds) {
        // The calls are not run, so they are not stored either: a call without its result
        // would make the next request invalid for most providers.
        if (text) progress.messages.push(this.assistantMessage(turn, text));
        return 'tool_rounds';
      }
      const results: NewMessageRecord[] = [];
      for (const [index, call] of calls.entries()) {
        if (signal.aborted) break;
        this.notify(turn, (l) => l.onToolCall(call));
        const refusal =
          index >= MAX_TOOL_CALLS_PER_ROUND
            ? `too many tool calls in one round (at most ${MAX_TOOL_CALLS_PER_ROUND})`
            : !allowed.has(call.name)
              ? `tool ${call.name} is not allowed for this agent`
              : callErrors[index];
        const outcome: ToolCallOutcome = {
          call_id: call.id,
          ...(refusal === undefined
            ? await this.executeTool(turn.agentId, call.name, call.arguments, signal, environment)
            : { tool: call.name, status: 'error' as const, error: refusal, duration_ms: 0 }),
        };
        // A result that arrives after the abort is not reported: the turn has ended for the client.
        if (signal.aborted) break;
        this.notify(turn, (l) => l.onToolResult(outcome));
        if (!this.removing.has(turn.agentId)) await this.journalToolUse(turn.agentId, outcome, { message_id: turn.request.messageId, call_id: call.id });
        results.push({
          agent_id: turn.agentId,
          role: 'tool',
          content: toolMessageContent(outcome),
          tool_call_id: call.id,
          tool_name: call.name,
          created_at: this.timestamp(),
        });
      }
      // Only the calls that got a result are kept with the assistant message (see above).
      const answered = calls.slice(0, results.length);
      if (text || answered.length > 0) {
        progress.messages.push({ ...this.assistantMessage(turn, text), ...(answered.length > 0 ? { tool_calls: answered } : {}) });
      }
      progress.messages.push(...results);
      if (signal.aborted) return turn.abortReason ?? 'cancelled';
      // The round's reasoning blocks go back with its tool calls, within this turn only (they
      // are not in progress.messages, so the history never holds them).
      conversation.push({ role: 'assistant', content: text, tool_calls: calls, ...(thinking.length > 0 ? { thinking } : {}) }, ...results.map(toChatMessage));
    }
  }

  /**
   * One provider call. Text deltas go to the listener as they come; returns the tool calls, why
   * each one cannot run as sent (`callErrors[i]`, e.g. arguments that were not JSON: answered
   * with that error, so the model can retry) and the finish reason.
   */
  private async streamRound(
    turn: Turn,
    provider: ModelProvider,
    request: ProviderRequest,
    progress: TurnProgress,
  ): Promise<{ calls: ToolCallRecord[]; callErrors: (string | undefined)[]; finish: ProviderFinishReason | undefined; thinking: ThinkingBlock[] }> {
    const calls: ToolCallRecord[] = [];
    const thinking: ThinkingBlock[] = [];
    const callErrors: (string | undefined)[] = [];
    let finish: ProviderFinishReason | undefined;
    progress.providerCalled = true;
    const iterator = provider.stream(request)[Symbol.asyncIterator]();
    try {
      for (;;) {
        // Raced with the abort: a provider that ignores its signal must not hold the turn.
        const next = await Promise.race([iterator.next(), turn.abortedPromise]);
        if (next === ABORTED || next.done) break;
        const event = next.value;
        switch (event.type) {
          case 'text':
            if (event.delta.length === 0) break;
            progress.roundText += event.delta;
            progress.content += event.delta;
            {
              const index = progress.chunkIndex++;
              this.notify(turn, (l) => l.onChunk(event.delta, index));
            }
            break;
          case 'tool_call':
            calls.push(event.call);
            callErrors.push(event.error);
            break;
          case 'thinking':
            if (event.delta.length > 0 && turn.listener.onThinking) this.notify(turn, (l) => l.onThinking?.(event.delta));
            break;
          case 'thinking_block':
            thinking.push(event.block);
            break;
          case 'usage':
            progress.input_tokens += Math.max(0, Math.floor(event.input_tokens));
            progress.output_tokens += Math.max(0, Math.floor(event.output_tokens));
            break;
          case 'finish':
            finish = event.reason;
            break;
        }
      }
    } finally {
      if (turn.controller.signal.aborted) iterator.return?.()?.catch(() => undefined);
    }
    return { calls, callErrors, finish, thinking };
  }

  /** Runs one allowed tool; its failure becomes the outcome's error (never thrown). */
  private async executeTool(
    agentId: string,
    tool: string,
    params: Record<string, unknown>,
    signal: AbortSignal,
    env: Readonly<Record<string, string>>,
  ): Promise<ToolOutcome> {
    const startedAt = this.now();
    try {
      const result = await this.tools.run(tool, params, { signal, timeoutMs: this.toolTimeoutMs, agentId, env });
      return { tool, status: 'success', result, duration_ms: this.now() - startedAt };
    } catch (err) {
      const error = isSentinelError(err) ? err : new SentinelError('internal', `tool ${tool} failed`, { cause: err });
      if (error.code === 'internal') {
        const cause = error.cause ?? err;
        this.logger.error('tool failed', { agent_id: agentId, tool, error: cause instanceof Error ? cause.message : String(cause) });
      }
      return { tool, status: 'error', error: error.message, duration_ms: this.now() - startedAt };
    }
  }

  private async journalToolUse(agentId: string, outcome: ToolOutcome, ids: Record<string, string>): Promise<void> {
    try {
      await this.journal.event(agentId, 'tool_used', `Tool ${outcome.tool} used (${outcome.status})`, {
        ...ids,
        tool: outcome.tool,
        status: outcome.status,
        duration_ms: outcome.duration_ms,
        ...(outcome.error === undefined ? {} : { error: outcome.error }),
      });
    } catch (err) {
      this.logger.error('cannot journal tool use', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private assistantMessage(turn: Turn, content: string): NewMessageRecord {
    return { agent_id: turn.agentId, role: 'assistant', content, message_id: turn.responseId, created_at: this.timestamp() };
  }

  /** After an abort mid-round: the partial answer is kept in the history, like what the client saw. */
  private keepPartial(turn: Turn, progress: TurnProgress): void {
    if (progress.roundText) {
      progress.messages.push(this.assistantMessage(turn, progress.roundText));
      progress.roundText = '';
    }
  }

  /** Turns what a turn threw into the error the client sees, logging the original. */
  private publicFailure(turn: Turn, err: unknown): SentinelError {
    if (isSentinelError(err) && err.code !== 'internal') return err;
    const cause = isSentinelError(err) ? (err.cause ?? err) : err;
    this.logger.error('agent turn failed', {
      agent_id: turn.agentId,
      message_id: turn.request.messageId,
      error: cause instanceof Error ? cause.message : String(cause),
    });
    return new SentinelError('internal', 'the agent failed to answer; see the server log', { cause: err });
  }

  /**
   * Stores what the turn produced (not for a deleted agent), counts usage, journals the end,
   * then delivers the terminal callback, so a client that sees `stream_end` and reads the agent
   * sees the updated usage.
   */
  private async finishTurn(
    turn: Turn,
    end: { started: boolean; reason: TurnEndReason; failure: SentinelError | undefined; progress: TurnProgress; durationMs: number },
  ): Promise<void> {
    if (turn.done) return;
    const { agentId, request } = turn;
    const { progress, reason } = end;
    const failure = end.failure ?? turn.lockLost;
    const usage = usageOf(progress);
    // A turn ended by a deletion on another instance stores nothing either: the rows are going.
    if (!this.removing.has(agentId) && turn.abortReason !== 'deleted') {
      // Issued together so the Store commits them in one group commit: one COMMIT before the
      // terminal frame instead of four (each still durable before the client hears the end).
      const writes: Promise<unknown>[] = [];
      if (progress.messages.length > 0) writes.push(this.store.appendMessages(agentId, progress.messages));
      if (progress.providerCalled) writes.push(this.store.addAgentUsage(agentId, 1, usage.total_tokens, this.timestamp()));
      if (failure) {
        // Refusals (agent stopped or gone before the turn began) are not failures of the agent.
        if (failure.code !== 'conflict' && failure.code !== 'not_found') {
          writes.push(
            this.journal.event(agentId, 'error', `Message ${request.messageId} failed: ${failure.message}`, {
              message_id: request.messageId,
              code: failure.code,
              error: failure.message,
            }),
            this.journal.log(agentId, 'error', `message ${request.messageId} failed: ${failure.message}`, { message_id: request.messageId, code: failure.code }),
          );
        }
      } else if (end.started) {
        writes.push(
          this.journal.event(agentId, 'message_processed', `Message ${request.messageId} processed (${reason})`, {
            message_id: request.messageId,
            response_id: turn.responseId,
            reason,
            usage,
          }),
          this.journal.log(agentId, 'info', `message ${request.messageId} processed: ${reason}, ${usage.total_tokens} tokens`, {
            message_id: request.messageId,
            reason,
            tokens: usage.total_tokens,
            duration_ms: end.durationMs,
          }),
        );
      }
      for (const outcome of await Promise.allSettled(writes)) {
        if (outcome.status === 'fulfilled') continue;
        const err: unknown = outcome.reason;
        this.logger.error('cannot record agent turn', { agent_id: agentId, message_id: request.messageId, error: err instanceof Error ? err.message : String(err) });
      }
    }
    if (failure) this.terminal(turn, (l) => l.onError(failure));
    else this.terminal(turn, (l) => l.onEnd({ content: progress.content, reason, usage }));
  }
}
