/**
 * Runs the BUILT `sentinel` binary as a real child process and watches its output. Every
 * process started here is tracked so the suite's afterEach can kill leftovers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, beforeAll, beforeEach } from 'vitest';

export const BIN_PATH = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

/** Fails (never skips) when the binary has not been built. */
export function assertBuilt(): void {
  if (!existsSync(BIN_PATH)) throw new Error(`${BIN_PATH} is missing: run pnpm build first`);
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Non-empty stderr lines so far. */
  stderrLines(): string[];
  /** stdout lines that are JSON objects (the logs). */
  jsonLines(): Record<string, unknown>[];
  /** Resolves with the URL from `SentinelStacks API listening on <url>`; rejects if the process exits first. */
  url(timeoutMs?: number): Promise<string>;
  /** Resolves once `predicate` holds on the output, polling on every chunk. */
  waitFor(predicate: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Resolves when the process has exited. */
  exited(timeoutMs?: number): Promise<Exit>;
  /** Sends a signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

const running = new Set<ChildProcess>();

const URL_LINE = /^SentinelStacks API listening on (\S+)/m;

/**
 * An environment without the caller's SENTINEL_* variables (a developer's own settings must
 * not leak into the tests), with HOME pointed at `home` so the default data dir stays in tmp.
 */
export function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('SENTINEL_')) env[key] = value;
  return { ...env, HOME: home, ...extra };
}

/**
 * Spawns `node dist/bin.js <args>`. With `input`, stdin is a pipe that gets `input` and is then
 * closed (a string), or stays open for the caller to write (`'pipe'`); else stdin is /dev/null.
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv, input?: string | 'pipe'): CliProcess {
  const child = spawn(process.execPath, [BIN_PATH, ...args], { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (typeof input === 'string' && input !== 'pipe') child.stdin?.end(input);
  running.add(child);
  let out = '';
  let err = '';
  let exit: Exit | undefined;
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const listener of [...listeners]) listener();
  };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    notify();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    notify();
  });
  // 'close' (not 'exit') so every byte of stdout/stderr has arrived.
  child.on('close', (code, signal) => {
    exit = { code, signal };
    running.delete(child);
    notify();
  });

  const waitFor = (predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (predicate()) {
          done();
          resolve();
        } else if (exit !== undefined) {
          done();
          reject(new Error(`process exited (${exit.code ?? exit.signal}) before ${what}; stderr: ${err.trim()}; stdout: ${out.trim().slice(0, 2000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; stderr: ${err.trim()}; stdout: ${out.trim().slice(0, 2000)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  const exited = async (timeoutMs = 15_000): Promise<Exit> => {
    await waitFor(() => exit !== undefined, 'exit', timeoutMs).catch((e: unknown) => {
      if (exit === undefined) throw e;
    });
    return exit as Exit;
  };

  return {
    child,
    stdout: () => out,
    stderr: () => err,
    stderrLines: () => err.split('\n').filter((line) => line.length > 0),
    jsonLines: () =>
      out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    url: async (timeoutMs) => {
      await waitFor(() => URL_LINE.test(out), 'the "listening on" line', timeoutMs);
      return (URL_LINE.exec(out) as RegExpExecArray)[1] as string;
    },
    waitFor,
    exited,
    stop: (signal = 'SIGTERM') => {
      if (exit === undefined) child.kill(signal);
      return exited();
    },
  };
}

/** Kills every process a test left running (afterEach) and waits for them to go. */
export async function killAll(): Promise<void> {
  const children = [...running];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('close', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

/** A CLI spec's per-test scratch: a temp directory, and the loopback servers and sockets a test opens. */
export interface CliScratch {
  /** A fresh temp directory for the running test (removed after it). */
  dir: string;
  readonly servers: Server[];
  readonly sockets: Socket[];
}

/**
 * Registers the hooks every CLI spec needs: the binary must be built; each test gets a fresh
 * temp directory under `prefix`; after each test every spawned CLI is killed, and the sockets and
 * servers the test pushed are closed before its directory goes.
 */
export function useCliScratch(prefix: string): CliScratch {
  const scratch: CliScratch = { dir: '', servers: [], sockets: [] };
  beforeAll(() => {
    assertBuilt();
  });
  beforeEach(() => {
    scratch.dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    await killAll();
    for (const socket of scratch.sockets.splice(0)) socket.destroy();
    await Promise.all(scratch.servers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    rmSync(scratch.dir, { recursive: true, force: true });
  });
  return scratch;
}

/** One JSON request to a running server: the status and the parsed body (undefined when empty). */
export async function callJson(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, token: string | undefined, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await request(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text === '' ? undefined : JSON.parse(text) };
}
