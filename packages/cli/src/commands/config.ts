/**
 * `~/.sentinel/config.json`: the login token per server and the server last logged in to, like
 * Docker's `~/.docker/config.json`. Written with mode 0600 (it holds bearer tokens) through a
 * temp file and a rename, so a crash never leaves half a file.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CommandError } from '../errors.js';

export interface ServerCredentials {
  token: string;
  username: string;
  /** When the token expires (RFC 3339), as the login answered. */
  expires?: string;
}

export interface CliConfig {
  /** The server commands talk to when neither --server nor SENTINEL_HOST says. */
  current?: string;
  servers: Record<string, ServerCredentials>;
}

/** Where the server runs when nothing says otherwise: `sentinel api`'s default address. */
export const DEFAULT_SERVER = 'http://localhost:8080';

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.HOME ?? homedir(), '.sentinel', 'config.json');
}

export function readConfig(path: string): CliConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { servers: {} };
    throw new CommandError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as Partial<CliConfig>;
    return { ...(typeof parsed.current === 'string' ? { current: parsed.current } : {}), servers: parsed.servers ?? {} };
  } catch {
    throw new CommandError(`${path} is not valid JSON: fix or delete it`);
  }
}

export function writeConfig(path: string, config: CliConfig): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, path);
}

/**
 * A server as typed (`localhost:8080`, `https://api.example.com/`) → the URL it is stored
 * under: a scheme (http: by default, as Docker assumes for a bare host), no trailing slash.
 */
export function normalizeServer(server: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `http://${server}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new CommandError(`not a server address: ${server}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CommandError(`server must be http:// or https://, not ${url.protocol}`);
  return url.toString().replace(/\/+$/, '');
}
