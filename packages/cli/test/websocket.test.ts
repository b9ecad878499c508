/**
 * `sentinel api` serves the WebSocket transport on its own port (ws://, and wss:// under TLS),
 * and a SIGTERM mid-stream ends the turn with reason "shutdown" and closes the socket with 1001
 * before the process exits 0. The built binary as a real child process, real sockets.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import { WebSocket, type ClientOptions } from 'ws';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'correct-horse-battery';

let tmp: string;
const sockets: WebSocket[] = [];

beforeAll(() => {
  assertBuilt();
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-cli-ws-'));
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate();
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
});

function startApi(args: string[] = []): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, 'data'), ...args], cleanEnv(tmp, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
}

async function postJson(url: string, body: unknown, token?: string, dispatcher?: Dispatcher): Promise<any> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
    ...(dispatcher ? { dispatcher } : {}),
  });
  const json = await res.body.json();
  expect(res.statusCode, JSON.stringify(json)).toBeLessThan(300);
  return json;
}

/** Logs in and creates an agent from the starter image; returns the token and the agent resource. */
async function agentSession(url: string, dispatcher?: Dispatcher): Promise<{ token: string; agent: any }> {
  const { token } = await postJson(`${url}/v1/auth/login`, { username: 'admin', password: ADMIN_PASSWORD }, undefined, dispatcher);
  const agent = await postJson(`${url}/v1/agents`, { image: 'sentinel/echo:latest', name: 'cli-ws' }, token, dispatcher);
  return { token, agent };
}

interface OpenSocket {
  ws: WebSocket;
  frames: any[];
  waitFor(predicate: (frame: any) => boolean, what: string): Promise<any>;
  closed: Promise<{ code: number; reason: string }>;
}

function openSocket(url: string, token: string, options: ClientOptions = {}): Promise<OpenSocket> {
  const ws = new WebSocket(url, { ...options, headers: { authorization: `Bearer ${token}` } });
  sockets.push(ws);
  const frames: any[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    frames.push(JSON.parse(String(data)));
    for (const waiter of [...waiters]) waiter();
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const waitFor = (predicate: (frame: any) => boolean, what: string): Promise<any> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(frames.slice(-5))}`)), 15_000);
      const check = (): void => {
        const found = frames.find(predicate);
        if (found !== undefined) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        }
      };
      waiters.add(check);
      check();
    });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, frames, waitFor, closed }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
  });
}

describe('sentinel api: WebSockets', () => {
  it('chats over the ws:// endpoint of the agent; SIGTERM mid-stream ends the turn with "shutdown", closes 1001, exits 0', async () => {
    const cli = startApi();
    const url = await cli.url();
    const { token, agent } = await agentSession(url);
    expect(agent.endpoints.chat).toBe(`${url.replace('http://', 'ws://')}/v1/agents/${agent.id}/chat`);

    const chat = await openSocket(agent.endpoints.chat as string, token);
    const events = await openSocket(agent.endpoints.events as string, token);
    expect(await chat.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame')).toMatchObject({ data: { agent_id: agent.id } });
    await events.waitFor((f) => f.event_type === 'agent_status', 'the snapshot');

    chat.ws.send(JSON.stringify({ type: 'message', content: 'hello from the cli test', message_id: 'm-1' }));
    expect(await chat.waitFor((f) => f.type === 'stream_end' && f.message_id === 'm-1', 'the first answer')).toMatchObject({
      content: 'Echo: hello from the cli test',
      reason: 'stop',
    });

    const long = Array.from({ length: 400 }, (_, i) => `w${i}`).join(' ');
    chat.ws.send(JSON.stringify({ type: 'message', content: long, message_id: 'm-2' }));
    await chat.waitFor((f) => f.type === 'stream_chunk' && f.message_id === 'm-2', 'a chunk of the long answer');
    cli.child.kill('SIGTERM');

    const end = await chat.waitFor((f) => f.message_id === 'm-2' && (f.type === 'stream_end' || f.type === 'error'), 'the terminal frame');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'shutdown' });
    expect(await chat.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect((await events.closed).code).toBe(1001);
    expect(await cli.exited()).toEqual({ code: 0, signal: null });
    expect(cli.stderrLines()).toEqual(['sentinel api: shutting down (SIGTERM)']);
  });

  it('under TLS the agent endpoints are wss:// and the chat works over them', async () => {
    const cert = join(tmp, 'cert.pem');
    const key = join(tmp, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    const cli = startApi(['--tls-cert', cert, '--tls-key', key]);
    const url = await cli.url();
    const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      const { token, agent } = await agentSession(url, dispatcher);
      expect(agent.endpoints.chat).toBe(`${url.replace('https://', 'wss://')}/v1/agents/${agent.id}/chat`);
      const chat = await openSocket(agent.endpoints.chat as string, token, { rejectUnauthorized: false });
      await chat.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
      chat.ws.send(JSON.stringify({ type: 'message', content: 'over tls', message_id: 'm-tls' }));
      expect(await chat.waitFor((f) => f.type === 'stream_end', 'the answer')).toMatchObject({ content: 'Echo: over tls', reason: 'stop' });
    } finally {
      await dispatcher.close();
    }
    expect(await cli.stop()).toEqual({ code: 0, signal: null });
  });
});
