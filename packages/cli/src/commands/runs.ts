/**
 * `sentinel runs ls|inspect|cancel|approve AGENT [RUN]`: an agent's runs (its turns as resources,
 * README "Runs") over `client.runs`. `approve` decides a tool call a run waits for: the run's one
 * pending request unless REQUEST names it, approved, or refused with --deny (and --reason).
 */
import type { Command } from 'commander';
import { SentinelApiError, type Run, type RunStatus } from '@sentinel/api-client';
import { UsageError } from '../errors.js';
import { describeApproval } from './chat.js';
import type { Context } from './context.js';
import { ago, json, table } from './format.js';

const STATUSES: readonly RunStatus[] = ['queued', 'running', 'requires_action', 'completed', 'cancelled', 'failed'];

function statusOf(value: string): RunStatus {
  if (!(STATUSES as readonly string[]).includes(value)) throw new UsageError(`--status must be one of ${STATUSES.join(', ')}, not "${value}"`);
  return value as RunStatus;
}

function limitOf(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1000) throw new UsageError(`--limit must be an integer from 1 to 1000, not "${value}"`);
  return Number(value);
}

function formatOf(value: string): 'table' | 'json' {
  if (value !== 'table' && value !== 'json') throw new UsageError(`--format must be table or json, not "${value}"`);
  return value;
}

/** The first line of a message, cut to fit a table cell. */
function preview(text: string, max = 40): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** A run's requests not decided yet. */
export function pendingRequests(run: Run): { request_id: string; tool: string; parameters: Record<string, unknown> }[] {
  const action = run.required_action;
  if (run.status !== 'requires_action' || action === null) return [];
  return action.requests.filter((request) => action.decisions[request.request_id] === undefined);
}

/** Adds `sentinel runs` and its subcommands to the program. */
export function addRunsCommand(program: Command, ctxOf: (command: Command) => Context): void {
  const runs = program.command('runs').description("An agent's runs (its turns): ls, inspect, cancel, approve");
  // The agent may be a name or a prefix: the runs routes take its id.
  const agentIdOf = async (ctx: Context, ref: string): Promise<string> => (await ctx.client.agents.get(ref)).id;

  runs
    .command('ls')
    .description("List an agent's runs, newest first")
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .option('--status <status>', `only runs in this status (${STATUSES.join(', ')})`, statusOf)
    .option('-n, --limit <n>', 'at most n runs (default 20)', limitOf)
    .option('-q, --quiet', 'only the ids')
    .option('--format <format>', 'table or json (the API objects)', formatOf, 'table' as const)
    .action(async (ref: string, options: { status?: RunStatus; limit?: number; quiet?: boolean; format: 'table' | 'json' }, command: Command) => {
      const ctx = ctxOf(command);
      const agentId = await agentIdOf(ctx, ref);
      const limit = options.limit ?? 20;
      const found: Run[] = [];
      for await (const run of ctx.client.runs.list(agentId, { ...(options.status ? { status: options.status } : {}), limit: Math.min(limit, 100) })) {
        found.push(run);
        if (found.length >= limit) break;
      }
      if (options.quiet) ctx.term.out.write(found.map((r) => `${r.id}\n`).join(''));
      else if (options.format === 'json') ctx.term.out.write(json(found));
      else
        ctx.term.out.write(
          table(ctx.term, ['RUN ID', 'STATUS', 'CREATED', 'TOKENS', 'INPUT'], found.map((r) => [r.id, r.status, ago(r.created_at), String(r.usage.total_tokens), preview(r.input.content)])),
        );
    });

  runs
    .command('inspect')
    .description('Show runs as JSON (the API objects)')
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .argument('<run...>', 'run ids')
    .action(async (ref: string, ids: string[], _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      const agentId = await agentIdOf(ctx, ref);
      const found: Run[] = [];
      for (const id of ids) found.push(await ctx.client.runs.get(agentId, id));
      ctx.term.out.write(json(found));
    });

  runs
    .command('cancel')
    .description('Cancel runs (queued, running or waiting for approval); prints each id and its status')
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .argument('<run...>', 'run ids')
    .action(async (ref: string, ids: string[], _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      const agentId = await agentIdOf(ctx, ref);
      for (const id of ids) {
        const run = await ctx.client.runs.cancel(agentId, id);
        ctx.term.out.write(`${run.id} ${run.status}\n`);
      }
    });

  runs
    .command('approve')
    .description("Decide a tool call a run waits for (its only pending request unless REQUEST is given); --deny refuses it")
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .argument('<run>', 'the run id')
    .argument('[request]', 'the request_id (default: the run’s only pending request)')
    .option('--deny', 'refuse the call (the model is told so)')
    .option('--reason <text>', 'why (shown to the model with a refusal)')
    .action(async (ref: string, runId: string, requestId: string | undefined, options: { deny?: boolean; reason?: string }, command: Command) => {
      const ctx = ctxOf(command);
      const agentId = await agentIdOf(ctx, ref);
      let request = requestId;
      if (request === undefined) {
        const run = await ctx.client.runs.get(agentId, runId);
        const pending = pendingRequests(run);
        if (pending.length === 0) throw new SentinelApiError({ status: 409, code: 'conflict', message: `run ${runId} waits for no decision (status ${run.status})` });
        if (pending.length > 1) throw new UsageError(`run ${runId} waits for ${pending.length} decisions; name one: ${pending.map((p) => `${p.request_id} (${describeApproval(p)})`).join(', ')}`);
        request = (pending[0] as { request_id: string }).request_id;
      }
      const run = await ctx.client.runs.approve(agentId, runId, { request_id: request, approve: options.deny !== true, ...(options.reason === undefined ? {} : { reason: options.reason }) });
      ctx.term.out.write(`${run.id} ${options.deny === true ? 'refused' : 'approved'} ${request}: ${run.status}\n`);
    });

}
