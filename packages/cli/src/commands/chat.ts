/**
 * `sentinel chat` (and `sentinel run` without -d): a chat session over the agent's chat
 * WebSocket. On a terminal it is interactive: the answer streams as it arrives, Ctrl-C cancels
 * the running turn, a second Ctrl-C (or one at the prompt) exits. From a pipe each input line is
 * one message, sent after the previous answer ended, and the command exits after the last
 * answer at EOF (0, or 1 when a turn failed).
 */
import { createInterface } from 'node:readline';
import { SentinelApiError } from '@sentinel/api-client';
import { paint, type Context } from './context.js';

type Frame = Record<string, unknown> & { type: string; message_id?: string };

const TERMINAL = new Set(['stream_end', 'response', 'error']);

/** One WebSocket to the agent's chat endpoint; `send` resolves with the message's terminal frame. */
class ChatSocket {
  readonly #ws;
  readonly #listeners = new Map<string, (frame: Frame) => void>();
  #closed: SentinelApiError | undefined;
  #counter = 0;
  readonly opened: Promise<Frame>;
  readonly closed: Promise<void>;

  constructor(ctx: Context, agentId: string) {
    const WebSocket = ctx.client.transport.WebSocket;
    if (WebSocket === undefined) throw new Error('no WebSocket implementation');
    this.#ws = new WebSocket(ctx.client.transport.wsUrl(`/v1/agents/${encodeURIComponent(agentId)}/chat`), ctx.client.transport.protocols());
    let resolveOpen: (frame: Frame) => void;
    let rejectOpen: (err: Error) => void;
    this.opened = new Promise((resolve, reject) => {
      resolveOpen = resolve;
      rejectOpen = reject;
    });
    let resolveClosed: () => void;
    this.closed = new Promise((resolve) => (resolveClosed = resolve));
    this.#ws.addEventListener('message', (event) => {
      const frame = JSON.parse(String(event.data)) as Frame;
      if (frame.type === 'event' && frame.event_type === 'connection_established') resolveOpen(frame);
      const id = frame.message_id;
      if (id !== undefined) this.#listeners.get(id)?.(frame);
    });
    this.#ws.addEventListener('error', () => undefined);
    this.#ws.addEventListener('close', (event) => {
      this.#closed = new SentinelApiError({ status: 0, code: 'connection_lost', message: `the chat connection closed (${event.code}${event.reason ? ` ${event.reason}` : ''})` });
      rejectOpen(this.#closed);
      for (const listener of [...this.#listeners.values()]) listener({ type: 'closed' });
      resolveClosed();
    });
  }

  /** Sends one message; `onFrame` sees each of its frames; resolves with its terminal frame. */
  send(content: string, onFrame: (frame: Frame) => void): { messageId: string; done: Promise<Frame> } {
    const messageId = `cli-${process.pid}-${++this.#counter}`;
    const done = new Promise<Frame>((resolve, reject) => {
      if (this.#closed) return reject(this.#closed);
      this.#listeners.set(messageId, (frame) => {
        if (frame.type === 'closed') {
          this.#listeners.delete(messageId);
          reject(this.#closed);
          return;
        }
        onFrame(frame);
        if (TERMINAL.has(frame.type)) {
          this.#listeners.delete(messageId);
          resolve(frame);
        }
      });
      this.#ws.send(JSON.stringify({ type: 'message', content, message_id: messageId }));
    });
    return { messageId, done };
  }

  cancel(messageId: string): void {
    if (!this.#closed) this.#ws.send(JSON.stringify({ type: 'cancel', message_id: messageId }));
  }

  close(): void {
    this.#ws.close(1000);
  }
}

