/**
 * What every client command shares: which server and credential (flag, then environment, then
 * the config file), the SDK client for them, and the terminal (width, colour).
 */
import { createClient, type SentinelClient } from '@sentinel/api-client';
import { configPath, DEFAULT_SERVER, normalizeServer, readConfig, type CliConfig } from './config.js';

export interface GlobalOptions {
  server?: string;
  token?: string;
}

export interface Context {
  /** The server URL commands talk to. */
  server: string;
  /** The bearer credential sent (token or API key), if any. */
  credential: string | undefined;
  client: SentinelClient;
  configFile: string;
  config: CliConfig;
  term: Terminal;
}

export interface Terminal {
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
  /** stdout is a terminal: tables fit its width, progress bars draw. */
  tty: boolean;
  /** Colour on stdout: a terminal, and NO_COLOR unset (https://no-color.org). */
  color: boolean;
  /** Columns to fit tables into; undefined when not a terminal (never truncate piped output). */
  columns: number | undefined;
}

export function terminal(env: NodeJS.ProcessEnv = process.env): Terminal {
  const tty = process.stdout.isTTY === true;
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  return { out: process.stdout, err: process.stderr, tty, color: tty && !noColor, columns: tty ? process.stdout.columns || 80 : undefined };
}

/** `--server`, else `SENTINEL_HOST`, else the server last logged in to, else localhost:8080. */
export function resolveServer(options: GlobalOptions, config: CliConfig, env: NodeJS.ProcessEnv): string {
  const given = options.server ?? (env.SENTINEL_HOST || undefined) ?? config.current ?? DEFAULT_SERVER;
  return normalizeServer(given);
}

/** A context for one command run. `serverArg` (login/logout's SERVER) beats everything else. */
export function makeContext(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env, serverArg?: string): Context {
  const configFile = configPath(env);
  const config = readConfig(configFile);
  const server = serverArg === undefined ? resolveServer(options, config, env) : normalizeServer(serverArg);
  const credential = options.token ?? (env.SENTINEL_TOKEN || undefined) ?? config.servers[server]?.token;
  // An API key goes as apiKey, a login token as token: both travel as the same bearer header.
  const client = createClient({
    baseUrl: server,
    ...(credential === undefined ? {} : credential.startsWith('sk_sentinel_') ? { apiKey: credential } : { token: credential }),
  });
  return { server, credential, client, configFile, config, term: terminal(env) };
}

const CODES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const;

/** Wraps text in an ANSI style when the terminal wants colour; the text alone otherwise. */
export function paint(term: Pick<Terminal, 'color'>, style: keyof typeof CODES, text: string): string {
  if (!term.color) return text;
  const [on, off] = CODES[style];
  return `\u001b[${on}m${text}\u001b[${off}m`;
}
