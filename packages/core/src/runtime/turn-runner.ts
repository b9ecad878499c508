/**
 * The model/tool loop of one turn (docs/ARCHITECTURE.md#runtime-providers-and-tools): check the
 * agent, store the user message, send the conversation (within a budget) to the image's model
 * provider, stream the answer to the listener, run the tools the model calls (only those the
 * image lists), feed the results back, repeat; then record the turn and deliver its one
 * terminal callback. An abort (cancel, stop, delete, shutdown, a lost lock) ends it promptly
 * and keeps the partial answer.
 */
import { isSentinelError, SentinelError } from '../contract/errors.js';
import { newApprovalRequestId } from '../contract/ids.js';
import type { Logger } from '../contract/logger.js';
import type { AgentDefinition, MessageRecord, NewMessageRecord, ToolCallRecord } from '../contract/models.js';
import type { ImageService } from '../images/service.js';
import { imageDefinition } from '../images/service.js';
import type { ProviderCatalog } from '../providers/catalog.js';
import type { ChatMessage, ModelProvider, ProviderFinishReason, ProviderRequest, ThinkingBlock } from '../providers/types.js';
import type { Store } from '../store/types.js';
import type { ToolSet } from '../tools/tool-set.js';
import { providerCallTimer, type SentinelMetrics } from '../telemetry/metrics.js';
import { selectHistory, toChatMessage, withoutUnanswered } from './history.js';
import { newTurnProgress, type TurnOutcome, type TurnProgress, type TurnRecorder, usageOf } from './turn-record.js';
import type { Context } from '@opentelemetry/api';
import { recordTurnEnd, runInContext, traceProviderCall, traceToolCall } from '../telemetry/tracing.js';
import { ABORTED, endUnstarted, notify, publicFailure, terminal, type ApprovalRequest, type ToolCallOutcome, type ToolOutcome, type Turn, type TurnEnd, type TurnEndReason, type TurnRequest } from './turn.js';

/** Tool calls run per model round; extra calls are answered with an error instead of being run. */
const MAX_TOOL_CALLS_PER_ROUND = 16;
/** Image definitions cached by digest (images are immutable, so the cache never goes stale). */
const DEFINITION_CACHE_SIZE = 256;

/** The error a refused call answers the model with: `{"error":"refused by a person: <reason>"}`. */
function refusedByPerson(reason: string | undefined): string {
  return reason ? `refused by a person: ${reason}` : 'refused by a person';
}

/** The outcome of a call that was never run. */
function notRun(call: ToolCallRecord, why: string): ToolCallOutcome {
  return { call_id: call.id, tool: call.name, status: 'error', error: `not run: ${why}`, duration_ms: 0 };
}

/** The tool calls of the newest stored message when they still wait for their results (a turn paused for approval), else undefined. */
export function pendingToolCalls(messages: readonly MessageRecord[]): ToolCallRecord[] | undefined {
  const last = messages.at(-1);
  return last?.role === 'assistant' && last.tool_calls && last.tool_calls.length > 0 ? last.tool_calls : undefined;
}

/**
 * A new message must not be stored while a tool call waits for its result (the history would
 * hold a call without its result, which providers refuse), and a continuation must continue
 * exactly the calls that wait.
 */
function checkPending(messages: readonly MessageRecord[], continuation: TurnRequest['continuation']): void {
  const pending = pendingToolCalls(messages);
  if (!continuation) {
    if (pending) throw new SentinelError('agent_busy', 'agent is busy: a tool call waits for a person\'s approval; decide it or cancel its run first');
    return;
  }
  const same = pending !== undefined && pending.length === continuation.calls.length && pending.every((call, i) => call.id === continuation.calls[i]?.id);
  if (!same) throw new SentinelError('conflict', 'the tool calls to continue are no longer waiting for approval');
}

