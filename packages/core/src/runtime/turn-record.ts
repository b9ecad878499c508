/**
 * What a turn leaves behind: the rows it adds to the conversation, the agent's usage, and its
 * journal events and log lines. The turn runner collects the rows in a {@link TurnProgress} as
 * the turn goes and hands them to the {@link TurnRecorder} when it ends; writes that belong
 * together are issued together, so the Store commits them in one group commit (see SqliteStore).
 */
import { isoTimestamp } from '../clock.js';
import type { SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import type { NewMessageRecord, ToolCallRecord } from '../contract/models.js';
import type { AgentJournal } from '../journal.js';
import type { Store } from '../store/types.js';
import type { ToolOutcome, Turn, TurnEndReason, TurnUsage } from './turn.js';

/** What a turn produced, to be stored when it ends. */
export interface TurnProgress {
  content: string;
  chunkIndex: number;
  /** Text of the model round in progress (kept when the turn is aborted mid-round). */
  roundText: string;
  input_tokens: number;
  output_tokens: number;
  providerCalled: boolean;
  messages: NewMessageRecord[];
}

/** How a turn ended, as {@link TurnRecorder.ended} stores it. */
export interface TurnOutcome {
  /** The user message was stored (the turn got past its checks). */
  started: boolean;
  reason: TurnEndReason;
  failure: SentinelError | undefined;
  progress: TurnProgress;
  usage: TurnUsage;
  durationMs: number;
}

/** A turn that produced nothing yet. */
export function newTurnProgress(): TurnProgress {
  return { content: '', chunkIndex: 0, roundText: '', input_tokens: 0, output_tokens: 0, providerCalled: false, messages: [] };
}

/** The usage of a turn so far. */
export function usageOf(progress: TurnProgress): TurnUsage {
  return { input_tokens: progress.input_tokens, output_tokens: progress.output_tokens, total_tokens: progress.input_tokens + progress.output_tokens };
}

/** A tool result as the content of a `tool` message: its JSON (a string result as is; an error as `{"error": …}`). */
function toolMessageContent(outcome: ToolOutcome): string {
  if (outcome.status === 'error') return JSON.stringify({ error: outcome.error ?? 'failed' });
  return typeof outcome.result === 'string' ? outcome.result : JSON.stringify(outcome.result ?? null);
}

/** `{run_id}` for the events of a turn that answers a run, else nothing. */
function runIdOf(turn: Turn): { run_id?: string } {
  return turn.request.runId === undefined ? {} : { run_id: turn.request.runId };
}

/** What the recorder writes to. */
export interface TurnRecorderOptions {
  store: Store;
  journal: AgentJournal;
  logger: Logger;
  /** Clock for stored timestamps. */
  now: () => number;
}

/** Builds a turn's rows and writes them, with the usage and journal entries, to the Store. */
export class TurnRecorder {
  private readonly store: Store;
  private readonly journal: AgentJournal;
  private readonly logger: Logger;
  private readonly now: () => number;

  constructor(options: TurnRecorderOptions) {
    this.store = options.store;
    this.journal = options.journal;
    this.logger = options.logger;
    this.now = options.now;
  }

  /**
   * Stores the turn's user message and journals `message_received`, issued together. Resolves
   * to how each went (never rejects): the turn started once the message is stored, and fails
   * when either write did.
   */
  received(turn: Turn): Promise<[message: PromiseSettledResult<unknown>, event: PromiseSettledResult<unknown>]> {
    const { agentId, request } = turn;
    const writes = Promise.allSettled([
      this.store.appendMessages(agentId, [{ agent_id: agentId, role: 'user', content: request.content, message_id: request.messageId, created_at: this.timestamp() }]),
      this.journal.event(agentId, 'message_received', `Message ${request.messageId} received`, { message_id: request.messageId, ...runIdOf(turn) }),
    ]);
    // Issued in the same turn of the event loop: one group commit with the message (a run's `running`).
    const extra = this.beforeStart(turn);
    return extra === undefined ? writes : Promise.all([writes, extra]).then(([outcomes]) => outcomes);
  }

  private beforeStart(turn: Turn): Promise<void> | undefined {
    let extra: Promise<unknown> | undefined;
    try {
      extra = turn.listener.beforeStart?.();
    } catch (err) {
      this.logger.error('turn listener failed', { agent_id: turn.agentId, error: err instanceof Error ? err.message : String(err) });
    }
    return extra?.then(
      () => undefined,
      (err: unknown) => this.logger.error('turn listener write failed', { agent_id: turn.agentId, error: err instanceof Error ? err.message : String(err) }),
    );
  }

  /** The row of an assistant message of the turn. */
  assistantMessage(turn: Turn, content: string): NewMessageRecord {
    return { agent_id: turn.agentId, role: 'assistant', content, message_id: turn.responseId, created_at: this.timestamp() };
  }

  /** The row of a tool message answering `call`. */
  toolMessage(turn: Turn, call: ToolCallRecord, outcome: ToolOutcome): NewMessageRecord {
    return {
      agent_id: turn.agentId,
      role: 'tool',
      content: toolMessageContent(outcome),
      tool_call_id: call.id,
      tool_name: call.name,
      created_at: this.timestamp(),
    };
  }

  /** Journals a tool run as `tool_used` (`ids` say what asked for it); a failure is logged, not thrown. */
  async toolUsed(agentId: string, outcome: ToolOutcome, ids: Record<string, string>): Promise<void> {
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

  /**
   * Stores what the turn produced, counts its usage and journals its end (`message_processed`,
   * or `error` unless it was a refusal). Failed writes are logged, never thrown.
   */
  async ended(turn: Turn, end: TurnOutcome): Promise<void> {
    const { agentId, request } = turn;
    const { progress, reason, failure, usage } = end;
    // Issued together so the Store commits them in one group commit: one COMMIT before the
    // terminal frame instead of four (each still durable before the client hears the end).
    const writes: Promise<unknown>[] = [];
    if (progress.messages.length > 0) writes.push(this.store.appendMessages(agentId, progress.messages));
    if (progress.providerCalled) writes.push(this.store.addAgentUsage(agentId, 1, usage.total_tokens, this.timestamp()));
    if (failure) {
      // Refusals (agent stopped, gone or waiting for an approval before the turn began) are not failures of the agent.
      if (failure.code !== 'conflict' && failure.code !== 'not_found' && failure.code !== 'agent_busy') {
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
          ...runIdOf(turn),
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

  private timestamp(): string {
    return isoTimestamp(this.now());
  }
}
