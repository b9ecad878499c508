/**
 * One turn of an agent, as every part of the runtime sees it: the request and its listener, the
 * AbortSignal that ends it, and the one-terminal-callback rule. The queue creates turns, the
 * coordination aborts them on other instances' behalf, the turn runner answers them; all of
 * them deliver callbacks through the functions here, so a listener's throw never escapes and a
 * second terminal callback never goes out.
 */
import { isSentinelError, SentinelError } from '../contract/errors.js';
import { newResponseId } from '../contract/ids.js';
import type { Logger } from '../contract/logger.js';
import type { ToolCallRecord } from '../contract/models.js';
import { captureTraceContext } from '../telemetry/tracing.js';
import type { Context } from '@opentelemetry/api';

/** Why a turn ended. */
export type TurnEndReason = 'stop' | 'length' | 'cancelled' | 'error' | 'shutdown' | 'deleted' | 'stopped' | 'tool_rounds' | 'requires_action';

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
  /** The run this turn answers (runs/service.ts); recorded as `run_id` in the turn's events. Default none. */
  runId?: string;
  /**
   * Continues a turn that ended `requires_action`: `calls` are that model round's tool calls
   * (all of them, as {@link ApprovalRequired} gave them), `decisions` the person's decision for
   * each gated one, by call id. Such a turn stores no user message and counts no new quota
   * turn (`content` is not used); it runs the approved and ungated calls, answers the refused
   * ones with `{"error":"refused by a person: <reason>"}` and carries on with the model.
   * Default none: a new message.
   */
  continuation?: { calls: ToolCallRecord[]; decisions: Record<string, ApprovalDecision> };
}

/** A person's answer to one gated tool call. */
export interface ApprovalDecision {
  approve: boolean;
  /** Why (shown to the model when refused). Default none. */
  reason?: string;
}

/** One tool call of a model round that waits for a person's decision. */
export interface ApprovalRequest {
  /** `apr_<16 hex>`, new per gated call. */
  request_id: string;
  call_id: string;
  tool: string;
  parameters: Record<string, unknown>;
}

/** What {@link TurnListener.onApprovalRequired} gets: the gated calls, and every call of their round. */
export interface ApprovalRequired {
  requests: ApprovalRequest[];
  /** The round's calls, gated or not, in order: none has run; a continuation runs them. */
  calls: ToolCallRecord[];
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
 * A continuation turn (after `requires_action`) gets no `onStart` (its run already started) and
 * no `onToolCall` for the calls it continues (they were announced before the pause).
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
  /**
   * The model called a tool that needs a person's approval (image `tool_approval`): none of the
   * round's calls ran, the assistant message with all of them is stored, and the turn next ends
   * with reason `requires_action`; a turn with {@link TurnRequest.continuation} carries on.
   * Optional: for a listener without it such calls are answered with an error instead (nobody
   * could approve them) and the turn goes on.
   */
  onApprovalRequired?(required: ApprovalRequired): void;
  onEnd(end: TurnEnd): void;
  /** A failed turn: `err.code` is `upstream_error` or `internal` (safe message), or `conflict`/`not_found` when the agent stopped or vanished. */
  onError(err: SentinelError): void;
  /**
   * Writes the listener wants committed with the turn's first writes (the user message): called
   * when they are issued, in the same turn of the event loop, so the Store commits them in one
   * group commit. The turn does not wait for a failure of these. Optional.
   */
  beforeStart?(): Promise<unknown> | undefined;
  /**
   * Writes the listener wants committed with the turn's end (a run's status and terminal frame):
   * called with what the terminal callback will carry, as the turn's end writes are issued; the
   * terminal callback waits for them. Not called for a turn that ends without running (cancelled
   * while queued). Optional.
   */
  beforeEnd?(end: TurnEnd | SentinelError): Promise<unknown> | undefined;
}

/** What `AgentRuntime.submit` answers: the turn was queued, or why not. */
export type SubmitResult = { accepted: true; responseId: string } | { accepted: false; error: SentinelError };

/** A direct tool request (a client's `tool_request`). */
export interface ToolRequest {
  tool: string;
  parameters: Record<string, unknown>;
  /** The client's request id, for the journal. Default none. */
  requestId?: string;
}

/** What {@link Turn.abortedPromise} resolves to. */
export const ABORTED = Symbol('aborted');

const ZERO_USAGE: TurnUsage = Object.freeze({ input_tokens: 0, output_tokens: 0, total_tokens: 0 });

/** A queued or running turn. */
export interface Turn {
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
  /** Set when the turn starts running: resolves once it ended (never rejects). */
  settled?: Promise<void>;
  /**
   * The trace context the message arrived in (the turn's span is its child, however late it
   * runs); once the turn runs, its `sentinel.turn` span's, which its provider, tool and store
   * calls take as their parent explicitly (no async context tracking needed).
   */
  traceContext: Context | undefined;
}

/** A new, not yet started turn of `agentId`. */
export function newTurn(agentId: string, request: TurnRequest, listener: TurnListener): Turn {
  const controller = new AbortController();
  return {
    agentId,
    request,
    responseId: request.responseId ?? newResponseId(),
    listener,
    controller,
    abortedPromise: new Promise((resolve) => controller.signal.addEventListener('abort', () => resolve(ABORTED), { once: true })),
    done: false,
    traceContext: captureTraceContext(),
  };
}

/** Aborts `turn` for `reason` (the first reason wins). */
export function abortTurn(turn: Turn, reason: TurnAbortReason): void {
  if (turn.controller.signal.aborted) return;
  turn.abortReason = reason;
  turn.controller.abort(new SentinelError('unavailable', `turn ${reason}`));
}

/** Calls `turn`'s listener; a throw is logged, never passed on. */
export function notify(turn: Turn, logger: Logger, call: (listener: TurnListener) => void): void {
  try {
    call(turn.listener);
  } catch (err) {
    logger.error('turn listener failed', { agent_id: turn.agentId, error: err instanceof Error ? err.message : String(err) });
  }
}

/** Delivers the one terminal callback of a turn (later calls do nothing). */
export function terminal(turn: Turn, logger: Logger, call: (listener: TurnListener) => void): void {
  if (turn.done) return;
  turn.done = true;
  notify(turn, logger, call);
}

/** Ends a turn that never started (or never got past its checks): `onEnd` with nothing said. */
export function endUnstarted(turn: Turn, reason: TurnAbortReason, logger: Logger): void {
  turn.abortReason ??= reason;
  terminal(turn, logger, (l) => l.onEnd({ content: '', reason, usage: { ...ZERO_USAGE } }));
}

/** Turns what a turn threw into the error the client sees, logging the original. */
export function publicFailure(turn: Turn, err: unknown, logger: Logger): SentinelError {
  if (isSentinelError(err) && err.code !== 'internal') return err;
  const cause = isSentinelError(err) ? (err.cause ?? err) : err;
  logger.error('agent turn failed', {
    agent_id: turn.agentId,
    message_id: turn.request.messageId,
    error: cause instanceof Error ? cause.message : String(cause),
  });
  return new SentinelError('internal', 'the agent failed to answer; see the server log', { cause: err });
}