function finishReasonOf(reason: ProviderFinishReason | undefined): TurnEndReason {
  if (reason === 'length') return 'length';
  // The interface has no "filtered" reason; the answer was cut by the provider, not by us.
  if (reason === 'content_filter') return 'error';
  return 'stop';
}

/**
 * Quotas on model usage, checked per turn (QuotaService in auth/quotas.ts is the real one).
 * `beginTurn` counts a turn of the owner's agent or rejects (`quota_exceeded`) before anything
 * is stored or any provider called; `addTokens` never rejects.
 */
export interface TurnQuota {
  beginTurn(owner: string): Promise<void>;
  addTokens(owner: string, tokens: number): Promise<void>;
}

/** What the turn runner needs (the knobs are validated by `AgentRuntime`). */
export interface TurnRunnerOptions {
  store: Store;
  images: ImageService;
  providers: ProviderCatalog;
  tools: ToolSet;
  recorder: TurnRecorder;
  logger: Logger;
  /** Clock for durations. */
  now: () => number;
  maxToolRounds: number;
  toolTimeoutMs: number;
  historyMaxMessages: number;
  historyMaxChars: number;
  /** True while the agent is being deleted: nothing more is stored or journaled for it. */
  isRemoving(agentId: string): boolean;
  /** Per-user quotas. Default none (unlimited). */
  quota?: TurnQuota;
  /** Records turns and provider calls. Default: none. */
  metrics?: SentinelMetrics;
  /** Message text in provider and tool spans. Default `false`. */
  captureContent?: boolean;
}

/** What one provider call (a model round) returned. */
interface RoundResult {
  calls: ToolCallRecord[];
  callErrors: (string | undefined)[];
  finish: ProviderFinishReason | undefined;
  thinking: ThinkingBlock[];
}

/** Runs turns (one call of {@link run} per turn) and single tool calls. */
export class TurnRunner {
  private readonly store: Store;
  private readonly images: ImageService;
  private readonly providers: ProviderCatalog;
  private readonly tools: ToolSet;
  private readonly recorder: TurnRecorder;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly maxToolRounds: number;
  private readonly toolTimeoutMs: number;
  private readonly historyMaxMessages: number;
  private readonly historyMaxChars: number;
  private readonly isRemoving: (agentId: string) => boolean;
  private readonly quota: TurnQuota | undefined;
  private readonly metrics: SentinelMetrics | undefined;
  private readonly captureContent: boolean;
  private readonly definitions = new Map<string, AgentDefinition>();

  constructor(options: TurnRunnerOptions) {
    this.store = options.store;
    this.images = options.images;
    this.providers = options.providers;
    this.tools = options.tools;
    this.recorder = options.recorder;
    this.logger = options.logger;
    this.now = options.now;
    this.maxToolRounds = options.maxToolRounds;
    this.toolTimeoutMs = options.toolTimeoutMs;
    this.historyMaxMessages = options.historyMaxMessages;
    this.historyMaxChars = options.historyMaxChars;
    this.isRemoving = options.isRemoving;
    this.quota = options.quota;
    this.metrics = options.metrics;
    this.captureContent = options.captureContent === true;
  }

