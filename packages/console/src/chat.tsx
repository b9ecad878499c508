/**
 * The chat with one agent over the SDK's ChatSession (subprotocol auth: the token travels in the
 * WebSocket's protocol header, never in the URL). The answer grows chunk by chunk into the last
 * assistant message (data-testid="answer"); "Stop" cancels the running turn. The conversation is
 * kept per agent in sessionStorage, because the stored events carry no message text
 * (message_received/message_processed hold only ids), so the history shown when a chat is
 * reopened is this tab's own record.
 *
 * A tool call that needs a person (`tool_approval_required`) shows in the conversation with
 * Approve and Deny buttons (a reason may go with a refusal); the decision goes over the session
 * and the answer goes on in the same message. A dropped socket does not lose the answer: the
 * SDK resumes the turn's run after it reconnects.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Agent, ChatSession, SentinelClient, ServerFrame } from '@sentinel/api-client/browser';
import { frameError } from '@sentinel/api-client/browser';
import { readStorage, removeStorage, writeStorage } from './api.js';
import type { ReportError } from './app.js';

type Kind = 'user' | 'assistant' | 'tool-call' | 'tool-result' | 'note' | 'approval';

/** Where an approval request is: waiting for a click, being sent, decided, or dropped. */
type Decision = 'pending' | 'sending' | 'approved' | 'denied' | 'failed';

interface Entry {
  kind: Kind;
  text: string;
  /** Approval entries: the request and its tool. */
  requestId?: string;
  tool?: string;
  decision?: Decision;
}

/** The most entries kept per agent (older ones drop off the top). */
const MAX_ENTRIES = 200;

function historyKey(agentId: string): string {
  return `sentinel.console.chat.${agentId}`;
}

/** Drops an agent's kept conversation (the agent was deleted). */
export function forgetHistory(agentId: string): void {
  removeStorage(historyKey(agentId));
}

function loadHistory(agentId: string): Entry[] {
  const raw = readStorage(historyKey(agentId));
  if (!raw) return [];
  try {
    const parsed = JSON.parse(raw) as unknown;
    return Array.isArray(parsed) ? (parsed as Entry[]) : [];
  } catch {
    return [];
  }
}

