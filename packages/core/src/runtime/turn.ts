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