  /** Answers `turn` to its end, terminal callback included. Never rejects. */
  async run(turn: Turn): Promise<void> {
    const { agentId, request } = turn;
    const { continuation } = request;
    const signal = turn.controller.signal;
    const startedAt = this.now();
    const progress = newTurnProgress();
    let reason: TurnEndReason = 'stop';
    let failure: SentinelError | undefined;
    let started = false;
    let counted: string | undefined;
    // A continuation whose calls are still pending must answer them whatever happens (below).
    const resumed = { answered: continuation === undefined };
    try {
      const record = await this.store.getAgent(agentId);
      if (signal.aborted) return endUnstarted(turn, turn.abortReason ?? 'cancelled', this.logger);
      if (!record) throw new SentinelError('not_found', `agent "${agentId}" not found`);
      if (record.status !== 'running') throw new SentinelError('conflict', record.status === 'stopped' ? 'agent is stopped' : `agent is not running (${record.status})`);
      const def = await this.definition(record.image_id);
      const provider = this.providers.get(def.model.provider);
      if (signal.aborted) return endUnstarted(turn, turn.abortReason ?? 'cancelled', this.logger);
      // Read before the user message is stored (the turn lock keeps anything else from writing
      // in between): a new message must not land between a pending tool call and its result.
      const stored = await runInContext(turn.traceContext, () => this.store.listMessages(agentId, { limit: this.historyMaxMessages }));
      try {
        checkPending(stored, continuation);
      } catch (err) {
        // Not this turn's calls to answer (another turn did, or they never waited).
        resumed.answered = true;
        throw err;
      }
      // Before the message is stored or the provider called: a turn over quota leaves no trace
      // but its terminal frame (`quota_exceeded`). A continuation was counted when its turn began.
      if (this.quota) {
        if (!continuation) await this.quota.beginTurn(record.owner);
        counted = record.owner;
      }

      let messages: readonly MessageRecord[] = stored;
      if (!continuation) {
        const [storedMessage, receivedEvent] = await runInContext(turn.traceContext, () => this.recorder.received(turn));
        if (storedMessage.status === 'rejected') throw storedMessage.reason;
        started = true;
        if (receivedEvent.status === 'rejected') throw receivedEvent.reason;
        notify(turn, this.logger, (l) => l.onStart({ messageId: request.messageId, responseId: turn.responseId }));
        // The row just stored, as a read would return it (a copy: a Store may cache its lists).
        const seq = (stored.at(-1)?.seq ?? 0) + 1;
        messages = [...stored, { agent_id: agentId, seq, role: 'user', content: request.content, message_id: request.messageId, created_at: '' }];
      } else {
        started = true;
      }

      const history = withoutUnanswered(selectHistory(messages, { maxMessages: this.historyMaxMessages, maxChars: this.historyMaxChars }));
      const conversation: ChatMessage[] = def.instructions ? [{ role: 'system', content: def.instructions }] : [];
      conversation.push(...history.map(toChatMessage));
      reason = await this.converse(turn, provider, def, record.parameters, conversation, progress, record.environment, resumed);
    } catch (err) {
      if (signal.aborted) {
        reason = turn.abortReason ?? 'cancelled';
        this.keepPartial(turn, progress);
      } else {
        failure = publicFailure(turn, err, this.logger);
      }
    }
    if (!resumed.answered && continuation) {
      // Ended before it ran the calls (agent stopped, aborted while queued…): each is answered
      // with why, so the agent's history never keeps a call without its result.
      const why = failure ? failure.message : `the turn was ${reason}`;
      progress.messages.unshift(...continuation.calls.map((call) => this.recorder.toolMessage(turn, call, notRun(call, why))));
      started = true;
    }
    this.metrics?.turnEnded(failure ? 'error' : reason, (this.now() - startedAt) / 1000);
    const usage = usageOf(progress);
    // Counted before the terminal frame, so a client that saw its turn end sees its tokens in /v1/auth/me.
    if (counted !== undefined) await this.quota?.addTokens(counted, usage.total_tokens);
    await this.finish(turn, { started, reason, failure: failure ?? turn.lockLost, progress, usage, durationMs: this.now() - startedAt });
  }

