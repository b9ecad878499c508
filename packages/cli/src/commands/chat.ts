/**
 * `sentinel chat` (and `sentinel run` without -d): a chat session of the SDK (`client.chat`). On
 * a terminal it is interactive: the answer streams as it arrives, Ctrl-C cancels the running
 * turn, a second Ctrl-C (or one at the prompt) exits. From a pipe each input line is one
 * message, sent after the previous answer ended, and the command exits after the last answer at
 * EOF (0, or 1 when a turn failed).
 */
import { createInterface } from 'node:readline';
import type { ChatSession, ServerFrame } from '@sentinel/api-client';
import { paint, type Context } from './context.js';

/** Prints a turn's frames as they come: chunks as text, tool calls dimmed (terminal only). */
function print(ctx: Context, frame: ServerFrame): void {
  if (frame.type === 'stream_chunk' || frame.type === 'response') ctx.term.out.write(frame.content);
  else if (frame.type === 'event' && frame.event_type === 'tool_call' && ctx.term.tty) {
    const data = frame.data as { tool?: string; parameters?: unknown };
    ctx.term.out.write(paint(ctx.term, 'dim', `[${data.tool} ${JSON.stringify(data.parameters ?? {})}]`) + '\n');
  }
}

/** Ends a turn's output line; an error frame goes to stderr as `message (code)`. Returns false for a failed turn. */
function finish(ctx: Context, frame: ServerFrame | undefined): boolean {
  if (frame?.type === 'error') {
    ctx.term.err.write(`${paint(ctx.term, 'red', 'error')}: ${frame.error} (${frame.code})\n`);
    return false;
  }
  const reason = frame !== undefined && 'reason' in frame ? String(frame.reason) : 'stop';
  if (reason !== 'stop') ctx.term.out.write(paint(ctx.term, 'yellow', ` [${reason}]`));
  ctx.term.out.write('\n');
  return true;
}

/** One turn: its frames printed, resolving with its terminal frame. */
async function turn(ctx: Context, session: ChatSession, content: string, messageId: string): Promise<ServerFrame | undefined> {
  let last: ServerFrame | undefined;
  for await (const frame of session.send(content, { messageId })) {
    print(ctx, frame);
    last = frame;
  }
  return last;
}

/** Runs a chat with the agent (already resolved to its id); resolves with the exit code. */
export async function chat(ctx: Context, agentId: string): Promise<number> {
  let greeted: (data: { agent_name?: string; status?: string }) => void = () => undefined;
  const greeting = new Promise<{ agent_name?: string; status?: string }>((resolve) => (greeted = resolve));
  const session = ctx.client.chat(agentId, {
    onFrame: (frame) => {
      if (frame.type === 'event' && frame.event_type === 'connection_established') greeted((frame.data ?? {}) as { agent_name?: string; status?: string });
    },
  });
  try {
    await session.ready();
    // The server greets first thing on a new socket; the banner waits for it (briefly).
    let timer: NodeJS.Timeout | undefined;
    const hello = await Promise.race([greeting, new Promise<{ agent_name?: string; status?: string }>((resolve) => (timer = setTimeout(() => resolve({}), 3_000)))]);
    clearTimeout(timer);
    if (process.stdin.isTTY === true) return await interactive(ctx, session, hello);
    return await piped(ctx, session);
  } finally {
    session.close();
  }
}

let counter = 0;
/** Message ids that say where they came from (they show in the agent's logs). */
function nextId(): string {
  return `cli-${process.pid}-${++counter}`;
}

async function piped(ctx: Context, session: ChatSession): Promise<number> {
  const rl = createInterface({ input: process.stdin, terminal: false });
  let failed = false;
  for await (const line of rl) {
    if (line.trim() === '') continue;
    if (!finish(ctx, await turn(ctx, session, line, nextId()))) failed = true;
  }
  return failed ? 1 : 0;
}

function interactive(ctx: Context, session: ChatSession, hello: { agent_name?: string; status?: string }): Promise<number> {
  ctx.term.err.write(paint(ctx.term, 'dim', `Connected to ${hello.agent_name ?? 'the agent'} (${hello.status ?? 'unknown'}). Ctrl-C cancels an answer; Ctrl-C at the prompt exits.`) + '\n');
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: true, prompt: paint(ctx.term, 'cyan', '> ') });
  return new Promise((resolve, reject) => {
    let running: { messageId: string; cancelling: boolean } | undefined;
    const waiting: string[] = [];
    let done = false;
    const exit = (code: number): void => {
      done = true;
      rl.close();
      resolve(code);
    };
    const next = (): void => {
      const line = waiting.shift();
      if (line === undefined) {
        rl.prompt();
        return;
      }
      const messageId = nextId();
      running = { messageId, cancelling: false };
      turn(ctx, session, line, messageId).then(
        (frame) => {
          running = undefined;
          finish(ctx, frame);
          if (!done) next();
        },
        (err: unknown) => {
          done = true;
          rl.close();
          reject(err);
        },
      );
    };
    rl.on('line', (line) => {
      if (line.trim() === '') {
        if (running === undefined) rl.prompt();
        return;
      }
      waiting.push(line);
      if (running === undefined) next();
    });
    // Terminal mode: Ctrl-C reaches readline as a keypress, not as a process signal.
    rl.on('SIGINT', () => {
      if (running === undefined || running.cancelling) {
        ctx.term.out.write('\n');
        exit(0);
        return;
      }
      running.cancelling = true;
      waiting.length = 0;
      session.cancel(running.messageId);
    });
    rl.on('close', () => {
      if (!done) exit(0);
    });
    void session.closed().then((reason) => {
      if (!done && reason.code !== 'session_closed') reject(reason);
    });
    rl.prompt();
  });
}
