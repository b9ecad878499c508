/**
 * End-to-end: the built `sentinel` binary as a child process, real sockets, real SQLite files.
 */
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { describe, expect, it } from 'vitest';
import { API_FLAGS } from '@sentinel/cli';
import { cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'correct-horse-battery';
const GENERATED_LINE =
  /^created admin user "admin" with generated password: (\S+) \(shown once; set SENTINEL_ADMIN_PASSWORD to choose it\)$/;
const PKG_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const scratch = useCliScratch('sentinel-cli-');
const { servers, sockets } = scratch;

/** Starts `sentinel api` on a free loopback port with a data dir in scratch.dir; extra args and env on top. */
function startApi(args: string[] = [], env: Record<string, string> = { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }, dataDir = join(scratch.dir, 'data')): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, ...args], cleanEnv(scratch.dir, env));
}

interface JsonResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

async function call(
  url: string,
  method: 'GET' | 'POST' | 'DELETE' | 'OPTIONS',
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string>; dispatcher?: Agent } = {},
): Promise<JsonResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(url + path, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    dispatcher: options.dispatcher,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text.length > 0 ? JSON.parse(text) : undefined };
}

async function login(url: string, password: string, username = 'admin'): Promise<string> {
  const res = await call(url, 'POST', '/v1/auth/login', { body: { username, password } });
  expect(res.status).toBe(200);
  expect(res.body.username).toBe(username);
  return res.body.token as string;
}

function preflight(url: string): Promise<JsonResponse> {
  return call(url, 'OPTIONS', '/v1/agents', {
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' },
  });
}

function requestLines(cli: CliProcess): Record<string, unknown>[] {
  return cli.jsonLines().filter((line) => line.msg === 'request');
}

/** One failure line: `sentinel api: <message>`, no stack. */
function expectOneErrorLine(cli: CliProcess, message: string | RegExp): void {
  const lines = cli.stderrLines();
  expect(lines, cli.stderr()).toHaveLength(1);
  const line = lines[0] as string;
  expect(line.startsWith('sentinel api: ')).toBe(true);
  if (typeof message === 'string') expect(line).toBe(`sentinel api: ${message}`);
  else expect(line).toMatch(message);
  expect(cli.stderr()).not.toMatch(/^\s+at /m);
  expect(cli.stdout()).not.toMatch(/^\s+at /m);
}

async function occupyPort(): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as { port: number }).port;
}

describe('sentinel binary: help and dispatch', () => {
  it('sentinel api --help lists every flag with its env variable, exit 0', async () => {
    const cli = runCli(['api', '--help'], cleanEnv(scratch.dir));
    expect(await cli.exited()).toEqual({ code: 0, signal: null });
    for (const flag of API_FLAGS) {
      expect(cli.stdout()).toContain(`--${flag.name}`);
      expect(cli.stdout()).toContain(`env ${flag.env}`);
    }
    expect(cli.stdout()).toContain('SENTINEL_ADMIN_PASSWORD');
    expect(cli.stderr()).toBe('');
  });

  it('--version prints the package version; sentinel help prints the commands', async () => {
    const version = runCli(['--version'], cleanEnv(scratch.dir));
    const apiVersion = runCli(['api', '--version'], cleanEnv(scratch.dir));
    const help = runCli(['help'], cleanEnv(scratch.dir));
    expect((await version.exited()).code).toBe(0);
    expect((await apiVersion.exited()).code).toBe(0);
    expect((await help.exited()).code).toBe(0);
    expect(version.stdout()).toMatch(new RegExp(`^sentinel ${PKG_VERSION.replace(/\./g, '\\.')} \\(commit ([0-9a-f]{12}|unknown), node v\\d+\\.\\d+\\.\\d+\\)\n$`));
    expect(apiVersion.stdout()).toBe(version.stdout());
    expect(help.stdout()).toMatch(/^Usage: sentinel <command>/);
  });

  it('no command or an unknown command: usage on stderr, exit 2', async () => {
    const none = runCli([], cleanEnv(scratch.dir));
    const unknown = runCli(['apy'], cleanEnv(scratch.dir));
    expect((await none.exited()).code).toBe(2);
    expect((await unknown.exited()).code).toBe(2);
    expect(none.stdout()).toBe('');
    expect(none.stderr()).toMatch(/^Usage: sentinel <command>/);
    expect(unknown.stderr()).toMatch(/^sentinel: unknown command "apy" \(did you mean "api"\?\)\n/);
    expect(unknown.stderr()).toContain('Usage: sentinel <command>');
  });
});

