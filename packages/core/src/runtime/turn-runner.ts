/**
 * The model/tool loop of one turn (docs/ARCHITECTURE.md#runtime-providers-and-tools): check the
 * agent, store the user message, send the conversation (within a budget) to the image's model
 * provider, stream the answer to the listener, run the tools the model calls (only those the
 * image lists), feed the results back, repeat; then record the turn and deliver its one
 * terminal callback. An abort (cancel, stop, delete, shutdown, a lost lock) ends it promptly
 * and keeps the partial answer.
 */
import { isSentinelError, SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import type { AgentDefinition, NewMessageRecord, ToolCallRecord } from '../contract/models.js';
import type { ImageService } from '../images/service.js';
import { imageDefinition } from '../images/service.js';
import type { ProviderCatalog } from '../providers/catalog.js';
import type { ChatMessage, ModelProvider, ProviderFinishReason, ProviderRequest, ThinkingBlock } from '../providers/types.js';
import type { Store } from '../store/types.js';
import type { ToolSet } from '../tools/tool-set.js';
import { selectHistory, toChatMessage, withoutUnanswered } from './history.js';
import { newTurnProgress, type TurnOutcome, type TurnProgress, type TurnRecorder, usageOf } from './turn-record.js';
import type { Context } from '@opentelemetry/api';
import { recordTurnEnd, runInContext, traceProviderCall, traceToolCall } from '../telemetry/tracing.js';
import { ABORTED, endUnstarted, notify, publicFailure, terminal, type ToolCallOutcome, type ToolOutcome, type Turn, type TurnEndReason } from './turn.js';

/** Tool calls run per model round; extra calls are answered with an error instead of being run. */
const MAX_TOOL_CALLS_PER_ROUND = 16;
/** Image definitions cached by digest (images are immutable, so the cache never goes stale). */
const DEFINITION_CACHE_SIZE = 256;

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
    this.captureContent = options.captureContent === true;
  }

  /** Answers `turn` to its end, terminal callback included. Never rejects. */
  async run(turn: Turn): Promise<void> {
    const { agentId, request } = turn;
    const signal = turn.controller.signal;
    const startedAt = this.now();
    const progress = newTurnProgress();
    let reason: TurnEndReason = 'stop';
    let failure: SentinelError | undefined;
    let started = false;
    let counted: string | undefined;
    try {
      const record = await this.store.getAgent(agentId);
      if (signal.aborted) return endUnstarted(turn, turn.abortReason ?? 'cancelled', this.logger);
      if (!record) throw new SentinelError('not_found', `agent "${agentId}" not found`);
      if (record.status !== 'running') throw new SentinelError('conflict', record.status === 'stopped' ? 'agent is stopped' : `agent is not running (${record.status})`);
      const def = await this.definition(record.image_id);
      const provider = this.providers.get(def.model.provider);
      if (signal.aborted) return endUnstarted(turn, turn.abortReason ?? 'cancelled', this.logger);
      // Before the message is stored or the provider called: a turn over quota leaves no trace
      // but its terminal frame (`quota_exceeded`).
      if (this.quota) {
        await this.quota.beginTurn(record.owner);
        counted = record.owner;
      }

      const [storedMessage, receivedEvent] = await runInContext(turn.traceContext, () => this.recorder.received(turn));
      if (storedMessage.status === 'rejected') throw storedMessage.reason;
      started = true;
      if (receivedEvent.status === 'rejected') throw receivedEvent.reason;
      notify(turn, this.logger, (l) => l.onStart({ messageId: request.messageId, responseId: turn.responseId }));

      const stored = await runInContext(turn.traceContext, () => this.store.listMessages(agentId, { limit: this.historyMaxMessages }));
      const history = withoutUnanswered(selectHistory(stored, { maxMessages: this.historyMaxMessages, maxChars: this.historyMaxChars }));
      const conversation: ChatMessage[] = def.instructions ? [{ role: 'system', content: def.instructions }] : [];
      conversation.push(...history.map(toChatMessage));
      reason = await this.converse(turn, provider, def, record.parameters, conversation, progress, record.environment);
    } catch (err) {
      if (signal.aborted) {
        reason = turn.abortReason ?? 'cancelled';
        this.keepPartial(turn, progress);
      } else {
        failure = publicFailure(turn, err, this.logger);
      }
    }
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
      const results: NewMessageRecord[] = [];
      for (const [index, call] of calls.entries()) {
        if (signal.aborted) break;
        notify(turn, this.logger, (l) => l.onToolCall(call));
        const refusal =
          index >= MAX_TOOL_CALLS_PER_ROUND
            ? `too many tool calls in one round (at most ${MAX_TOOL_CALLS_PER_ROUND})`
            : !allowed.has(call.name)
              ? `tool ${call.name} is not allowed for this agent`
              : callErrors[index];
        const outcome: ToolCallOutcome = {
          call_id: call.id,
          ...(refusal === undefined
            ? await this.executeTool(turn.agentId, call.name, call.arguments, signal, environment, call.id, turn.traceContext)
            : { tool: call.name, status: 'error' as const, error: refusal, duration_ms: 0 }),
        };
        // A result that arrives after the abort is not reported: the turn has ended for the client.
        if (signal.aborted) break;
        notify(turn, this.logger, (l) => l.onToolResult(outcome));
        if (!this.isRemoving(turn.agentId)) await this.recorder.toolUsed(turn.agentId, outcome, { message_id: turn.request.messageId, call_id: call.id });
        results.push(this.recorder.toolMessage(turn, call, outcome));
      }
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
    // A turn ended by a deletion on another instance stores nothing either: the rows are going.
    if (!this.isRemoving(turn.agentId) && turn.abortReason !== 'deleted') await this.recorder.ended(turn, end);
    if (failure) terminal(turn, this.logger, (l) => l.onError(failure));
    else terminal(turn, this.logger, (l) => l.onEnd({ content: end.progress.content, reason: end.reason, usage: end.usage }));
  }
}
