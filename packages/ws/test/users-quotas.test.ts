/**
 * Disabled users and quotas on model usage over the real WebSocket on every host. A disabled
 * user's upgrade is refused (401) at once. Quotas: an agent on the `openai`
 * provider pointed at a loopback fake that speaks Chat Completions SSE. A turn over the user's
 * turns or tokens quota ends with an `error` frame `quota_exceeded` before any provider call
 * (the fake sees no request for it), and `GET /v1/auth/me` shows usage against quota.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { openAiStream, openAiTextEvents } from '@sentinel/test-support/fakes/openai-fake';
import { FrameClient, refusal } from './ws-client.js';

const ADMIN_PASSWORD = 'admin-password-for-quota-tests';

describe.each(HOSTS)('disabled users and quotas on model usage on %s', (hostName) => {
  let dir: string;
  let fake: FakeProviderServer;
  let api: SentinelApi;
  let mounted: MountedApi;
  let sockets: WebSocketHandle;
  let adminToken: string;
  const clients: FrameClient[] = [];

  async function http(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any }> {
    const response = await fetch(`${mounted.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text === '' ? undefined : JSON.parse(text) };
  }

  /** A user with `quotas`, their token and an agent of theirs on the fake model. */
  async function userWithAgent(username: string, quotas: Record<string, number>): Promise<{ token: string; agentId: string }> {
    expect((await http('POST', '/v1/users', adminToken, { username, password: `${username}-password` })).status).toBe(201);
    expect((await http('PATCH', `/v1/users/${username}`, adminToken, { quotas })).status).toBe(200);
    const login = await http('POST', '/v1/auth/login', '', { username, password: `${username}-password` });
    const token = login.json.token as string;
    const created = await http('POST', '/v1/agents', token, { image: 'quota/gpt:v1', name: 'counted' });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    return { token, agentId: created.json.id as string };
  }

  async function chat(agentId: string, token: string): Promise<FrameClient> {
    const client = await FrameClient.connect(`${mounted.baseUrl.replace(/^http/, 'ws')}/v1/agents/${agentId}/chat`, { headers: { authorization: `Bearer ${token}` } });
    clients.push(client);
    await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
    return client;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-quotas-ws-'));
    fake = await FakeProviderServer.start();
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'quotas-ws-secret-0123456789abcdef',
      adminPassword: ADMIN_PASSWORD,
      providers: { env: {}, file: false, openai: { apiKey: 'sk-quota-test-key', baseUrl: `${fake.url}/v1` }, retries: { attempts: 1, baseDelayMs: 5 } },
    });
    mounted = await mountApi(hostName, api, { logRequests: false });
    sockets = attachWebSocket(mounted.server, api);
    adminToken = (await http('POST', '/v1/auth/login', '', { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    const image = await http('POST', '/v1/images', adminToken, {
      name: 'quota/gpt',
      tag: 'v1',
      model: { provider: 'openai', name: 'gpt-quota-model' },
    });
    expect(image.status, JSON.stringify(image.json)).toBe(201);
  }, 30_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await sockets?.close();
    await mounted?.close();
    await api?.close();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns_per_day=1: the second turn ends quota_exceeded and the provider received exactly one request', async () => {
    const { token, agentId } = await userWithAgent('oneturn', { turns_per_day: 1 });
    const before = fake.requests.length;
    fake.reply(openAiStream(openAiTextEvents(['first ', 'answer'], { usage: { prompt_tokens: 9, completion_tokens: 2 } })));
    const client = await chat(agentId, token);
    client.send({ type: 'message', content: 'hello', message_id: 't1' });
    expect(await client.terminal('t1')).toMatchObject({ type: 'stream_end', content: 'first answer' });
    client.send({ type: 'message', content: 'again', message_id: 't2' });
    const refused = await client.terminal('t2');
    expect(refused).toMatchObject({ type: 'error', code: 'quota_exceeded', error: expect.stringContaining('1 of 1 turns per day') });
    expect(client.framesFor('t2').some((f) => f.type === 'stream_start')).toBe(false);
    expect(fake.requests.length - before).toBe(1);
    const me = await http('GET', '/v1/auth/me', token);
    expect(me.json).toMatchObject({ quotas: { turns_per_day: 1, tokens_per_day: null }, usage: { turns_today: 1, tokens_today: 11, agents: 1 } });
    // The refused message was not stored: the conversation holds the one answered turn.
    const history = await api.store.listMessages(agentId);
    expect(history.map((m) => m.content)).toEqual(['hello', 'first answer']);
    // An admin raising the quota lets the next turn through at once.
    expect((await http('PATCH', '/v1/users/oneturn', adminToken, { quotas: { turns_per_day: 2 } })).status).toBe(200);
    fake.reply(openAiStream(openAiTextEvents(['second'], { usage: { prompt_tokens: 3, completion_tokens: 1 } })));
    client.send({ type: 'message', content: 'third try', message_id: 't3' });
    expect(await client.terminal('t3')).toMatchObject({ type: 'stream_end', content: 'second' });
    expect(fake.requests.length - before).toBe(2);
  });

  it('tokens_per_day: a turn that reaches the quota completes, the next one is refused before the provider', async () => {
    const { token, agentId } = await userWithAgent('tokens', { tokens_per_day: 100 });
    const before = fake.requests.length;
    fake.reply(
      openAiStream(openAiTextEvents(['small'], { usage: { prompt_tokens: 30, completion_tokens: 10 } })),
      openAiStream(openAiTextEvents(['big'], { usage: { prompt_tokens: 60, completion_tokens: 20 } })),
    );
    const client = await chat(agentId, token);
    client.send({ type: 'message', content: 'one', message_id: 'k1' });
    expect(await client.terminal('k1')).toMatchObject({ type: 'stream_end', usage: { total_tokens: 40 } });
    expect((await http('GET', '/v1/auth/me', token)).json.usage).toEqual({ tokens_today: 40, turns_today: 1, agents: 1 });
    client.send({ type: 'message', content: 'two', message_id: 'k2' });
    expect(await client.terminal('k2')).toMatchObject({ type: 'stream_end', usage: { total_tokens: 80 } });
    client.send({ type: 'message', content: 'three', message_id: 'k3' });
    expect(await client.terminal('k3')).toMatchObject({ type: 'error', code: 'quota_exceeded', error: expect.stringContaining('120 of 100 tokens per day') });
    expect(fake.requests.length - before).toBe(2);
    expect((await http('GET', '/v1/auth/me', token)).json).toMatchObject({ quotas: { tokens_per_day: 100 }, usage: { tokens_today: 120, turns_today: 2, agents: 1 } });
  });

  it("refuses a disabled user's WebSocket upgrade at once (401 account disabled), and takes it again once enabled", async () => {
    const { token, agentId } = await userWithAgent('paused', { concurrent_agents: 1 });
    const open = await chat(agentId, token);
    open.close();
    expect((await http('PATCH', '/v1/users/paused', adminToken, { disabled: true })).status).toBe(200);
    const url = `${mounted.baseUrl.replace(/^http/, 'ws')}/v1/agents/${agentId}/chat`;
    expect(await refusal(url, { headers: { authorization: `Bearer ${token}` } })).toMatchObject({
      status: 401,
      opened: false,
      body: { code: 'unauthorized', error: 'account disabled' },
    });
    expect((await http('PATCH', '/v1/users/paused', adminToken, { disabled: false })).status).toBe(200);
    (await chat(agentId, token)).close();
  });
});
