/**
 * End to end with a real model provider's wire format: the real HTTP server and WebSocket
 * transport, an image on the `openai` provider pointed at a loopback fake that speaks Chat
 * Completions SSE, a chat over a real `ws` client in which the model calls `calculator`, the
 * result goes back, the answer streams and the usage is counted. Then cancellation reaching the
 * provider, failures that say what to configure, and a sweep for the API key everywhere.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJsonLogger, createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { closedPort, FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { openAiErrorReply, openAiStream, openAiTextEvents, openAiToolCallEvents, OPENAI_SSE_HEADERS } from '@sentinel/test-support/fakes/openai-fake';
import { FrameClient, type Frame } from './ws-client.js';

const API_KEY = 'sk-proj-E2E-SECRET-MARK-7f3a9c1d5e8b2f40';
const ADMIN_PASSWORD = 'admin-password-for-e2e-tests';

let dir: string;
let fake: FakeProviderServer;
let api: SentinelApi;
let server: RunningServer;
let sockets: WebSocketHandle;
let token: string;
const logLines: string[] = [];
const responseBodies: string[] = [];
const clients: FrameClient[] = [];

async function http(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: any }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': contentType }) },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  responseBodies.push(text);
  return { status: response.status, json: text === '' ? undefined : JSON.parse(text) };
}

async function chat(agentId: string): Promise<FrameClient> {
  const client = await FrameClient.connect(`${server.url.replace(/^http/, 'ws')}/v1/agents/${agentId}/chat`, { headers: { authorization: `Bearer ${token}` } });
  clients.push(client);
  await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
  return client;
}

/** Every event of the agent so far, through the events WebSocket replay. */
async function eventsOf(agentId: string, until: (frames: Frame[]) => boolean): Promise<Frame[]> {
  const client = await FrameClient.connect(`${server.url.replace(/^http/, 'ws')}/v1/agents/${agentId}/events?since=0`, { headers: { authorization: `Bearer ${token}` } });
  clients.push(client);
  await client.waitForCount(() => true, 1, 'the status snapshot');
  await (async () => {
    const deadline = Date.now() + 5000;
    while (!until(client.frames)) {
      if (Date.now() > deadline) throw new Error(`events never matched: ${JSON.stringify(client.frames.map((f) => f.event_type))}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  client.close();
  return client.frames;
}

async function buildImage(name: string, provider: string): Promise<void> {
  const created = await http('POST', '/v1/images', {
    name,
    tag: 'v1',
    model: { provider, name: `${provider}-e2e-model`, parameters: { temperature: 0.1 } },
    instructions: 'Use the calculator for arithmetic.',
    tools: ['calculator'],
  });
  expect(created.status).toBe(201);
}

async function createAgent(image: string, name: string): Promise<string> {
  const created = await http('POST', '/v1/agents', { image, name });
  expect(created.status).toBe(201);
  return created.json.id as string;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-providers-e2e-'));
  fake = await FakeProviderServer.start();
  const ollamaPort = await closedPort();
  const logger = createJsonLogger({ level: 'debug', write: (line) => logLines.push(line) });
  api = await createSentinelApi({
    dataDir: dir,
    tokenSecret: 'providers-e2e-secret-0123456789abcdef',
    adminPassword: ADMIN_PASSWORD,
    logger,
    providers: {
      env: {},
      file: false,
      openai: { apiKey: API_KEY, baseUrl: `${fake.url}/v1` },
      // No key for api.anthropic.com, and an Ollama that is not running: both must say what to configure.
      anthropic: { baseUrl: 'https://api.anthropic.com' },
      ollama: { host: `127.0.0.1:${ollamaPort}` },
      retries: { attempts: 2, baseDelayMs: 5 },
    },
  });
  server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: true, logger });
  sockets = attachWebSocket(server.server, api, { logger });
  const login = await http('POST', '/v1/auth/login', { username: 'admin', password: ADMIN_PASSWORD });
  token = login.json.token;
  await buildImage('e2e/gpt', 'openai');
  await buildImage('e2e/claude', 'anthropic');
  await buildImage('e2e/llama', 'ollama');
});

afterAll(async () => {
  for (const client of clients) client.close();
  await sockets?.close();
  await server?.close();
  await api?.close();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a chat with an openai-compatible model over the real WebSocket', () => {
  let agentId: string;

  it('runs the model tool call, feeds the result back, streams the answer and counts the usage', async () => {
    agentId = await createAgent('e2e/gpt:v1', 'calc');
    fake.reply(
      openAiStream(openAiToolCallEvents([{ id: 'call_e2e_1', name: 'calculator', argumentChunks: ['{"expre', 'ssion": "1', '2*(3+4)"}'] }], { usage: { prompt_tokens: 40, completion_tokens: 12 } })),
      openAiStream(openAiTextEvents(['12*(3+4) ', 'is ', '84.'], { usage: { prompt_tokens: 70, completion_tokens: 6 } })),
    );
    const client = await chat(agentId);
    client.send({ type: 'message', content: 'What is 12*(3+4)?', message_id: 'm1' });
    const end = await client.terminal('m1');
    expect(end).toMatchObject({ type: 'stream_end', content: '12*(3+4) is 84.', reason: 'stop', usage: { input_tokens: 110, output_tokens: 18, total_tokens: 128 } });

    const frames = client.framesFor('m1');
    expect(frames.map((f) => (f.type === 'event' ? `event:${f.event_type}` : f.type))).toEqual([
      'event:thinking',
      'stream_start',
      'event:tool_call',
      'tool_result',
      'stream_chunk',
      'stream_chunk',
      'stream_chunk',
      'stream_end',
    ]);
    expect(frames[2]).toMatchObject({ data: { call_id: 'call_e2e_1', tool: 'calculator', parameters: { expression: '12*(3+4)' } } });
    expect(frames[3]).toMatchObject({ call_id: 'call_e2e_1', tool: 'calculator', status: 'success', result: { expression: '12*(3+4)', result: 84 } });
    expect(frames.filter((f) => f.type === 'stream_chunk').map((f) => f.chunk_index)).toEqual([0, 1, 2]);

    // What the provider was sent: the key, the tools, then the tool result on the second round.
    expect(fake.requests).toHaveLength(2);
    const [first, second] = fake.requests;
    expect(first?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(first?.json).toMatchObject({ model: 'openai-e2e-model', temperature: 0.1, stream: true, stream_options: { include_usage: true } });
    expect(first?.json.tools.map((t: any) => t.function.name)).toEqual(['calculator']);
    expect(second?.json.messages).toEqual([
      { role: 'system', content: 'Use the calculator for arithmetic.' },
      { role: 'user', content: 'What is 12*(3+4)?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_e2e_1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"12*(3+4)"}' } }] },
      { role: 'tool', tool_call_id: 'call_e2e_1', content: '{"expression":"12*(3+4)","result":84}' },
    ]);

    const agent = await http('GET', `/v1/agents/${agentId}`);
    expect(agent.json.api_usage).toEqual({ requests: 1, tokens: 128 });
    const events = await eventsOf(agentId, (fs) => fs.some((f) => f.event_type === 'message_processed'));
    expect(events.find((f) => f.event_type === 'tool_used')).toMatchObject({ data: { tool: 'calculator', status: 'success', call_id: 'call_e2e_1', message_id: 'm1' } });
  });

  it('a cancel mid-stream ends the turn and closes the upstream connection', async () => {
    const events = openAiTextEvents(['Let me think ', 'very hard']);
    fake.reply({ status: 200, headers: OPENAI_SSE_HEADERS, steps: [{ write: events.slice(0, 2).join('') }, { stall: true }] });
    const index = fake.requests.length;
    const client = await chat(agentId);
    client.send({ type: 'message', content: 'Think about it.', message_id: 'm2' });
    await client.waitFor((f) => f.type === 'stream_chunk' && f.message_id === 'm2', 'the first chunk');
    client.send({ type: 'cancel', message_id: 'm2' });
    expect(await client.terminal('m2')).toMatchObject({ type: 'stream_end', reason: 'cancelled', content: 'Let me think ' });
    expect(await fake.requests[index]?.ended).toBe('closed-early');
  });

  it('an upstream failure is an upstream_error frame naming what to check, and the agent answers the next message', async () => {
    fake.reply(openAiErrorReply(401, `Incorrect API key provided: ${API_KEY}.`, { code: 'invalid_api_key' }), openAiStream(openAiTextEvents(['Back again.'])));
    const client = await chat(agentId);
    client.send({ type: 'message', content: 'hello?', message_id: 'm3' });
    const error = await client.terminal('m3');
    expect(error).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(error.error).toMatch(/^openai: 401 Unauthorized: .* — check OPENAI_API_KEY$/);
    client.send({ type: 'message', content: 'hello again', message_id: 'm4' });
    expect(await client.terminal('m4')).toMatchObject({ type: 'stream_end', content: 'Back again.' });
  });

  it('a missing key and an unreachable provider answer upstream_error frames that say what to configure; the socket stays open', async () => {
    const claude = await chat(await createAgent('e2e/claude:v1', 'no-key'));
    claude.send({ type: 'message', content: 'hi', message_id: 'k1' });
    const noKey = await claude.terminal('k1');
    expect(noKey).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(noKey.error).toMatch(/^anthropic: no API key configured: set ANTHROPIC_API_KEY/);

    const llama = await chat(await createAgent('e2e/llama:v1', 'unreachable'));
    llama.send({ type: 'message', content: 'hi', message_id: 'u1' });
    const down = await llama.terminal('u1');
    expect(down).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(down.error).toMatch(/^ollama: cannot connect to http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED \(after 2 attempts\) — check OLLAMA_HOST$/);
    llama.send({ type: 'message', content: 'still there?', message_id: 'u2' });
    expect(await llama.terminal('u2')).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(llama.ws.readyState).toBe(llama.ws.OPEN);
  });

  it('the API key appears in no log line, event, HTTP response or chat frame', async () => {
    // Everything the server says about its agents, through every door.
    const agents = await http('GET', '/v1/agents');
    for (const agent of agents.json.agents as { id: string }[]) {
      await http('GET', `/v1/agents/${agent.id}`);
      await http('GET', `/v1/agents/${agent.id}/logs?tail=all`);
      await eventsOf(agent.id, () => true);
    }
    await http('GET', '/v1/images');
    await http('GET', '/v1/openapi.json');
    const allFrames = JSON.stringify(clients.map((c) => c.frames));
    // The sweep is meaningful: the key was configured and used, and the upstream echoed it back.
    expect(fake.requests.some((r) => r.headers.authorization === `Bearer ${API_KEY}`)).toBe(true);
    expect(fake.requests.some((r) => r.body.includes(API_KEY))).toBe(false);
    expect(logLines.length).toBeGreaterThan(10);
    expect(allFrames).toContain('upstream_error');
    for (const [where, text] of [
      ['log lines', logLines.join('\n')],
      ['HTTP responses', responseBodies.join('\n')],
      ['chat and event frames', allFrames],
    ] as const) {
      expect(text.includes(API_KEY), where).toBe(false);
      expect(text.includes('E2E-SECRET-MARK'), where).toBe(false);
    }
  });
});
