/**
 * `sentinel chat` (and `sentinel run` without -d): a chat session of the SDK (`client.chat`). On
 * a terminal it is interactive: the answer streams as it arrives, Ctrl-C cancels the running
 * turn, a second Ctrl-C (or one at the prompt) exits. From a pipe each input line is one
 * message, sent after the previous answer ended, and the command exits after the last answer at
 * EOF (0, or 1 when a turn failed).
 *
 * A tool call that needs a person's approval (`tool_approval_required`) is shown with its
 * parameters; on a terminal the command asks "Approve? [y/N]" (and, on N, why) and sends the
 * decision, and the answer goes on. Without a terminal nobody can answer: the command prints the
 * pending request, how to decide it (`sentinel runs approve`), and exits with
 * {@link EXIT_APPROVAL_PENDING}; the run waits on the server (closing the socket cancels nothing).
 */
import { createInterface, type Interface } from 'node:readline';
import type { ChatSession, ServerFrame, ToolApprovalRequiredFrame } from '@sentinel/api-client';
import { paint, type Context } from './context.js';

/** Exit code of a non-interactive chat stopped by a tool call waiting for approval. */
export const EXIT_APPROVAL_PENDING = 3;

/** Prints a turn's frames as they come: chunks as text, tool calls dimmed (terminal only). */
function print(ctx: Context, frame: ServerFrame): void {
  if (frame.type === 'stream_chunk' || frame.type === 'response') ctx.term.out.write(frame.content);
  else if (frame.type === 'event' && frame.event_type === 'tool_call' && ctx.term.tty) {
    const data = frame.data as { tool?: string; parameters?: unknown };
    ctx.term.out.write(paint(ctx.term, 'dim', `[${data.tool} ${JSON.stringify(data.parameters ?? {})}]`) + '\n');
  } else if (frame.type === 'event' && frame.event_type === 'tool_approval' && ctx.term.tty) {
    const data = (frame.data ?? {}) as { approve?: boolean; reason?: string };
    ctx.term.out.write(paint(ctx.term, 'dim', data.approve === false ? `[refused${data.reason ? `: ${data.reason}` : ''}]` : '[approved]') + '\n');
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

/** The request as a person reads it: the tool and its parameters. */
export function describeApproval(frame: Pick<ToolApprovalRequiredFrame, 'tool' | 'parameters'>): string {
  return `${frame.tool} ${JSON.stringify(frame.parameters)}`;
}

/**
 * One turn: its frames printed, resolving with its terminal frame. `onApproval` sees each
 * approval request; returning false stops reading the turn (it resolves with that request).
 */
async function turn(
  ctx: Context,
  session: ChatSession,
  content: string,
  messageId: string,
  onApproval: (frame: ToolApprovalRequiredFrame) => boolean,
): Promise<ServerFrame | undefined> {
  let last: ServerFrame | undefined;
  for await (const frame of session.send(content, { messageId })) {
    last = frame;
    if (frame.type === 'tool_approval_required') {
      if (!onApproval(frame)) break;
      continue;
    }
    print(ctx, frame);
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
    return await piped(ctx, session, agentId);
  } finally {
    session.close();
  }
}

let counter = 0;
/** Message ids that say where they came from (they show in the agent's logs). */
function nextId(): string {
  return `cli-${process.pid}-${++counter}`;
}

async function piped(ctx: Context, session: ChatSession, agentId: string): Promise<number> {
  const rl = createInterface({ input: process.stdin, terminal: false });
  let failed = false;
  try {
    for await (const line of rl) {
      if (line.trim() === '') continue;
      let waiting: ToolApprovalRequiredFrame | undefined;
      const last = await turn(ctx, session, line, nextId(), (frame) => {
        waiting = frame;
        return false;
      });
      if (waiting !== undefined) {
        ctx.term.out.write('\n');
        ctx.term.err.write(pendingMessage(agentId, waiting));
        return EXIT_APPROVAL_PENDING;
      }
      if (!finish(ctx, last)) failed = true;
    }
  } finally {
    rl.close();
  }
  return failed ? 1 : 0;
}

/** What a non-interactive chat says about a request nobody here can decide, and how to decide it. */
function pendingMessage(agentId: string, frame: ToolApprovalRequiredFrame): string {
  return (
    `sentinel chat: run ${frame.run_id} is waiting for approval of ${describeApproval(frame)} (request ${frame.request_id}, expires ${frame.expires_at}); ` +
    `stdin is not a terminal, so nobody can answer here. Decide with: sentinel runs approve ${agentId} ${frame.run_id} ${frame.request_id} [--deny --reason TEXT]\n`
  );
}

/** The questions of pending approvals, one at a time, answered by the next line typed. */
interface Question {
  frame: ToolApprovalRequiredFrame;
  stage: 'approve' | 'reason';
}

function interactive(ctx: Context, session: ChatSession, hello: { agent_name?: string; status?: string }): Promise<number> {
  ctx.term.err.write(paint(ctx.term, 'dim', `Connected to ${hello.agent_name ?? 'the agent'} (${hello.status ?? 'unknown'}). Ctrl-C cancels an answer; Ctrl-C at the prompt exits.`) + '\n');
  const mainPrompt = paint(ctx.term, 'cyan', '> ');
  const rl: Interface = createInterface({ input: process.stdin, output: process.stdout, terminal: true, prompt: mainPrompt });
  return new Promise((resolve, reject) => {
    let running: { messageId: string; cancelling: boolean } | undefined;
    const waiting: string[] = [];
    const questions: Question[] = [];
    let done = false;
    const exit = (code: number): void => {
      done = true;
      rl.close();
      resolve(code);
    };
    /** Asks the first pending question (if any): the prompt becomes the question. */
    const ask = (): void => {
      const question = questions[0];
      if (question === undefined) {
        rl.setPrompt(mainPrompt);
        return;
      }
      if (question.stage === 'approve') {
        ctx.term.out.write(`\n${paint(ctx.term, 'yellow', 'Approval required')}: ${describeApproval(question.frame)}\n`);
        rl.setPrompt(paint(ctx.term, 'bold', 'Approve? [y/N] '));
      } else rl.setPrompt('Reason (optional): ');
      rl.prompt();
    };
    const decide = (question: Question, approve: boolean, reason?: string): void => {
      questions.shift();
      session.approve(question.frame.request_id, approve, reason).then(
        () => undefined,
        (err: unknown) => ctx.term.err.write(`${paint(ctx.term, 'red', 'error')}: the decision on ${question.frame.request_id} was not taken: ${err instanceof Error ? err.message : String(err)}${(err as { code?: string }).code ? ` (${(err as { code?: string }).code})` : ''}\n`),
      );
      ask();
    };
    const answer = (question: Question, line: string): void => {
      if (question.stage === 'approve') {
        if (/^\s*y(es)?\s*$/i.test(line)) decide(question, true);
        else {
          question.stage = 'reason';
          ask();
        }
        return;
      }
      decide(question, false, line.trim() === '' ? undefined : line.trim());
    };
    const next = (): void => {
      const line = waiting.shift();
      if (line === undefined) {
        rl.prompt();
        return;
      }
      const messageId = nextId();
      running = { messageId, cancelling: false };
      turn(ctx, session, line, messageId, (frame) => {
        questions.push({ frame, stage: 'approve' });
        if (questions.length === 1) ask();
        return true;
      }).then(
        (frame) => {
          running = undefined;
          // The run ended (cancelled, expired): its questions are moot.
          questions.length = 0;
          rl.setPrompt(mainPrompt);
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
      const question = questions[0];
      if (question !== undefined) {
        answer(question, line);
        return;
      }
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
      questions.length = 0;
      rl.setPrompt(mainPrompt);
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
