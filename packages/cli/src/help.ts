/**
 * Help texts, generated from the flag table so they cannot drift from what the parser accepts.
 */
import { API_ENV_ONLY, API_FLAGS, type FlagSpec } from './flags.js';

const COLUMN = 32;

function usageOf(flag: FlagSpec): string {
  const long = flag.type === 'bool' ? `--${flag.name}[=<bool>]` : `--${flag.name} <${flag.type === 'int' || flag.type === 'duration' ? flag.type : 'value'}>`;
  return flag.alias ? `-${flag.alias}, ${long}` : `    ${long}`;
}

function defaultOf(flag: FlagSpec): string {
  if (flag.defaultLabel !== undefined) return flag.defaultLabel;
  return flag.default === undefined ? 'none' : String(flag.default);
}

function row(left: string, right: string): string {
  const padded = left.length + 2 >= COLUMN ? `${left}\n${' '.repeat(COLUMN)}` : left.padEnd(COLUMN - 2);
  return `  ${padded}${right}`;
}

/** `sentinel api --help`: usage, then every flag with its environment variable and default. */
export function formatApiHelp(): string {
  const lines = [
    'Usage: sentinel api [flags]',
    '',
    'Start the SentinelStacks API server: REST for agents, images, users and auth under /v1.',
    '',
    'Flags:',
  ];
  for (const flag of API_FLAGS) {
    lines.push(row(usageOf(flag), flag.description));
    lines.push(`${' '.repeat(COLUMN)}env ${flag.env}, default ${defaultOf(flag)}`);
  }
  lines.push(row('-h, --help', 'Show this help'));
  lines.push(row('    --version', 'Print the version'));
  lines.push('', 'Environment only:');
  for (const variable of API_ENV_ONLY) {
    lines.push(row(variable.env, variable.description));
    lines.push(`${' '.repeat(COLUMN)}default ${variable.defaultLabel}`);
  }
  lines.push(
    '',
    'A flag beats its environment variable, which beats the default.',
    'Booleans accept true/false, 1/0 and yes/no; --no-<flag> means false.',
    '',
  );
  return lines.join('\n');
}

/** `sentinel help`: the commands. */
export function formatMainHelp(): string {
  return [
    'Usage: sentinel <command> [flags]',
    '',
    'SentinelStacks runs LLM agents the way Docker runs containers.',
    '',
    'Commands:',
    row('api', 'Start the API server (sentinel api --help lists its flags)'),
    row('help [command]', 'Show help for sentinel or one command'),
    '',
    'Client commands (sentinel COMMAND --help for each; --server URL / SENTINEL_HOST and',
    '--token / SENTINEL_TOKEN choose the server and credential):',
    row('login [SERVER]', 'Log in and save the token in ~/.sentinel/config.json'),
    row('logout [SERVER]', 'Log out and forget the token'),
    row('ps [-a] [-q]', 'List agents'),
    row('run IMAGE', 'Create and start an agent, then chat with it (-d: detach)'),
    row('start|stop|rm AGENT...', 'Start, stop or remove agents'),
    row('inspect AGENT|IMAGE', 'Show agents or images as JSON'),
    row('chat AGENT', 'Chat with an agent (approve tool calls at the prompt)'),
    row('runs ls|inspect|cancel|approve', "An agent's runs: list, show, cancel, decide a tool call"),
    row('logs [-f] AGENT', "Show (or follow) an agent's logs"),
    row('events AGENT', "Stream an agent's events as JSON lines"),
    row('images [-q]', 'List images'),
    row('build -f FILE', 'Build an image from a Sentinelfile'),
    row('rmi IMAGE...', 'Remove images'),
    row('push NAME[:TAG]', "Push an image to the server's registry"),
    row('pull NAME[:TAG]', "Pull an image from the server's registry"),
    row('search QUERY', 'Search the registry'),
    row('completion bash|zsh', 'Print a shell completion script'),
    '',
    'Flags:',
    row('-h, --help', 'Show this help'),
    row('    --version', 'Print the version'),
    '',
  ].join('\n');
}
