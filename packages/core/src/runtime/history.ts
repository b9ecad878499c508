/**
 * The conversation sent to the model: the stored history, newest first until a budget is
 * reached. Messages are dropped whole and oldest first; an assistant message that called
 * tools and the tool messages answering it go or stay together (providers reject a tool call
 * without its result, and a result without its call).
 */
import type { MessageRecord } from '../models.js';
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
 * Groups messages into units that must not be split: an assistant message with tool calls plus
 * the tool messages that follow it; any other message alone. A tool message with no call
 * before it (its call fell outside the loaded window) is dropped.
 */
function unitsOf(messages: readonly MessageRecord[]): MessageRecord[][] {
  const units: MessageRecord[][] = [];
  let open: MessageRecord[] | undefined;
  for (const message of messages) {
    if (message.role === 'tool') {
      if (open) open.push(message);
      continue;
    }
    const unit = [message];
    units.push(unit);
    open = message.role === 'assistant' && message.tool_calls && message.tool_calls.length > 0 ? unit : undefined;
  }
  return units;
}

/**
 * The newest messages of `messages` (oldest first) that fit `budget`, cut at unit boundaries.
 * The newest unit is always kept, even over budget: it holds the message being answered.
 * The selection then starts at a user message when it has one (several providers require it).
 */
export function selectHistory(messages: readonly MessageRecord[], budget: HistoryBudget): MessageRecord[] {
  const units = unitsOf(messages);
  const kept: MessageRecord[][] = [];
  let count = 0;
  let chars = 0;
  for (let i = units.length - 1; i >= 0; i--) {
    const unit = units[i] ?? [];
    const unitChars = unit.reduce((sum, m) => sum + sizeOf(m), 0);
    if (kept.length > 0 && (count + unit.length > budget.maxMessages || chars + unitChars > budget.maxChars)) break;
    kept.push(unit);
    count += unit.length;
    chars += unitChars;
  }
  const selected = kept.reverse().flat();
  const firstUser = selected.findIndex((m) => m.role === 'user');
  return firstUser > 0 ? selected.slice(firstUser) : selected;
}

/** A stored message as the provider interface carries it. */
export function toChatMessage(message: Pick<MessageRecord, 'role' | 'content' | 'tool_calls' | 'tool_call_id' | 'tool_name'>): ChatMessage {
  const out: ChatMessage = { role: message.role, content: message.content };
  if (message.tool_calls && message.tool_calls.length > 0) out.tool_calls = message.tool_calls;
  if (message.tool_call_id !== undefined) out.tool_call_id = message.tool_call_id;
  if (message.tool_name !== undefined) out.name = message.tool_name;
  return out;
}
