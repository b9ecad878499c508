/**
 * Webhooks with real processes: `sentinel api --webhook-allow-private` (the built binary) and the
 * README's receiver, examples/webhook-receiver.mjs, which checks signatures with node:crypto
 * only. An agent's default webhook points at the receiver; a chat message makes a run; the
 * receiver prints the verified event. A forged or replayed request gets 401. Without the flag,
 * the loopback receiver is refused when the agent is created.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'webhook-admin-password';
const RECEIVER = fileURLToPath(new URL('../../../examples/webhook-receiver.mjs', import.meta.url));

let tmp: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  assertBuilt();
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-cli-webhooks-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
});

function startApi(args: string[] = []): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, 'data'), ...args], cleanEnv(tmp, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
}

async function call(url: string, method: string, body?: unknown, token?: string): Promise<{ status: number; body: any }> {
  const res = await request(url, {
    method: method as 'GET',
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text) };
}

/** Starts the example receiver with `secret`; resolves with its URL and a reader of what it printed. */
async function startReceiver(secret: string): Promise<{ url: string; output: () => string; waitFor: (pattern: RegExp) => Promise<RegExpExecArray> }> {
  const child = spawn(process.execPath, [RECEIVER], { env: cleanEnv(tmp, { WEBHOOK_SECRET: secret, PORT: '0' }), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const waitFor = async (pattern: RegExp): Promise<RegExpExecArray> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const match = pattern.exec(out);
      if (match) return match;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`receiver: no ${pattern} in ${JSON.stringify(out)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const url = (await waitFor(/^webhook receiver on (\S+)$/m))[1] as string;
  return { url, output: () => out, waitFor };
}

describe('sentinel api: webhooks', () => {
  it('delivers a run to the README receiver, which verifies it with node:crypto; forgeries get 401', async () => {
    const cli = startApi(['--webhook-allow-private']);
    const base = await cli.url();
    const { body: login } = await call(`${base}/v1/auth/login`, 'POST', { username: 'admin', password: ADMIN_PASSWORD });
    const token = login.token as string;
    const { body: secretBody } = await call(`${base}/v1/auth/webhook-secret`, 'GET', undefined, token);
    const receiver = await startReceiver(secretBody.secret as string);

    const agent = await call(`${base}/v1/agents`, 'POST', { image: 'sentinel/echo:latest', name: 'hooked', webhook: receiver.url }, token);
    expect(agent.status).toBe(201);
    const ws = new WebSocket(agent.body.endpoints.chat as string, { headers: { authorization: `Bearer ${token}` } });
    const frames: any[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data))));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'message', content: 'hello hooks', message_id: 'hook-1' }));
    const [, type, runId, status] = await receiver.waitFor(/^(run\.\S+) (run_[0-9a-f]{24}) (\S+)$/m);
    expect(type).toBe('run.completed');
    expect(status).toBe('completed');
    expect(frames.find((f) => f.type === 'stream_end')?.run_id).toBe(runId);
    ws.close();

    // The receiver prints before it answers, and the attempt is recorded after the answer.
    let deliveries = await call(`${base}/v1/agents/${agent.body.id}/runs/${runId}/deliveries`, 'GET', undefined, token);
    for (let i = 0; i < 100 && deliveries.body.deliveries[0]?.status !== 'delivered'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      deliveries = await call(`${base}/v1/agents/${agent.body.id}/runs/${runId}/deliveries`, 'GET', undefined, token);
    }
    expect(deliveries.body.deliveries).toHaveLength(1);
    expect(deliveries.body.deliveries[0]).toMatchObject({ status: 'delivered', event: 'run.completed', url: receiver.url });
    expect(deliveries.body.deliveries[0].attempts).toEqual([expect.objectContaining({ attempt: 1, status_code: 204, error: null })]);

    // What the receiver refuses: a wrong key, a changed body, a replay older than 5 minutes.
    const body = '{"type":"run.completed","timestamp":"2026-01-01T00:00:00Z","data":{"id":"run_x","status":"completed"}}';
    const sign = (key: Buffer, id: string, ts: number, text: string) => `v1,${createHmac('sha256', key).update(`${id}.${ts}.${text}`).digest('base64')}`;
    const realKey = Buffer.from((secretBody.secret as string).slice('whsec_'.length), 'base64');
    const now = Math.floor(Date.now() / 1000);
    const post = async (headers: Record<string, string>, text = body) =>
      (await request(receiver.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: text })).statusCode;
    expect(await post({ 'webhook-id': 'msg_f1', 'webhook-timestamp': String(now), 'webhook-signature': sign(Buffer.alloc(32, 7), 'msg_f1', now, body) })).toBe(401);
    expect(await post({ 'webhook-id': 'msg_f2', 'webhook-timestamp': String(now), 'webhook-signature': sign(realKey, 'msg_f2', now, body) }, `${body} `)).toBe(401);
    expect(await post({ 'webhook-id': 'msg_f3', 'webhook-timestamp': String(now - 600), 'webhook-signature': sign(realKey, 'msg_f3', now - 600, body) })).toBe(401);
    expect(await post({ 'webhook-id': 'msg_ok', 'webhook-timestamp': String(now), 'webhook-signature': sign(realKey, 'msg_ok', now, body) })).toBe(204);
    expect(receiver.output().match(/^run\./gm)).toHaveLength(2);
    // The request log names the secret route, never the secret.
    await cli.stop('SIGTERM');
    expect(cli.stdout()).toContain('/v1/auth/webhook-secret');
    expect(cli.stdout()).not.toContain((secretBody.secret as string).slice('whsec_'.length));
  });

  it('without --webhook-allow-private, a loopback webhook is refused when the agent is created', async () => {
    const cli = startApi();
    const base = await cli.url();
    const { body: login } = await call(`${base}/v1/auth/login`, 'POST', { username: 'admin', password: ADMIN_PASSWORD });
    const refused = await call(`${base}/v1/agents`, 'POST', { image: 'sentinel/echo:latest', name: 'refused', webhook: 'http://127.0.0.1:9/hook' }, login.token as string);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ code: 'invalid_request', error: expect.stringMatching(/loopback, private or link-local address; refused/) });
    await cli.stop('SIGTERM');
  });
});