describe('sentinel api: a full session', () => {
  it('serves the API, shuts down on SIGTERM with exit 0, and keeps everything across a restart', async () => {
    const dataDir = join(scratch.dir, 'data');
    const first = startApi(['--token-auth-secret', 'flag-secret-0123456789abcdef']);
    const url = await first.url();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(url).not.toBe('http://127.0.0.1:0');
    expect(first.stderr()).not.toMatch(/generated password/);

    const token = await login(url, ADMIN_PASSWORD);
    // The token is signed with the secret given on the command line (HS256 over header.payload).
    const [header, payload, signature] = token.split('.') as [string, string, string];
    expect(createHmac('sha256', 'flag-secret-0123456789abcdef').update(`${header}.${payload}`).digest('base64url')).toBe(signature);

    const images = await call(url, 'GET', '/v1/images', { token });
    expect(images.status).toBe(200);
    expect(images.body.images.some((image: any) => image.name === 'sentinel/echo' && image.tag === 'latest')).toBe(true);

    const created = await call(url, 'POST', '/v1/agents', { token, body: { image: 'sentinel/echo:latest', name: 'demo' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'demo', status: 'running' });

    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(first.stderrLines()).toEqual(['sentinel api: shutting down (SIGTERM)']);
    expect(existsSync(join(dataDir, 'sentinel.db'))).toBe(true);

    const second = startApi(['--token-auth-secret', 'flag-secret-0123456789abcdef'], { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }, dataDir);
    const url2 = await second.url();
    const agents = await call(url2, 'GET', '/v1/agents', { token });
    expect(agents.status).toBe(200);
    expect(agents.body.agents.map((agent: any) => [agent.id, agent.name])).toEqual([[created.body.id, 'demo']]);
    const again = await call(url2, 'GET', '/v1/images', { token });
    expect(again.body.images.some((image: any) => image.name === 'sentinel/echo' && image.tag === 'latest')).toBe(true);

    expect(await second.stop('SIGINT')).toEqual({ code: 0, signal: null });
    expect(second.stderrLines()).toEqual(['sentinel api: shutting down (SIGINT)']);
  });

  it('without SENTINEL_ADMIN_PASSWORD prints a generated password once, and never again', async () => {
    const dataDir = join(scratch.dir, 'data');
    const first = startApi([], {}, dataDir);
    const url = await first.url();
    const lines = first.stderrLines();
    expect(lines).toHaveLength(1);
    const match = GENERATED_LINE.exec(lines[0] as string);
    expect(match, lines[0]).not.toBeNull();
    const password = (match as RegExpExecArray)[1] as string;
    // The password is a human notice on stderr, never in the JSON logs on stdout.
    expect(first.stdout()).not.toContain(password);

    const token = await login(url, password);
    expect(token.split('.')).toHaveLength(3);
    expect((await call(url, 'POST', '/v1/auth/login', { body: { username: 'admin', password: 'wrong-password' } })).status).toBe(401);
    expect((await first.stop()).code).toBe(0);

    const second = startApi([], {}, dataDir);
    const url2 = await second.url();
    expect(second.stderr()).not.toMatch(/generated password/);
    await login(url2, password);
    expect((await second.stop()).code).toBe(0);
  });
});

/**
 * Opens a raw connection and sends a login request whose body stops half-way: the server has
 * a request in flight until the rest arrives, without needing a deliberately slow route.
 */
async function startSlowLogin(url: string): Promise<{ finish(): Promise<string> }> {
  const { hostname, port } = new URL(url);
  const body = JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD });
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  await once(socket, 'connect');
  let response = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (response += chunk));
  const half = Math.floor(body.length / 2);
  socket.write(
    `POST /v1/auth/login HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: keep-alive\r\n\r\n${body.slice(0, half)}`,
  );
  // Let the server parse the headers so the request is really in progress before any signal.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return {
    async finish() {
      socket.write(body.slice(half));
      await once(socket, 'close');
      return response;
    },
  };
}

describe('sentinel api: graceful shutdown', () => {
  it('SIGTERM lets an in-flight request finish, then exits 0', async () => {
    const cli = startApi();
    const slow = await startSlowLogin(await cli.url());
    cli.child.kill('SIGTERM');
    await cli.waitFor(() => cli.stderr().includes('shutting down (SIGTERM)'), 'the shutdown notice');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(cli.child.exitCode).toBeNull();

    const response = await slow.finish();
    expect(response).toMatch(/^HTTP\/1\.1 200 /);
    expect(response).toMatch(/"token":"[^"]+"/);
    expect(await cli.exited()).toEqual({ code: 0, signal: null });
  });

  it('a second signal while draining exits 1 at once', async () => {
    const cli = startApi();
    await startSlowLogin(await cli.url());
    cli.child.kill('SIGTERM');
    await cli.waitFor(() => cli.stderr().includes('shutting down (SIGTERM)'), 'the shutdown notice');
    cli.child.kill('SIGINT');
    expect((await cli.exited()).code).toBe(1);
    expect(cli.stderrLines()).toEqual(['sentinel api: shutting down (SIGTERM)', 'sentinel api: SIGINT again, exiting without waiting']);
  });
});