  /** The definition of the image `digest` (cached). */
  async definition(digest: string): Promise<AgentDefinition> {
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

  /** Runs one allowed tool under its `execute_tool` span (a child of `traceParent`, default the active context); its failure becomes the outcome's error (never thrown). `callId`: the model's, none for a direct request. */
  executeTool(
    agentId: string,
    tool: string,
    params: Record<string, unknown>,
    signal: AbortSignal,
    env: Readonly<Record<string, string>>,
    callId?: string,
    traceParent?: Context,
  ): Promise<ToolOutcome> {
    const capture = this.captureContent;
    return traceToolCall(
      { tool, ...(callId === undefined ? {} : { callId }), ...(capture ? { arguments: params } : {}) },
      () => this.runTool(agentId, tool, params, signal, env),
      (outcome) => (outcome.status === 'error' ? { error: outcome.error ?? 'failed' } : capture ? { result: outcome.result } : {}),
      traceParent,
    );
  }

  private async runTool(
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

  /**
   * The model rounds of a turn: stream, run the tools asked for, feed the results back, repeat.
   * A round calling a tool that needs approval pauses the turn (`requires_action`); a
   * continuation first answers the paused round's calls, then goes on the same way.
   */
  private async converse(
    turn: Turn,
    provider: ModelProvider,
    def: AgentDefinition,
    parameters: Record<string, unknown>,
    conversation: ChatMessage[],
    progress: TurnProgress,
    /** The agent's environment: for its tools only, never part of a provider request. */
    environment: Readonly<Record<string, string>>,
    resumed: { answered: boolean },
  ): Promise<TurnEndReason> {
    const signal = turn.controller.signal;
    const allowed = new Set(def.tools);
    const gated = new Set(def.tool_approval ?? []);
    const tools = this.tools.specs(def.tools);
    const refusalOf = (call: ToolCallRecord, index: number): string | undefined =>
      index >= MAX_TOOL_CALLS_PER_ROUND
        ? `too many tool calls in one round (at most ${MAX_TOOL_CALLS_PER_ROUND})`
        : !allowed.has(call.name)
          ? `tool ${call.name} is not allowed for this agent`
          : undefined;
    const continuation = turn.request.continuation;
    if (continuation) {
      const { decisions } = continuation;
      const results = await this.runCalls(turn, continuation.calls, environment, { announce: false }, (call, index) => {
        const refusal = refusalOf(call, index);
        if (refusal !== undefined || !gated.has(call.name)) return refusal;
        const decision = decisions[call.id];
        if (!decision) return 'refused: no person decided on this call';
        return decision.approve ? undefined : refusedByPerson(decision.reason);
      });
      progress.messages.push(...results);
      resumed.answered = true;
      if (signal.aborted) return turn.abortReason ?? 'cancelled';
      conversation.push(...results.map(toChatMessage));
    }
    for (let round = 0; ; round++) {
      progress.roundText = '';
      // A copy: the provider may keep the array, and the next round appends to ours.
      const request: ProviderRequest = { model: def.model.name, messages: [...conversation], tools, parameters, signal };
      const { calls, callErrors, finish, thinking } = await this.streamRound(turn, provider, request, progress);
      const text = progress.roundText;
      progress.roundText = '';
      if (signal.aborted) {
        if (text) progress.messages.push(this.recorder.assistantMessage(turn, text));
        return turn.abortReason ?? 'cancelled';
      }
      if (calls.length === 0) {
        if (text) progress.messages.push(this.recorder.assistantMessage(turn, text));
        return finishReasonOf(finish);
      }
      if (round >= this.maxToolRounds) {
        // The calls are not run, so they are not stored either: a call without its result
        // would make the next request invalid for most providers.
        if (text) progress.messages.push(this.recorder.assistantMessage(turn, text));
        return 'tool_rounds';
      }
      const callRefusal = (call: ToolCallRecord, index: number) => refusalOf(call, index) ?? callErrors[index];
      const onApproval = turn.listener.onApprovalRequired;
      const waiting = calls.filter((call, index) => gated.has(call.name) && callRefusal(call, index) === undefined);
      if (waiting.length > 0 && onApproval) {
        // Nothing of the round runs yet: the assistant message is stored with every call (the
        // continuation answers each), so the stored history is the paused conversation.
        for (const call of calls) notify(turn, this.logger, (l) => l.onToolCall(call));
        progress.messages.push({ ...this.recorder.assistantMessage(turn, text), tool_calls: calls });
        const requests: ApprovalRequest[] = waiting.map((call) => ({ request_id: newApprovalRequestId(), call_id: call.id, tool: call.name, parameters: call.arguments }));
        notify(turn, this.logger, (l) => l.onApprovalRequired?.({ requests, calls }));
        return 'requires_action';
      }
      const results = await this.runCalls(turn, calls, environment, { announce: true }, (call, index) =>
        // A listener that cannot take approvals has no person behind it: the call is answered, not left hanging.
        waiting.includes(call) ? `tool ${call.name} needs a person's approval, which this client cannot give` : callRefusal(call, index),
      );
      // Only the calls that got a result are kept with the assistant message (see above).
      const answered = calls.slice(0, results.length);
      if (text || answered.length > 0) {
        progress.messages.push({ ...this.recorder.assistantMessage(turn, text), ...(answered.length > 0 ? { tool_calls: answered } : {}) });
      }
      progress.messages.push(...results);
      if (signal.aborted) return turn.abortReason ?? 'cancelled';
      // The round's reasoning blocks go back with its tool calls, within this turn only (they
      // are not in progress.messages, so the history never holds them).
      conversation.push({ role: 'assistant', content: text, tool_calls: calls, ...(thinking.length > 0 ? { thinking } : {}) }, ...results.map(toChatMessage));
    }
  }

  /** {@link streamUntraced} under the call's GenAI span (token counts of this round only). */
  private streamRound(turn: Turn, provider: ModelProvider, request: ProviderRequest, progress: TurnProgress): Promise<RoundResult> {
    const inputBefore = progress.input_tokens;
    const outputBefore = progress.output_tokens;
    const capture = this.captureContent;
    return traceProviderCall(
      { provider: provider.name, model: request.model, ...(capture ? { messages: request.messages } : {}) },
      () => this.streamUntraced(turn, provider, request, progress),
      (round) => ({
        inputTokens: progress.input_tokens - inputBefore,
        outputTokens: progress.output_tokens - outputBefore,
        ...(round.finish === undefined ? {} : { finishReason: round.finish }),
        ...(capture ? { output: progress.roundText } : {}),
      }),
      turn.traceContext,
    );
  }

  /**
   * Runs a round's tool calls in order (those `refusalOf` names are answered with that error
   * instead) and returns their tool messages. `announce`: each call is reported (`onToolCall`)
   * before it runs, and an abort stops at the calls answered so far; otherwise (a continuation,
   * whose stored assistant message holds every call) an abort answers the rest with an error,
   * unreported, so no stored call is left without its result.
   */
  private async runCalls(
    turn: Turn,
    calls: readonly ToolCallRecord[],
    environment: Readonly<Record<string, string>>,
    options: { announce: boolean },
    refusalOf: (call: ToolCallRecord, index: number) => string | undefined,
  ): Promise<NewMessageRecord[]> {
    const signal = turn.controller.signal;
    const results: NewMessageRecord[] = [];
    for (const [index, call] of calls.entries()) {
      if (signal.aborted) {
        if (options.announce) break;
        results.push(this.recorder.toolMessage(turn, call, notRun(call, `the turn was ${turn.abortReason ?? 'cancelled'}`)));
        continue;
      }
      if (options.announce) notify(turn, this.logger, (l) => l.onToolCall(call));
      const refusal = refusalOf(call, index);
      const outcome: ToolCallOutcome = {
        call_id: call.id,
        ...(refusal === undefined
          ? await this.executeTool(turn.agentId, call.name, call.arguments, signal, environment, call.id, turn.traceContext)
          : { tool: call.name, status: 'error' as const, error: refusal, duration_ms: 0 }),
      };
      // A result that arrives after the abort is not reported: the turn has ended for the client.
      if (signal.aborted) {
        if (options.announce) break;
        results.push(this.recorder.toolMessage(turn, call, outcome));
        continue;
      }
      notify(turn, this.logger, (l) => l.onToolResult(outcome));
      if (!this.isRemoving(turn.agentId)) await this.recorder.toolUsed(turn.agentId, outcome, { message_id: turn.request.messageId, call_id: call.id });
      results.push(this.recorder.toolMessage(turn, call, outcome));
    }
    return results;
  }

  /**
   * One provider call. Text deltas go to the listener as they come; returns the tool calls, why
   * each one cannot run as sent (`callErrors[i]`, e.g. arguments that were not JSON: answered
   * with that error, so the model can retry) and the finish reason.
   */
  private async streamUntraced(turn: Turn, provider: ModelProvider, request: ProviderRequest, progress: TurnProgress): Promise<RoundResult> {
    const calls: ToolCallRecord[] = [];
    const thinking: ThinkingBlock[] = [];
    const callErrors: (string | undefined)[] = [];
    let finish: ProviderFinishReason | undefined;
    progress.providerCalled = true;
    const call = this.metrics === undefined ? undefined : providerCallTimer(this.metrics, provider.name, request.model);
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
              notify(turn, this.logger, (l) => l.onChunk(event.delta, index));
            }
            break;
          case 'tool_call':
            calls.push(event.call);
            callErrors.push(event.error);
            break;
          case 'thinking':
            if (event.delta.length > 0 && turn.listener.onThinking) notify(turn, this.logger, (l) => l.onThinking?.(event.delta));
            break;
          case 'thinking_block':
            thinking.push(event.block);
            break;
          case 'usage':
            progress.input_tokens += Math.max(0, Math.floor(event.input_tokens));
            progress.output_tokens += Math.max(0, Math.floor(event.output_tokens));
            call?.tokens(event.input_tokens, event.output_tokens);
            break;
          case 'finish':
            finish = event.reason;
            break;
        }
      }
    } catch (err) {
      if (!turn.controller.signal.aborted) call?.failed(err);
      throw err;
    } finally {
      call?.end();
      if (turn.controller.signal.aborted) iterator.return?.()?.catch(() => undefined);
    }
    return { calls, callErrors, finish, thinking };
  }

  /** After an abort mid-round: the partial answer is kept in the history, like what the client saw. */
  private keepPartial(turn: Turn, progress: TurnProgress): void {
    if (progress.roundText) {
      progress.messages.push(this.recorder.assistantMessage(turn, progress.roundText));
      progress.roundText = '';
    }
  }

  /**
   * Records what the turn produced (not for a deleted agent), then delivers the terminal
   * callback, so a client that sees `stream_end` and reads the agent sees the updated usage.
   */
  private async finish(turn: Turn, end: TurnOutcome): Promise<void> {
    if (turn.done) return;
    const { failure } = end;
    recordTurnEnd(turn.traceContext, { reason: end.reason, inputTokens: end.usage.input_tokens, outputTokens: end.usage.output_tokens, ...(failure ? { errorCode: failure.code } : {}) });
    const turnEnd = failure ?? { content: end.progress.content, reason: end.reason, usage: end.usage };
    // A turn ended by a deletion on another instance stores nothing either: the rows are going.
    const recorded = !this.isRemoving(turn.agentId) && turn.abortReason !== 'deleted' ? this.recorder.ended(turn, end) : undefined;
    // The listener's end writes (a run's status and terminal frame) are issued in the same turn
    // of the event loop as the recorder's, so they share its group commit.
    let extra: Promise<unknown> | undefined;
    try {
      extra = turn.listener.beforeEnd?.(turnEnd);
    } catch (err) {
      this.logger.error('turn listener failed', { agent_id: turn.agentId, error: err instanceof Error ? err.message : String(err) });
    }
    await Promise.allSettled([recorded, extra]);
    if (failure) terminal(turn, this.logger, (l) => l.onError(failure));
    else terminal(turn, this.logger, (l) => l.onEnd(turnEnd as TurnEnd));
  }
}
