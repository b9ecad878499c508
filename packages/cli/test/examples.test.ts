/**
 * Every embedding example under examples/ runs as the README shows it: a test spawns it with
 * `node` (the examples workspace package resolves @sentinel/* to the built packages), talks to
 * it over real sockets and stops it with SIGTERM. The core example runs twice on one data
 * directory, as a reader trying it again would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { assertBuilt, cleanEnv } from './spawn-cli.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples', import.meta.url));

let tmp: string;
const children = new Set<ChildProcess>();

beforeAll(() => {
  assertBuilt();
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-examples-'));
});

afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  rmSync(tmp, { recursive: true, force: true });
});

interface Example {
  stdout(): string;
  stderr(): string;
  /** Resolves when `pattern` matches stdout or stderr; rejects if the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
  child: ChildProcess;
}

function runExample(file: string, env: Record<string, string> = {}): Example {
  const child = spawn(process.execPath, [join(EXAMPLES, file)], {
    cwd: tmp,
    env: cleanEnv(tmp, { PORT: '0', SENTINEL_DATA_DIR: join(tmp, 'data'), ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const l of [...listeners]) l();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    for (const l of [...listeners]) l();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      children.delete(child);
      for (const l of [...listeners]) l();
      resolve(code);
    }),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: (pattern, timeoutMs = 20_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out waiting for ${pattern}; stdout: ${out}; stderr: ${err}`)), timeoutMs);
        const check = (): void => {
          const match = pattern.exec(out) ?? pattern.exec(err);
          if (match) done(undefined, match);
          else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`${file} exited before ${pattern}; stdout: ${out}; stderr: ${err}`));
        };
        const done = (error?: Error, match?: RegExpExecArray): void => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else resolve(match as RegExpExecArray);
        };
        listeners.add(check);
        check();
      }),
  };
}

async function login(url: string, password: string): Promise<string> {
  const res = await request(`${url}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  });
  expect(res.statusCode).toBe(200);
  return ((await res.body.json()) as { token: string }).token;
}

async function getText(url: string, token?: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, text: await res.body.text() };
}

/** Starts a server example, logs in with the password it printed, checks /v1 and `/`, stops it. */
async function serveAndStop(file: string, ownRoot: boolean, extra?: (url: string, token: string) => Promise<void>): Promise<void> {
  const example = runExample(file);
  const url = (await example.waitFor(/^listening on (\S+)$/m))[1] as string;
  const password = (await example.waitFor(/^admin password \(shown once\): (\S+)$/m))[1] as string;
  const token = await login(url, password);
  const me = await getText(`${url}/v1/auth/me`, token);
  expect(me.status).toBe(200);
  expect(JSON.parse(me.text)).toMatchObject({ username: 'admin', role: 'admin' });
  const root = await getText(`${url}/`);
  if (ownRoot) expect(root).toEqual({ status: 200, text: 'my app' });
  else expect(root.status).toBe(404);
  // The API reference comes with the api on every host (the listener's `docs` is on by default).
  const docs = await request(`${url}/docs`);
  expect(docs.statusCode).toBe(200);
  expect(docs.headers['content-type']).toBe('text/html; charset=utf-8');
  expect(await docs.body.text()).toContain('/docs/assets/scalar-api-reference-');
  await extra?.(url, token);
  example.child.kill('SIGTERM');
  expect(await example.exited).toBe(0);
}

describe('examples/', () => {
  it('mount-node-http.mjs: the API is the whole server', async () => {
    await serveAndStop('mount-node-http.mjs', false);
  });

  it('mount-express.mjs: the API next to an Express route', async () => {
    await serveAndStop('mount-express.mjs', true);
  });

  it('mount-fastify.mjs: the API under /v1 of Fastify, bodies read by the listener', async () => {
    await serveAndStop('mount-fastify.mjs', true, async (url, token) => {
      const res = await request(`${url}/v1/agents`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ image: 'sentinel/echo:latest', name: 'via-fastify' }),
      });
      expect(res.statusCode).toBe(201);
      expect(await res.body.json()).toMatchObject({ name: 'via-fastify' });
    });
  });

  it('attach-websocket.mjs: REST and the chat WebSocket on one server', async () => {
    await serveAndStop('attach-websocket.mjs', false, async (url, token) => {
      const res = await request(`${url}/v1/agents`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ image: 'sentinel/echo:latest', name: 'via-ws' }),
      });
      expect(res.statusCode).toBe(201);
      const agent = (await res.body.json()) as { id: string };
      // examples/chat.mjs against it: the README's chat client, as a reader runs it.
      const chat = spawn(process.execPath, [join(EXAMPLES, 'chat.mjs'), 'Hello from a test'], {
        env: cleanEnv(tmp, { API_WS: url.replace(/^http/, 'ws'), TOKEN: token, AGENT: agent.id }),
      });
      children.add(chat);
      let out = '';
      chat.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      const code = await new Promise<number | null>((resolve) => chat.on('close', resolve));
      expect(code).toBe(0);
      expect(out).toMatch(/^Echo: Hello from a test\n\[stop, \d+ tokens\]\n$/);
      // A wrong token is refused before the upgrade: chat.mjs says so and exits 1.
      const refused = spawn(process.execPath, [join(EXAMPLES, 'chat.mjs')], {
        env: cleanEnv(tmp, { API_WS: url.replace(/^http/, 'ws'), TOKEN: 'not-a-token', AGENT: agent.id }),
      });
      let err = '';
      refused.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
      expect(await new Promise((resolve) => refused.on('close', resolve))).toBe(1);
      expect(err).toBe('refused: HTTP 401\n');
      // And an open socket is closed with 1001 when the example shuts down (checked by the caller's SIGTERM).
      const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/agents/${agent.id}/events`, { headers: { authorization: `Bearer ${token}` } });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.on('error', () => undefined);
    });
  });

  it('custom-tool.mjs: a registered tool, called through a transport-free chat session, twice', async () => {
    for (const run of [1, 2]) {
      const example = runExample('custom-tool.mjs');
      expect(await example.exited, `run ${run}: ${example.stderr()}`).toBe(0);
      expect(example.stdout()).toBe('word_count: {"words":3}\n');
    }
  });

  it('core.mjs: runs, and runs again on the same data directory', async () => {
    for (const run of [1, 2]) {
      const example = runExample('core.mjs');
      const code = await example.exited;
      expect(code, `run ${run}: ${example.stderr()}`).toBe(0);
      expect(example.stdout()).toMatch(/^image sha256:[0-9a-f]{64}, agent helper \([0-9a-f]+\) is running$/m);
      expect(example.stderr()).toBe('');
    }
  });
});