describe('sentinel api: CORS and request logs', () => {
  it('by default answers preflights with CORS headers and logs one JSON line per request, without the token', async () => {
    const cli = startApi();
    const url = await cli.url();
    const pre = await preflight(url);
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBeDefined();

    const token = await login(url, ADMIN_PASSWORD);
    const health = await call(url, 'GET', '/v1/health');
    expect(health.body).toEqual({ status: 'ok' });
    const images = await call(url, 'GET', '/v1/images?secret-query=1', { token });
    expect(images.status).toBe(200);

    // preflight + login + health + images
    await cli.waitFor(() => requestLines(cli).length >= 4, 'four request log lines');
    const lines = requestLines(cli);
    expect(lines).toHaveLength(4);
    expect(lines.map((line) => [line.method, line.path, line.status])).toEqual([
      ['OPTIONS', '/v1/agents', 204],
      ['POST', '/v1/auth/login', 200],
      ['GET', '/v1/health', 200],
      ['GET', '/v1/images', 200],
    ]);
    for (const line of lines) {
      expect(typeof line.request_id).toBe('string');
      expect(typeof line.duration_ms).toBe('number');
    }
    expect(cli.stdout()).not.toContain(token);
    expect(cli.stdout()).not.toContain(ADMIN_PASSWORD);
    expect(cli.stdout()).not.toContain('secret-query');
  });

  it('--no-cors: a preflight gets no Access-Control-Allow-Origin', async () => {
    const cli = startApi(['--no-cors']);
    const pre = await preflight(await cli.url());
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('--cors=false --log-requests=false: no CORS headers, no request lines', async () => {
    const cli = startApi(['--cors=false', '--log-requests=false']);
    const url = await cli.url();
    const pre = await preflight(url);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const health = await call(url, 'GET', '/v1/health', { headers: { origin: 'https://app.example' } });
    expect(health.status).toBe(200);
    expect(health.headers['access-control-allow-origin']).toBeUndefined();
    // The server stays quiet; stop it so every byte it could have written has arrived.
    expect((await cli.stop()).code).toBe(0);
    expect(requestLines(cli)).toEqual([]);
  });
});

describe('sentinel api: connection caps', () => {
  /** Resolves true when the server closes a fresh connection to `url` without a byte, false when it stays open. */
  function refusedAtAccept(url: string): Promise<boolean> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve) => {
      const socket = connect({ host: hostname, port: Number(port) });
      sockets.push(socket);
      let received = 0;
      socket.on('data', (chunk: Buffer) => (received += chunk.length));
      socket.on('error', () => undefined);
      const timer = setTimeout(() => resolve(false), 1_500);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(received === 0);
      });
    });
  }

  it('--max-connections-per-address closes extra connections at accept; SENTINEL_MAX_CONNECTIONS caps them overall', async () => {
    const perAddress = startApi(['--max-connections-per-address', '1']);
    const url = await perAddress.url();
    const { hostname, port } = new URL(url);
    const held = connect({ host: hostname, port: Number(port) });
    sockets.push(held);
    await once(held, 'connect');
    expect(await refusedAtAccept(url)).toBe(true);
    held.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await call(url, 'GET', '/v1/health')).status).toBe(200);
    expect((await perAddress.stop()).code).toBe(0);

    const overall = startApi([], { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD, SENTINEL_MAX_CONNECTIONS: '1' });
    const url2 = await overall.url();
    const { hostname: host2, port: port2 } = new URL(url2);
    const held2 = connect({ host: host2, port: Number(port2) });
    sockets.push(held2);
    await once(held2, 'connect');
    expect(await refusedAtAccept(url2)).toBe(true);
  });
});

