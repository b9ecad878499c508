/**
 * The conversation sent to the model: the stored history, newest first until a budget is
 * reached. Messages are dropped whole and oldest first; an assistant message that called
 * tools and the tool messages answering it go or stay together (providers reject a tool call
 * without its result, and a result without its call).
 */
import type { MessageRecord } from '../contract/models.js';
import type { ChatMessage } from '../providers/types.js';

export interface HistoryBudget {
  /** Most messages sent. */
  maxMessages: number;
  /** Most characters sent (message contents plus tool-call arguments). */
  maxChars: number;
}

function sizeOf(message: MessageRecord): number {
  let size = message.content.length;
  if (message.tool_calls) for (const call of message.tool_calls) size += call.name.length + JSON.stringify(call.arguments).length;
  return size;
}

/**
 * The newest messages of `messages` (oldest first) that fit `budget`, cut at unit boundaries.
 * A unit is what must not be split: an assistant message with tool calls plus the tool
 * messages that follow it; any other message alone. A tool message with no call before it (its
 * call fell outside the loaded window) is dropped. The newest unit is always kept, even over
 * budget: it holds the message being answered. The selection then starts at a user message
 * when it has one (several providers require it).
 *
 * Units are index ranges rather than arrays: this runs on every turn over up to 100 messages
 * (measured: 6% of a turn's CPU with one array per unit).
 */
export function selectHistory(messages: readonly MessageRecord[], budget: HistoryBudget): MessageRecord[] {
  // [starts[u], ends[u]) is unit u; a tool message can only extend the last unit.
  const starts: number[] = [];
  const ends: number[] = [];
  let lastUnitTakesTools = false;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i] as MessageRecord;
    if (message.role === 'tool') {
      if (lastUnitTakesTools) ends[ends.length - 1] = i + 1;
      continue;
    }
    starts.push(i);
    ends.push(i + 1);
    lastUnitTakesTools = message.role === 'assistant' && message.tool_calls !== undefined && message.tool_calls.length > 0;
  }

  const units = starts.length;
  let first = units;
  let count = 0;
  let chars = 0;
  for (let u = units - 1; u >= 0; u--) {
    const start = starts[u] as number;
    const end = ends[u] as number;
    let unitChars = 0;
    for (let i = start; i < end; i++) unitChars += sizeOf(messages[i] as MessageRecord);
    if (first < units && (count + end - start > budget.maxMessages || chars + unitChars > budget.maxChars)) break;
    first = u;
    count += end - start;
    chars += unitChars;
  }

  // Every user message starts a unit: begin at the first kept one, if any.
  let from = first;
  while (from < units && (messages[starts[from] as number] as MessageRecord).role !== 'user') from++;
  if (from === units) from = first;
  const selected: MessageRecord[] = [];
  for (let u = from; u < units; u++) {
    for (let i = starts[u] as number; i < (ends[u] as number); i++) selected.push(messages[i] as MessageRecord);
  }
  return selected;
}

/**
 * `messages` without the user messages that never got an answer: a turn that failed (provider
 * down, error mid-stream) or was cancelled before any text leaves its user message stored with
 * nothing after it, and the next turn would send two user messages in a row, which some
 * providers reject and others (Ollama) pass to the model as two requests. Such a message is
 * left out of what the provider sees; it stays in the stored history (the `error` event says
 * what happened to it). Returns `messages` itself when nothing is left out (the usual case).
 */
export function withoutUnanswered(messages: readonly MessageRecord[]): readonly MessageRecord[] {
  let unanswered = 0;
  for (let i = 1; i < messages.length; i++) {
    if ((messages[i] as MessageRecord).role === 'user' && (messages[i - 1] as MessageRecord).role === 'user') unanswered++;
  }
  if (unanswered === 0) return messages;
  return messages.filter((message, i) => !(message.role === 'user' && messages[i + 1]?.role === 'user'));
}

/** A stored message as the provider interface carries it. */
export function toChatMessage(message: Pick<MessageRecord, 'role' | 'content' | 'tool_calls' | 'tool_call_id' | 'tool_name'>): ChatMessage {
  const out: ChatMessage = { role: message.role, content: message.content };
  if (message.tool_calls && message.tool_calls.length > 0) out.tool_calls = message.tool_calls;
  if (message.tool_call_id !== undefined) out.tool_call_id = message.tool_call_id;
  if (message.tool_name !== undefined) out.name = message.tool_name;
  return out;
}
