/**
 * The Docker-style client commands (`sentinel login`, `ps`, `run`, `chat`, `logs`, `push`, …),
 * each a thin layer over the SDK, parsed by commander. Exit codes: 0 success, 1 an API or
 * connection error (one stderr line, `message (code)`), 2 a usage error, 3 a chat without a
 * terminal stopped by a tool call waiting for approval (chat.ts).
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isSentinelApiError, SentinelApiError, type Agent, type Image, type LogLevel, type LogsQuery } from '@sentinel/api-client';
import { CommandError, describeFsError, isUsageError, oneLineMessage, UsageError } from '../errors.js';
import { chat } from './chat.js';
import { addRunsCommand } from './runs.js';
import { bashCompletion, zshCompletion } from './completion.js';
import { writeConfig } from './config.js';
import { makeContext, paint, type Context, type GlobalOptions } from './context.js';
import { ago, bytes, json, shortId, table } from './format.js';
import { ask, readStdin } from './prompt.js';
import { showTransfer } from './transfer.js';

/** The commands this module handles (bin.ts sends every other name elsewhere). */
export const CLIENT_COMMANDS = [
  'login', 'logout', 'ps', 'run', 'start', 'stop', 'rm', 'inspect', 'chat', 'logs', 'events',
  'images', 'build', 'rmi', 'push', 'pull', 'search', 'completion', 'runs',
] as const;

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The one stderr line of a failure: the message and its code. */
export function errorLine(err: unknown): string {
  if (isSentinelApiError(err)) {
    const matches = ambiguousMatches(err);
    const message = matches ? `${oneLineMessage(err)}: ${matches}` : oneLineMessage(err);
    return `${message} (${err.code})`;
  }
  return oneLineMessage(err);
}

/** An ambiguous reference's 409 lists the candidates; shown in the message like Docker does. */
function ambiguousMatches(err: SentinelApiError): string | undefined {
  const matches = (err.details as { matches?: { id: string; name?: string; owner?: string }[] } | undefined)?.matches;
  if (!Array.isArray(matches) || matches.length === 0) return undefined;
  return matches.map((m) => `${shortId(m.id)}${m.name ? ` (${m.name}${m.owner ? `, ${m.owner}` : ''})` : ''}`).join(', ');
}

function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

function format(value: string): 'table' | 'json' {
  if (value !== 'table' && value !== 'json') throw new UsageError(`--format must be table or json, not "${value}"`);
  return value;
}

function positiveInt(name: string): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${name} must be a positive integer, not "${value}"`);
    return Number(value);
  };
}

function collectEnv(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new UsageError(`-e takes KEY=VALUE, not "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** Resolves an image reference Docker's way: name[:tag], full id, or a unique prefix of the id. */
async function resolveImage(ctx: Context, ref: string): Promise<Image> {
  try {
    return await ctx.client.images.get(ref);
  } catch (err) {
    const hex = ref.replace(/^sha256:/, '');
    if (!isSentinelApiError(err) || err.status !== 404 || !/^[0-9a-f]{1,64}$/.test(hex)) throw err;
    const found = (await ctx.client.images.list()).filter((image) => image.id.replace(/^sha256:/, '').startsWith(hex));
    if (found.length === 1) return found[0] as Image;
    if (found.length === 0) throw err;
    throw new SentinelApiError({
      status: 409,
      code: 'conflict',
      message: `image reference "${ref}" is ambiguous: ${found.map((i) => `${i.short_id}${i.name ? ` (${i.name}:${i.tag})` : ''}`).join(', ')}`,
    });
  }
}

function agentRows(agents: Agent[]): string[][] {
  return agents.map((a) => [shortId(a.id), a.name, a.image, a.status, ago(a.created_at), a.model]);
}

