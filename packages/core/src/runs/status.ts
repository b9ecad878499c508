/**
 * How a turn's end becomes a run's status (docs/ARCHITECTURE.md#runs): the one table every
 * part that ends a run uses, so a run that streamed `stream_end` reason `shutdown` is `failed`
 * / `interrupted` wherever it is read.
 */
import type { SentinelError } from '../contract/errors.js';
import type { AnswerEndReason } from '../protocol/frames.js';
import type { RunPatch, RunRecord, RunStatus } from './types.js';

/** True for completed, cancelled and failed. */
export function isTerminalStatus(status: RunStatus): boolean {
  return status === 'completed' || status === 'cancelled' || status === 'failed';
}

/** True while a turn works on it (queued or running, on some instance). */
export function isActiveStatus(status: RunStatus): boolean {
  return status === 'queued' || status === 'running';
}

/** The message of a run failed because its server went away. */
export const INTERRUPTED_MESSAGE = 'the server stopped before the run ended';

/** The terminal patch of a run whose turn ended with `stream_end` for `reason`. */
export function endedPatch(reason: AnswerEndReason, content: string, usage: RunRecord['usage'], endedAt: string): RunPatch {
  const output = { content, reason };
  switch (reason) {
    case 'stop':
    case 'length':
    case 'tool_rounds':
      return { status: 'completed', output, usage, ended_at: endedAt };
    case 'cancelled':
    case 'stopped':
    case 'deleted':
      return { status: 'cancelled', output, usage, ended_at: endedAt };
    case 'shutdown':
      return { status: 'failed', output, usage, ended_at: endedAt, error: { code: 'interrupted', message: INTERRUPTED_MESSAGE } };
    case 'error':
      // The provider cut the answer (a content filter): what it said is kept, the run did not complete.
      return { status: 'failed', output, usage, ended_at: endedAt, error: { code: 'upstream_error', message: 'the model provider stopped the answer' } };
  }
}

/** The terminal patch of a run whose turn ended with an `error` frame. */
export function failedPatch(err: SentinelError, content: string, usage: RunRecord['usage'], endedAt: string): RunPatch {
  return { status: 'failed', output: { content, reason: 'error' }, usage, ended_at: endedAt, error: { code: err.code, message: err.message } };
}

/** The event name of a transition to `status` for {@link RunService.onTransition}, or undefined (queued, running). */
export function transitionOf(status: RunStatus): 'completed' | 'failed' | 'cancelled' | 'requires_action' | undefined {
  return status === 'queued' || status === 'running' ? undefined : status;
}