/** Prints a turn's frames as they come: chunks as text, tool calls dimmed (terminal only). */
function printer(ctx: Context): (frame: Frame) => void {
  return (frame) => {
    if (frame.type === 'stream_chunk') ctx.term.out.write(String(frame.content));
    else if (frame.type === 'response') ctx.term.out.write(String(frame.content));
    else if (frame.type === 'event' && frame.event_type === 'tool_call' && ctx.term.tty) {
      const data = frame.data as { tool?: string; parameters?: unknown };
      ctx.term.out.write(paint(ctx.term, 'dim', `[${data.tool} ${JSON.stringify(data.parameters ?? {})}]`) + '\n');
    }
  };
}

/** Ends a turn's output line; an error frame goes to stderr as `message (code)`. Returns false for a failed turn. */
function finish(ctx: Context, frame: Frame): boolean {
  if (frame.type === 'error') {
    ctx.term.err.write(`${paint(ctx.term, 'red', 'error')}: ${String(frame.error)} (${String(frame.code)})\n`);
    return false;
  }
  if (frame.reason === 'cancelled') ctx.term.out.write(`${paint(ctx.term, 'yellow', ' [cancelled]')}\n`);
  else if (frame.reason !== undefined && frame.reason !== 'stop') ctx.term.out.write(`${paint(ctx.term, 'yellow', ` [${String(frame.reason)}]`)}\n`);
  else ctx.term.out.write('\n');
  return true;
}

/** Runs a chat with the agent (already resolved to its id); resolves with the exit code. */
export async function chat(ctx: Context, agentId: string): Promise<number> {
  const socket = new ChatSocket(ctx, agentId);
  const hello = await socket.opened;
  try {
    if (process.stdin.isTTY === true) return await interactive(ctx, socket, hello);
    return await piped(ctx, socket);
  } finally {
    socket.close();
  }
}

async function piped(ctx: Context, socket: ChatSocket): Promise<number> {
  const rl = createInterface({ input: process.stdin, terminal: false });
  let failed = false;
  for await (const line of rl) {
    if (line.trim() === '') continue;
    const { done } = socket.send(line, printer(ctx));
    if (!finish(ctx, await done)) failed = true;
  }
  return failed ? 1 : 0;
}

function interactive(ctx: Context, socket: ChatSocket, hello: Frame): Promise<number> {
  const data = (hello.data ?? {}) as { agent_name?: string; status?: string };
  ctx.term.err.write(paint(ctx.term, 'dim', `Connected to ${data.agent_name ?? 'the agent'} (${data.status ?? 'unknown'}). Ctrl-C cancels an answer; Ctrl-C at the prompt exits.`) + '\n');
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true, prompt: paint(ctx.term, 'cyan', '> ') });
  return new Promise((resolve, reject) => {
    let turn: { messageId: string; cancelling: boolean } | undefined;
    const waiting: string[] = [];
    const exit = (code: number): void => {
      rl.close();
      resolve(code);
    };
    const next = (): void => {
      const line = waiting.shift();
      if (line === undefined) {
        rl.prompt();
        return;
      }
      const { messageId, done } = socket.send(line, printer(ctx));
      turn = { messageId, cancelling: false };
      done.then(
        (frame) => {
          turn = undefined;
          finish(ctx, frame);
          next();
        },
        (err: unknown) => {
          rl.close();
          reject(err);
        },
      );
    };
    rl.on('line', (line) => {
      if (line.trim() === '') {
        if (turn === undefined) rl.prompt();
        return;
      }
      waiting.push(line);
      if (turn === undefined) next();
    });
    rl.on('SIGINT', () => {
      if (turn === undefined || turn.cancelling) {
        ctx.term.out.write('\n');
        exit(0);
        return;
      }
      turn.cancelling = true;
      waiting.length = 0;
      socket.cancel(turn.messageId);
    });
    rl.on('close', () => resolve(0));
    socket.closed.then(() => {
      if (turn === undefined) {
        ctx.term.err.write('\nthe server closed the chat\n');
        exit(1);
      }
    }, () => undefined);
    rl.prompt();
  });
}