/** The program: every client command with its flags and help. `run` sets `exitCode` on the holder. */
export function buildProgram(state: { exitCode: number }): Command {
  const program = new Command('sentinel')
    .description('SentinelStacks runs LLM agents the way Docker runs containers.')
    .addOption(new Option('--server <url>', 'the server (default: SENTINEL_HOST, else the server you logged in to last, else http://localhost:8080)'))
    .addOption(new Option('--token <token>', 'a login token or API key to use (default: SENTINEL_TOKEN, else the saved login)'))
    .configureHelp({ showGlobalOptions: true })
    .showSuggestionAfterError(true)
    .exitOverride();
  program.configureOutput({ outputError: (text, write) => write(`sentinel: ${text.replace(/^error: /, '')}`) });
  const ctxOf = (command: Command, serverArg?: string): Context => makeContext(globals(command), process.env, serverArg);

  program
    .command('login')
    .description('Log in to a server and save the token in ~/.sentinel/config.json')
    .argument('[server]', 'the server (default: --server, SENTINEL_HOST, the current server)')
    .option('-u, --username <user>', 'the username (prompted for on a terminal when missing)')
    .option('--password-stdin', 'read the password from stdin')
    .action(async (server: string | undefined, options: { username?: string; passwordStdin?: boolean }, command: Command) => {
      const ctx = ctxOf(command, server);
      const username = options.username ?? (await ask('Username: '));
      const password = options.passwordStdin ? await readStdin() : await ask('Password: ', true);
      if (username === '' || password === '') throw new UsageError('username and password must not be empty');
      const result = await ctx.client.login(username, password);
      ctx.config.servers[ctx.server] = { token: result.token, username: result.username, expires: result.expires };
      ctx.config.current = ctx.server;
      writeConfig(ctx.configFile, ctx.config);
      ctx.term.out.write(`Login Succeeded (${result.username} on ${ctx.server})\n`);
    });

  program
    .command('logout')
    .description('Log out of a server: revoke the token and forget it')
    .argument('[server]', 'the server (default: the current server)')
    .action(async (server: string | undefined, _options: unknown, command: Command) => {
      const ctx = ctxOf(command, server);
      const saved = ctx.config.servers[ctx.server];
      if (saved === undefined) {
        ctx.term.out.write(`Not logged in to ${ctx.server}\n`);
        return;
      }
      try {
        await makeContext({ server: ctx.server, token: saved.token }, {}).client.logout();
      } catch (err) {
        // An expired or already revoked token is logged out all the same; anything else is reported.
        if (!isSentinelApiError(err) || err.status !== 401) throw err;
      }
      delete ctx.config.servers[ctx.server];
      if (ctx.config.current === ctx.server) delete ctx.config.current;
      writeConfig(ctx.configFile, ctx.config);
      ctx.term.out.write(`Removing login credentials for ${ctx.server}\n`);
    });

  program
    .command('ps')
    .description('List agents (running ones; -a for all)')
    .option('-a, --all', 'show stopped agents too')
    .option('-q, --quiet', 'only the ids')
    .option('--format <format>', 'table or json (the API objects)', format, 'table' as const)
    .action(async (options: { all?: boolean; quiet?: boolean; format: 'table' | 'json' }, command: Command) => {
      const ctx = ctxOf(command);
      const agents = (await ctx.client.agents.list()).filter((a) => options.all || a.status === 'running');
      if (options.quiet) ctx.term.out.write(agents.map((a) => `${a.id}\n`).join(''));
      else if (options.format === 'json') ctx.term.out.write(json(agents));
      else ctx.term.out.write(table(ctx.term, ['AGENT ID', 'NAME', 'IMAGE', 'STATUS', 'CREATED', 'MODEL'], agentRows(agents)));
    });

  program
    .command('run')
    .description('Create and start an agent from an image, then chat with it (-d: print its id and return)')
    .argument('<image>', 'the image: name[:tag], id or unique id prefix')
    .option('--name <name>', 'a name for the agent')
    .option('-e, --env <KEY=VALUE>', 'a value for the agent’s tools (repeatable)', collectEnv, {} as Record<string, string>)
    .option('-d, --detach', 'print the agent id instead of attaching a chat')
    .action(async (image: string, options: { name?: string; env: Record<string, string>; detach?: boolean }, command: Command) => {
      const ctx = ctxOf(command);
      const ref = (await resolveImage(ctx, image)).id;
      const agent = await ctx.client.agents.create({ image: ref, ...(options.name ? { name: options.name } : {}), ...(Object.keys(options.env).length > 0 ? { environment: options.env } : {}) });
      for (const warning of (agent.warnings as string[] | undefined) ?? []) ctx.term.err.write(`${paint(ctx.term, 'yellow', 'warning')}: ${warning}\n`);
      if (options.detach) {
        ctx.term.out.write(`${agent.id}\n`);
        return;
      }
      state.exitCode = await chat(ctx, agent.id);
    });

  const eachAgent = (name: string, description: string, run: (ctx: Context, ref: string, force: boolean) => Promise<void>, withForce = false): void => {
    const cmd = program.command(name).description(description).argument('<agent...>', 'agents: full id, unique id prefix or name');
    if (withForce) cmd.option('-f, --force', 'stop a running agent before removing it');
    cmd.action(async (refs: string[], options: { force?: boolean }, command: Command) => {
      const ctx = ctxOf(command);
      for (const ref of refs) {
        try {
          await run(ctx, ref, options.force === true);
          ctx.term.out.write(`${ref}\n`);
        } catch (err) {
          if (isUsageError(err)) throw err;
          // Docker goes on with the other agents and fails at the end.
          ctx.term.err.write(`sentinel ${name}: ${errorLine(err)}\n`);
          state.exitCode = EXIT_FAILURE;
        }
      }
    });
  };
  eachAgent('start', 'Start stopped agents', async (ctx, ref) => void (await ctx.client.agents.start(ref)));
  eachAgent('stop', 'Stop running agents (their turns end with reason "stopped")', async (ctx, ref) => void (await ctx.client.agents.stop(ref)));
  eachAgent(
    'rm',
    'Remove agents with their conversation, logs and events (-f: running ones too)',
    async (ctx, ref, force) => {
      const agent = await ctx.client.agents.get(ref);
      if (agent.status === 'running' && !force) {
        throw new SentinelApiError({ status: 409, code: 'conflict', message: `agent ${ref} is running: stop it first or use rm -f` });
      }
      await ctx.client.agents.delete(agent.id);
    },
    true,
  );

  program
    .command('inspect')
    .description('Show agents or images as JSON (the API objects)')
    .argument('<ref...>', 'agents (id, prefix, name) or images (name[:tag], id)')
    .action(async (refs: string[], _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      const found: unknown[] = [];
      for (const ref of refs) {
        try {
          found.push(await ctx.client.agents.get(ref));
        } catch (err) {
          // 404: no such agent; 400: not even an agent reference (`name:tag`, `ns/name`): an image then.
          if (!isSentinelApiError(err) || (err.status !== 404 && err.status !== 400)) throw err;
          found.push(await resolveImage(ctx, ref).catch((imageErr: unknown) => {
            if (isSentinelApiError(imageErr) && imageErr.status === 404) throw new SentinelApiError({ status: 404, code: 'not_found', message: `no such agent or image: ${ref}` });
            throw imageErr;
          }));
        }
      }
      ctx.term.out.write(json(found));
    });

  program
    .command('chat')
    .description('Chat with an agent (interactive on a terminal, approving tool calls at the prompt; from a pipe, one message per line, exit 3 at a tool call waiting for approval)')
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .action(async (ref: string, _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      const agent = await ctx.client.agents.get(ref);
      state.exitCode = await chat(ctx, agent.id);
    });

  program
    .command('logs')
    .description("Show an agent's log lines (-f: keep following new ones until interrupted)")
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .option('-f, --follow', 'follow new lines')
    .option('--since <when>', 'RFC 3339, unix seconds or a duration (10m, 1h30m)')
    .option('--tail <n>', 'the last n lines, or all')
    .option('--level <level>', 'minimum level: debug, info, warn, error')
    .action(async (ref: string, options: { follow?: boolean; since?: string; tail?: string; level?: string }, command: Command) => {
      if (options.tail !== undefined && !/^(all|\d+)$/.test(options.tail)) throw new UsageError(`--tail must be a number or all, not "${options.tail}"`);
      if (options.level !== undefined && !['debug', 'info', 'warn', 'error'].includes(options.level)) throw new UsageError(`--level must be debug, info, warn or error, not "${options.level}"`);
      const ctx = ctxOf(command);
      const query: LogsQuery = {
        ...(options.since ? { since: options.since } : {}),
        ...(options.tail ? { tail: options.tail === 'all' ? ('all' as const) : Number(options.tail) } : {}),
        ...(options.level ? { level: options.level as LogLevel } : {}),
      };
      const line = (r: { timestamp: string; level: string; message: string }): string => `${paint(ctx.term, 'dim', r.timestamp)} ${r.level.toUpperCase().padEnd(5)} ${r.message}\n`;
      if (!options.follow) {
        for (const record of await ctx.client.agents.logs(ref, query)) ctx.term.out.write(line(record));
        return;
      }
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        for await (const record of ctx.client.agents.followLogs(ref, { ...query, signal: controller.signal })) ctx.term.out.write(line(record));
      } catch (err) {
        // Interrupted by the user: the normal way a follow ends.
        if (!(controller.signal.aborted && isSentinelApiError(err) && err.code === 'aborted')) throw err;
      }
    });

  program
    .command('events')
    .description("Stream an agent's events, one JSON object a line, until interrupted")
    .argument('<agent>', 'the agent: full id, unique id prefix or name')
    .option('--since <seq>', 'replay the events after this seq first', (v) => {
      if (!/^\d+$/.test(v)) throw new UsageError(`--since must be an event seq (an integer), not "${v}"`);
      return v;
    })
    .action(async (ref: string, options: { since?: string }, command: Command) => {
      const ctx = ctxOf(command);
      const agent = await ctx.client.agents.get(ref);
      await streamEvents(ctx, agent.id, options.since);
    });

  program
    .command('images')
    .description('List images')
    .option('-q, --quiet', 'only the ids')
    .option('--format <format>', 'table or json (the API objects)', format, 'table' as const)
    .action(async (options: { quiet?: boolean; format: 'table' | 'json' }, command: Command) => {
      const ctx = ctxOf(command);
      const images = await ctx.client.images.list();
      if (options.quiet) ctx.term.out.write(images.map((i) => `${i.short_id}\n`).join(''));
      else if (options.format === 'json') ctx.term.out.write(json(images));
      else
        ctx.term.out.write(
          table(ctx.term, ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE', 'MODEL'], images.map((i) => [i.name || '<none>', i.tag || '<none>', i.short_id, ago(i.created_at), bytes(i.size), i.base_model])),
        );
    });

  program
    .command('build')
    .description('Build an image from a Sentinelfile (YAML or JSON)')
    .option('-f, --file <path>', 'the Sentinelfile', 'Sentinelfile')
    .action(async (options: { file: string }, command: Command) => {
      let text: string;
      try {
        text = readFileSync(options.file, 'utf8');
      } catch (err) {
        throw new CommandError(`cannot read ${options.file}: ${describeFsError(err)}`);
      }
      const ctx = ctxOf(command);
      const image = await ctx.client.images.build(text);
      ctx.term.out.write(`Successfully built ${image.short_id}\nSuccessfully tagged ${image.name}:${image.tag}\n`);
    });

  program
    .command('rmi')
    .description('Remove images (with all their tags)')
    .argument('<image...>', 'images: name[:tag], id or unique id prefix')
    .action(async (refs: string[], _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      for (const ref of refs) {
        const image = await resolveImage(ctx, ref);
        await ctx.client.images.delete(image.id);
        for (const tag of image.tags) ctx.term.out.write(`Untagged: ${tag}\n`);
        ctx.term.out.write(`Deleted: ${image.id}\n`);
      }
    });

  program
    .command('push')
    .description("Push an image to the server's registry (a progress bar per blob on a terminal)")
    .argument('<name>', 'NAME[:TAG], or an image id')
    .action(async (ref: string, _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      const result = await showTransfer(ctx, ctx.client.registry.push({ image: ref }));
      ctx.term.out.write(`${result.name}:${result.tag ?? ''}: ${result.status} ${result.digest}\n`);
    });

  program
    .command('pull')
    .description("Pull an image from the server's registry (a progress bar per blob on a terminal)")
    .argument('<name>', 'NAME[:TAG|@DIGEST], optionally with a registry host')
    .action(async (ref: string, _options: unknown, command: Command) => {
      const ctx = ctxOf(command);
      const result = await showTransfer(ctx, ctx.client.registry.pull({ name: ref }));
      ctx.term.out.write(`${result.name}:${result.tag ?? ''}: ${result.status} ${result.digest}\n`);
    });

  program
    .command('search')
    .description("Search the registry's repositories")
    .argument('<query>', 'part of a repository name')
    .option('--limit <n>', 'at most n results', positiveInt('--limit'))
    .option('--format <format>', 'table or json (the API objects)', format, 'table' as const)
    .action(async (query: string, options: { limit?: number; format: 'table' | 'json' }, command: Command) => {
      const ctx = ctxOf(command);
      const found = await ctx.client.registry.search({ query, ...(options.limit === undefined ? {} : { limit: options.limit }) });
      if (options.format === 'json') ctx.term.out.write(json(found.results));
      else ctx.term.out.write(table(ctx.term, ['NAME', 'TAGS', 'DESCRIPTION'], found.results.map((r) => [r.name, r.tags.join(', '), r.description ?? ''])));
    });

  addRunsCommand(program, ctxOf);

  program
    .command('completion')
    .description('Print a shell completion script: source <(sentinel completion bash)')
    .argument('<shell>', 'bash or zsh')
    .action((shell: string) => {
      if (shell === 'bash') process.stdout.write(bashCompletion(program));
      else if (shell === 'zsh') process.stdout.write(zshCompletion(program));
      else throw new UsageError(`completion supports bash and zsh, not "${shell}"`);
    });

  for (const command of program.commands) {
    command.exitOverride().configureOutput({ outputError: (text, write) => write(`sentinel ${command.name()}: ${text.replace(/^error: /, '')}`) });
    for (const sub of command.commands) sub.exitOverride().configureOutput({ outputError: (text, write) => write(`sentinel ${command.name()} ${sub.name()}: ${text.replace(/^error: /, '')}`) });
  }
  return program;
}

/**
 * `sentinel events`: the SDK's event stream (it resumes by seq if the connection drops), each
 * event printed as one JSON line, until a signal or the agent's deletion ends it.
 */
async function streamEvents(ctx: Context, agentId: string, since: string | undefined): Promise<void> {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for await (const frame of ctx.client.events(agentId, { ...(since === undefined ? {} : { since: Number(since) }), signal: controller.signal })) {
      ctx.term.out.write(`${JSON.stringify(frame)}\n`);
    }
  } catch (err) {
    if (!(controller.signal.aborted && isSentinelApiError(err) && err.code === 'aborted')) throw err;
  }
}

/** Runs one client command line; resolves with the exit code (errors already printed). */
export async function runClientCommand(argv: string[]): Promise<number> {
  const state = { exitCode: EXIT_OK };
  const program = buildProgram(state);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help asked for exits 0; help shown because no command was given, and every parse error, 2.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const name = argv.find((arg) => (CLIENT_COMMANDS as readonly string[]).includes(arg));
    process.stderr.write(`sentinel${name ? ` ${name}` : ''}: ${errorLine(err)}\n`);
    return isUsageError(err) ? EXIT_USAGE : EXIT_FAILURE;
  }
}
