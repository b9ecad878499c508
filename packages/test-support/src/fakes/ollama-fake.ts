/**
 * `/api/chat` streaming replies exactly as Ollama sends them
 * (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion): NDJSON,
 * one object per line, `done: false` lines with `message` pieces (tool calls whole, arguments
 * an object), a last `done: true` line with `done_reason` and the counts; `{"error": "…"}` lines.
 */
import type { FakeReply, ReplyStep } from './fake-server.js';

export const OLLAMA_NDJSON_HEADERS = { 'content-type': 'application/x-ndjson' };

const CREATED_AT = '2024-09-16T08:52:19.385406455Z';

function line(value: Record<string, unknown>): string {
  return `${JSON.stringify(value)}\n`;
}

export interface OllamaStreamOptions {
  model?: string;
  promptEvalCount?: number;
  evalCount?: number;
  doneReason?: string;
}

export interface OllamaScriptedCall {
  name: string;
  arguments: Record<string, unknown>;
}

/** NDJSON lines of an answer: text pieces, then optional tool calls, then the done line. */
export function ollamaLines(pieces: string[], calls: OllamaScriptedCall[] = [], options: OllamaStreamOptions = {}): string[] {
  const model = options.model ?? 'llama3.2';
  const lines = pieces.map((content) => line({ model, created_at: CREATED_AT, message: { role: 'assistant', content }, done: false }));
  if (calls.length > 0) {
    lines.push(
      line({
        model,
        created_at: CREATED_AT,
        message: { role: 'assistant', content: '', tool_calls: calls.map((c) => ({ function: { name: c.name, arguments: c.arguments } })) },
        done: false,
      }),
    );
  }
  lines.push(
    line({
      model,
      created_at: CREATED_AT,
      message: { role: 'assistant', content: '' },
      done_reason: options.doneReason ?? 'stop',
      done: true,
      total_duration: 4_883_583_458,
      load_duration: 1_334_875,
      prompt_eval_count: options.promptEvalCount ?? 26,
      prompt_eval_duration: 342_546_000,
      eval_count: options.evalCount ?? 12,
      eval_duration: 4_535_599_000,
    }),
  );
  return lines;
}

export function ollamaStream(lines: string[], delayMs = 1): FakeReply {
  return { status: 200, headers: OLLAMA_NDJSON_HEADERS, steps: lines.flatMap((l) => [{ write: l }, { delayMs }] as ReplyStep[]) };
}

/** An Ollama error: `{"error": "…"}` with a status. */
export function ollamaErrorReply(status: number, error: string): FakeReply {
  return { status, headers: { 'content-type': 'application/json; charset=utf-8' }, steps: [{ write: JSON.stringify({ error }) }] };
}