describe('sentinel api: environment variables', () => {
  it('every SENTINEL_* variable stands in for its flag', async () => {
    const dataDir = join(scratch.dir, 'env-data');
    const secret = 'env-secret-0123456789abcdef';
    const cli = runCli(
      ['api'],
      cleanEnv(scratch.dir, {
        SENTINEL_PORT: '0',
        SENTINEL_HOST: '127.0.0.1',
        SENTINEL_DATA_DIR: dataDir,
        SENTINEL_TOKEN_SECRET: secret,
        SENTINEL_CORS: 'false',
        SENTINEL_LOG_REQUESTS: 'no',
        SENTINEL_ADMIN_USER: 'boss',
        SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD,
      }),
    );
    const url = await cli.url();
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(existsSync(join(dataDir, 'sentinel.db'))).toBe(true);
    // A given secret is used as is: nothing generated into the data directory.
    expect(existsSync(join(dataDir, 'token-secret'))).toBe(false);

    const token = await login(url, ADMIN_PASSWORD, 'boss');
    const [header, payload, signature] = token.split('.') as [string, string, string];
    expect(createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url')).toBe(signature);

    const pre = await preflight(url);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    expect((await cli.stop()).code).toBe(0);
    expect(requestLines(cli)).toEqual([]);
  });
});

describe('sentinel api: HTTPS', () => {
  it('serves https:// with --tls-cert and --tls-key', async () => {
    const cert = join(scratch.dir, 'cert.pem');
    const key = join(scratch.dir, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });

    const cli = startApi(['--tls-cert', cert, '--tls-key', key]);
    const url = await cli.url();
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      const health = await call(url, 'GET', '/v1/health', { dispatcher });
      expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
      const token = (await call(url, 'POST', '/v1/auth/login', { dispatcher, body: { username: 'admin', password: ADMIN_PASSWORD } })).body.token;
      const images = await call(url, 'GET', '/v1/images', { dispatcher, token });
      expect(images.status).toBe(200);
    } finally {
      await dispatcher.close();
    }
  });

  it('a certificate that is not PEM is refused by name', async () => {
    const cert = join(scratch.dir, 'cert.pem');
    const key = join(scratch.dir, 'key.pem');
    writeFileSync(cert, 'not a certificate');
    writeFileSync(key, 'not a key');
    const cli = startApi(['--tls-cert', cert, '--tls-key', key]);
    expect((await cli.exited()).code).toBe(1);
    expectOneErrorLine(cli, new RegExp(`^sentinel api: --tls-cert file ${cert} is not a PEM certificate`));
  });
});

describe('sentinel api: failures are one line on stderr and a non-zero exit', () => {
  const usageCases: [string, string[], string][] = [
    ['an unknown flag', ['--prot', '1'], 'unknown flag --prot (did you mean --port?)'],
    ['--port abc', ['--port', 'abc'], '--port must be an integer from 0 to 65535, got "abc"'],
    ['--port 70000', ['--port', '70000'], '--port must be an integer from 0 to 65535, got "70000"'],
    ['a positional argument', ['now'], 'unexpected argument "now" (sentinel api takes only flags)'],
    ['only --tls-cert', ['--tls-cert', '/etc/hosts'], 'both --tls-cert and --tls-key are needed for HTTPS'],
  ];

  it.each(usageCases)('%s: exit 2', async (_name, args, message) => {
    const cli = runCli(['api', ...args], cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
    expect((await cli.exited()).code).toBe(2);
    expectOneErrorLine(cli, message);
    expect(cli.stdout()).toBe('');
  });

  it('only SENTINEL_TLS_KEY set: exit 2', async () => {
    const cli = runCli(['api', '--port', '0'], cleanEnv(scratch.dir, { SENTINEL_TLS_KEY: '/etc/hosts' }));
    expect((await cli.exited()).code).toBe(2);
    expectOneErrorLine(cli, 'both --tls-cert and --tls-key are needed for HTTPS');
  });

  it('an unreadable certificate file: exit 1', async () => {
    const missing = join(scratch.dir, 'missing-cert.pem');
    const cli = startApi(['--tls-cert', missing, '--tls-key', missing]);
    expect((await cli.exited()).code).toBe(1);
    expectOneErrorLine(cli, `cannot read --tls-cert file ${missing}: no such file or directory`);
    // Checked before the store is opened: nothing was created.
    expect(existsSync(join(scratch.dir, 'data'))).toBe(false);
  });

  it('a port in use: exit 1', async () => {
    const port = await occupyPort();
    const cli = runCli(
      ['api', '--port', String(port), '--host', '127.0.0.1', '--data-dir', join(scratch.dir, 'data')],
      cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }),
    );
    expect((await cli.exited()).code).toBe(1);
    expectOneErrorLine(cli, `port ${port} on 127.0.0.1 is already in use`);
  });

  it('a data dir that cannot be created (under a regular file): exit 1', async () => {
    writeFileSync(join(scratch.dir, 'afile'), 'x');
    const dataDir = join(scratch.dir, 'afile', 'data');
    const cli = startApi([], { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }, dataDir);
    expect((await cli.exited()).code).toBe(1);
    expectOneErrorLine(cli, new RegExp(`^sentinel api: cannot use data directory ${dataDir}: `));
  });

  it('a too-short --token-auth-secret: exit 1', async () => {
    const cli = startApi(['--token-auth-secret', 'tiny-s3cr']);
    expect((await cli.exited()).code).toBe(1);
    expectOneErrorLine(cli, /^sentinel api: .*token secret must be at least 16 characters/);
    // A secret is never echoed, not even a rejected one.
    expect(cli.stderr() + cli.stdout()).not.toContain('tiny-s3cr');
  });
});