function show(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function Chat({ client, agent, report }: { client: SentinelClient; agent: Agent; report: ReportError }) {
  const [entries, setEntries] = useState<Entry[]>(() => loadHistory(agent.id));
  const [message, setMessage] = useState('');
  const [running, setRunning] = useState<string | undefined>(undefined);
  const session = useRef<ChatSession | undefined>(undefined);
  const log = useRef<HTMLOListElement>(null);
  const box = useRef<HTMLTextAreaElement>(null);

  // A chat that opens (after "Create" or picking an agent) takes the focus, for keyboard users.
  useEffect(() => box.current?.focus(), [agent.id]);

  useEffect(() => {
    const chat = client.chat(agent.id, { auth: 'subprotocol' });
    session.current = chat;
    void chat.closed().then((why) => {
      if (session.current === chat && why.code !== 'session_closed') report(why);
    });
    return () => {
      session.current = undefined;
      // Closing a socket that is still connecting makes Chrome log a console warning, so the
      // session closes once its socket is open (or has failed), 5 s at the latest.
      const timer = setTimeout(() => chat.close(), 5000);
      chat
        .ready()
        .catch(() => undefined)
        .finally(() => {
          clearTimeout(timer);
          chat.close();
        });
    };
  }, [agent.id]);

  useEffect(() => {
    writeStorage(historyKey(agent.id), JSON.stringify(entries.slice(-MAX_ENTRIES)));
    const el = log.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [entries]);

  /** Appends to the answer being streamed (the last assistant entry). */
  const grow = (text: string, replace = false) =>
    setEntries((old) => {
      const next = [...old];
      for (let i = next.length - 1; i >= 0; i--) {
        const entry = next[i];
        if (entry?.kind === 'assistant') {
          next[i] = { kind: 'assistant', text: replace ? text : entry.text + text };
          break;
        }
      }
      return next;
    });

  const setDecision = (requestId: string, decision: Decision) =>
    setEntries((old) => old.map((entry) => (entry.kind === 'approval' && entry.requestId === requestId ? { ...entry, decision } : entry)));

  const decide = async (requestId: string, approve: boolean, reason?: string) => {
    const chat = session.current;
    if (!chat) return;
    setDecision(requestId, 'sending');
    try {
      await chat.approve(requestId, approve, reason);
      setDecision(requestId, approve ? 'approved' : 'denied');
    } catch (err) {
      setDecision(requestId, 'failed');
      report(err);
    }
  };

  /** Tool steps go above the answer they lead to, so the answer stays the last message. */
  const add = (entry: Entry) =>
    setEntries((old) => {
      const at = old.map((e) => e.kind).lastIndexOf('assistant');
      return entry.kind === 'note' || at === -1 ? [...old, entry] : [...old.slice(0, at), entry, ...old.slice(at)];
    });

  const send = async () => {
    const chat = session.current;
    const content = message.trim();
    if (!chat || !content || running) return;
    setMessage('');
    setEntries((old) => [...old, { kind: 'user', text: content }, { kind: 'assistant', text: '' }]);
    const turn = chat.send(content);
    setRunning(turn.messageId);
    try {
      for await (const frame of turn) handle(frame);
    } catch (err) {
      report(err);
    } finally {
      setRunning(undefined);
      // A request the run no longer waits for (it ended: cancelled, expired) cannot be decided.
      setEntries((old) => old.map((entry) => (entry.kind === 'approval' && (entry.decision === 'pending' || entry.decision === 'sending') ? { ...entry, decision: 'failed' } : entry)));
    }
  };

  const handle = (frame: ServerFrame) => {
    switch (frame.type) {
      case 'stream_chunk':
        grow(frame.content);
        break;
      case 'stream_end':
      case 'response':
        grow(frame.content, true);
        if ('reason' in frame && frame.reason && frame.reason !== 'stop') add({ kind: 'note', text: `(${frame.reason})` });
        break;
      case 'event':
        if (frame.event_type === 'tool_call') {
          const data = frame.data as { tool?: unknown; parameters?: unknown } | undefined;
          add({ kind: 'tool-call', text: `${show(data?.tool)}(${show(data?.parameters ?? {})})` });
        }
        break;
      case 'tool_approval_required':
        add({ kind: 'approval', text: `${frame.tool}(${show(frame.parameters)})`, requestId: frame.request_id, tool: frame.tool, decision: 'pending' });
        break;
      case 'tool_result':
        add({ kind: 'tool-result', text: `${frame.tool} → ${frame.status === 'success' ? show(frame.result) : `error: ${frame.error ?? ''}`}` });
        break;
      case 'error':
        report(frameError(frame));
        break;
      default:
        break;
    }
  };

  const lastAssistant = entries.map((e) => e.kind).lastIndexOf('assistant');

  return (
    <section class="card chat" aria-label={`Chat with ${agent.name}`}>
      <div class="row">
        <h2>Chat: {agent.name}</h2>
        <button type="button" class="secondary" disabled={entries.length === 0 || running !== undefined} onClick={() => setEntries([])}>
          Clear
        </button>
      </div>
      <ol class="messages" ref={log} aria-live="polite">
        {entries.map((entry, i) =>
          entry.kind === 'approval' ? (
            <Approval key={i} entry={entry} onDecide={(approve, reason) => entry.requestId && void decide(entry.requestId, approve, reason)} />
          ) : (
            <li
              key={i}
              class={`msg msg-${entry.kind}`}
              data-testid={entry.kind === 'assistant' ? (i === lastAssistant ? 'answer' : 'assistant') : entry.kind === 'tool-call' || entry.kind === 'tool-result' ? entry.kind : undefined}
            >
              {entry.text}
            </li>
          ),
        )}
      </ol>
      <form
        class="composer"
        onSubmit={(e) => {
          e.preventDefault();
          void send();
        }}
      >
        <label class="grow">
          Message
          <textarea
            name="message"
            ref={box}
            rows={2}
            value={message}
            onInput={(e) => setMessage(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && !e.shiftKey) {
                e.preventDefault();
                void send();
              }
            }}
          />
        </label>
        <div class="row">
          <button type="submit" disabled={running !== undefined}>
            Send
          </button>
          <button type="button" class="danger" disabled={running === undefined} onClick={() => running && session.current?.cancel(running)}>
            Stop
          </button>
        </div>
      </form>
    </section>
  );
}

const DECIDED: Record<Exclude<Decision, 'pending'>, string> = { sending: 'Sending…', approved: 'Approved', denied: 'Denied', failed: 'Not decided' };

/**
 * One approval request: the call, then Approve / Deny (real buttons: Tab and Enter or Space
 * work) and an optional reason for a refusal. The Approve button takes the focus when the
 * request appears, since the answer waits for it.
 */
function Approval({ entry, onDecide }: { entry: Entry; onDecide: (approve: boolean, reason?: string) => void }) {
  const [reason, setReason] = useState('');
  const approve = useRef<HTMLButtonElement>(null);
  const decision = entry.decision ?? 'failed';
  const pending = decision === 'pending';
  useEffect(() => {
    if (pending) approve.current?.focus();
  }, []);
  const id = `approval-${entry.requestId ?? ''}`;
  return (
    <li class="msg msg-approval" data-testid="approval" data-decision={entry.decision} role="group" aria-labelledby={`${id}-title`}>
      <div id={`${id}-title`}>
        <strong>Approval required:</strong> <span class="mono">{entry.text}</span>
      </div>
      {decision === 'pending' ? (
        <div class="row">
          <button type="button" ref={approve} aria-label={`Approve ${entry.tool ?? 'the tool call'}`} onClick={() => onDecide(true)}>
            Approve
          </button>
          <button type="button" class="danger" aria-label={`Deny ${entry.tool ?? 'the tool call'}`} onClick={() => onDecide(false, reason.trim() === '' ? undefined : reason.trim())}>
            Deny
          </button>
          <label class="inline grow">
            <span class="small muted">Reason</span>
            <input name="reason" aria-label={`Reason for denying ${entry.tool ?? 'the tool call'}`} value={reason} maxLength={1000} onInput={(e) => setReason(e.currentTarget.value)} />
          </label>
        </div>
      ) : (
        <div class="small muted" role="status">
          {DECIDED[decision]}
        </div>
      )}
    </li>
  );
}
