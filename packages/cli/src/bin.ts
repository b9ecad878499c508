#!/usr/bin/env node
/**
 * The `sentinel` binary: command dispatch, exit codes, signals. Every failure ends as exactly
 * one `sentinel api: <message>` line on stderr (never a stack): operators read it in a
 * terminal or a unit's journal, and scripts match it.
 */
import { startApi, type CommandIo, type RunningApi } from './api-command.js';
import { isUsageError, oneLineMessage } from './errors.js';
import { formatApiHelp, formatMainHelp } from './help.js';
import { parseApiArgs, type ParsedApiArgs } from './parse-args.js';
import { CLIENT_COMMANDS, runClientCommand } from './commands/program.js';
import { closestMatch } from './suggest.js';
import { versionLine } from './version.js';

/** Exit statuses: 2 is the convention for "called wrongly", 1 for "failed while running". */
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const COMMANDS = ['api', 'help', ...CLIENT_COMMANDS];

/** `sentinel ps`, `sentinel login`, …: the client commands, over the SDK. */
function isClientCommand(command: string): boolean {
  return (CLIENT_COMMANDS as readonly string[]).includes(command);
}

/**
 * Longest a start-up may take (store, migrations, Redis, binding the port) before it counts as
 * failed: every dependency has its own timeout, but their sum must not leave an operator
 * watching a silent process. Default 60 s.
 */
const START_DEADLINE_MS = 60_000;
/** After a signal during start-up: how long start-up may still finish (so the store closes cleanly), then exit 1. Default 3 s. */
const START_SIGNAL_GRACE_MS = 3_000;
/** After a signal while serving: in-flight requests get 10 s; past this the process exits 1 anyway. Default 15 s. */
const SHUTDOWN_DEADLINE_MS = 15_000;

/** Exits `EXIT_FAILURE` after `ms` with one line, unless the process has exited by then. */
function exitAfter(ms: number, message: string): void {
  setTimeout(() => {
    io.stderr.write(`sentinel api: ${message}\n`);
    process.exit(EXIT_FAILURE);
  }, ms).unref();
}

const io: CommandIo = { stdout: process.stdout, stderr: process.stderr };

/** True once `sentinel api` is starting a server (stdout then carries its log). */
let serving = false;

function fail(prefix: string, err: unknown): never {
  io.stderr.write(`${prefix}: ${oneLineMessage(err)}\n`);
  process.exit(isUsageError(err) ? EXIT_USAGE : EXIT_FAILURE);
}

async function runApi(argv: string[]): Promise<void> {
  let parsed: ParsedApiArgs;
  try {
    parsed = parseApiArgs(argv, process.env);
  } catch (err) {
    fail('sentinel api', err);
  }
  if (parsed.kind === 'help') {
    io.stdout.write(formatApiHelp());
    return;
  }
  if (parsed.kind === 'version') {
    io.stdout.write(`${versionLine()}\n`);
    return;
  }

  let running: RunningApi | undefined;
  let stopping = false;

  const shutdown = async (api: RunningApi): Promise<void> => {
    try {
      await api.close();
    } catch (err) {
      fail('sentinel api', err);
    }
    // Explicit exit: a library handle (a keep-alive agent, a timer) must not keep a stopped
    // server's process alive.
    process.exit(EXIT_OK);
  };

  // Installed before starting, so a signal during start-up still shuts down cleanly once the
  // store is open instead of killing the process half-way through a migration.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      io.stderr.write(`sentinel api: ${signal} again, exiting without waiting\n`);
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    io.stderr.write(`sentinel api: shutting down (${signal})\n`);
    // A signal always ends the process: a shutdown (or a start-up) that hangs is cut short.
    if (running) {
      exitAfter(SHUTDOWN_DEADLINE_MS, `shutdown did not finish within ${SHUTDOWN_DEADLINE_MS / 1000} s, exiting`);
      void shutdown(running);
    } else {
      exitAfter(START_SIGNAL_GRACE_MS, `start-up did not finish within ${START_SIGNAL_GRACE_MS / 1000} s of ${signal}, exiting`);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  serving = true;

  // A bug surfacing later must still end as one line on stderr; the stack goes to the JSON
  // log on stdout, where operators collect diagnostics.
  const onCrash = (err: unknown): void => {
    running?.logger.error('unexpected error', { error: oneLineMessage(err), stack: err instanceof Error ? err.stack : undefined });
    fail('sentinel api', err);
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);

  const startTimer = setTimeout(() => {
    fail('sentinel api', new Error(`start-up did not finish within ${START_DEADLINE_MS / 1000} s`));
  }, START_DEADLINE_MS);
  startTimer.unref();
  try {
    running = await startApi(parsed.config, io);
  } catch (err) {
    fail('sentinel api', err);
  } finally {
    clearTimeout(startTimer);
  }
  if (stopping) await shutdown(running);
}

function unknownCommand(command: string): never {
  const guess = closestMatch(command, COMMANDS);
  io.stderr.write(`sentinel: unknown command "${command}"${guess ? ` (did you mean "${guess}"?)` : ''}\n\n${formatMainHelp()}`);
  process.exit(EXIT_USAGE);
}

/**
 * `pnpm start -- --port 9000` hands the script `-- --port 9000` (pnpm keeps the `--`). Inside a
 * package script (npm_lifecycle_event is set) a leading `--` is that separator, not ours, and is
 * dropped; typed by hand (or through npx), `sentinel api -- --port` stays a usage error.
 */
function withoutScriptSeparator(args: string[]): string[] {
  const script = process.env.npm_lifecycle_event;
  return args[0] === '--' && script !== undefined && script !== 'npx' ? args.slice(1) : args;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...given] = argv;
  const rest = withoutScriptSeparator(given);
  // `sentinel --server URL ps`: global client flags before the command.
  if (command !== undefined && /^--(server|token)(=|$)/.test(command)) process.exit(await runClientCommand(argv));
  switch (command) {
    case undefined:
      io.stderr.write(formatMainHelp());
      process.exit(EXIT_USAGE);
      break;
    case '-h':
    case '--help':
      io.stdout.write(formatMainHelp());
      break;
    case '--version':
      io.stdout.write(`${versionLine()}\n`);
      break;
    case 'help': {
      const topic = rest[0];
      if (topic === undefined) io.stdout.write(formatMainHelp());
      else if (topic === 'api') io.stdout.write(formatApiHelp());
      else if (isClientCommand(topic)) process.exit(await runClientCommand([topic, '--help']));
      else unknownCommand(topic);
      break;
    }
    case 'api':
      await runApi(rest);
      break;
    default:
      if (isClientCommand(command)) {
        // Explicit exit: a closed WebSocket or stdin reader must not keep a finished command alive.
        process.exit(await runClientCommand([command, ...rest]));
      }
      unknownCommand(command);
  }
}

// `sentinel api --help | head -1` closes stdout early: for text output that is normal, not a
// crash. A server whose stdout (its log) goes away stops with one line instead of a stack.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE' && !serving) process.exit(EXIT_OK);
  fail('sentinel api', new Error(`cannot write to stdout: ${err.code ?? err.message}`));
});

main(process.argv.slice(2)).catch((err: unknown) => fail('sentinel', err));
