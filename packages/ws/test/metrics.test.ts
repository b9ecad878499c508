/**
 * Prometheus metrics end to end (issue 18): the real server and WebSocket transport, REST calls,
 * a chat turn in which a loopback OpenAI fake calls `calculator`, a provider answering 500, a
 * consumer too slow for its socket; after each, `GET /metrics` is scraped and read with a real
 * parser of the exposition format, and the series and their values checked. Then the scope that
 * guards the route, and label cardinality: 200 agents do not add a single series.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentDefinition, type Principal } from '@sentinel/api-core';
import { FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { openAiErrorReply, openAiStream, openAiTextEvents, openAiToolCallEvents } from '@sentinel/test-support/fakes/openai-fake';
import { histogramSeries, parseExposition, seriesCount, sumOf, valueOf, type Exposition } from '@sentinel/test-support/prometheus';
import { FrameClient } from './ws-client.js';
import { bearer, BOB, eventually, startWsEnv, type WsEnv } from './ws-env.js';

const MODEL = 'gpt-metrics-test';
const QUEUE_CAP = 256 * 1024;
const BIG_CONTENT = 'x'.repeat(64 * 1024);

let env: WsEnv;
let fake: FakeProviderServer;
const clients: FrameClient[] = [];
const sockets: Socket[] = [];

async function scrape(token = env.adminToken): Promise<Exposition> {
  const response = await fetch(`${env.host.baseUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  const text = await response.text();
  return parseExposition(text);
}

async function get(path: string, token = env.adminToken): Promise<Response> {
  const response = await fetch(`${env.host.baseUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  await response.arrayBuffer();
  return response;
}

async function chat(agentId: string): Promise<FrameClient> {
  const client = await FrameClient.connect(env.url(agentId, 'chat'), bearer(env.adminToken));
  clients.push(client);
  await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
  return client;
}

/** The only series ours: prom-client's process metrics (GC kinds, handle types) come and go with the runtime. */
function ownSeries(families: Exposition): number {
  return seriesCount(families, (name) => /^(http_server_|sentinel_|gen_ai_)/.test(name));
}

beforeAll(async () => {
  fake = await FakeProviderServer.start();
  env = await startWsEnv('standalone', {
    ws: { sendQueueMaxBytes: QUEUE_CAP, highWaterMarkBytes: 64 * 1024, closeTimeoutMs: 2_000 },
    // One attempt: the 500 below must be one failed call, not three.
    providers: { env: {}, file: false, openai: { apiKey: 'sk-metrics-test', baseUrl: `${fake.url}/v1` }, retries: { attempts: 1, baseDelayMs: 1 } },
  });
  await env.api.images.build(
    parseAgentDefinition({ name: 'metrics/gpt', tag: 'v1', model: { provider: 'openai', name: MODEL }, instructions: 'Use the calculator.', tools: ['calculator'] }),
  );
});

afterAll(async () => {
  for (const client of clients) client.close();
  for (const socket of sockets) socket.destroy();
  await env?.close();
  await fake?.close();
});

describe('GET /metrics', () => {
  it('needs a credential with metrics:read: 401 without, 403 for a user or a key without the scope, 200 for an admin or its metrics key', async () => {
    const anonymous = await fetch(`${env.host.baseUrl}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ code: 'unauthorized' });

    const user = await get('/metrics', env.bobToken);
    expect(user.status).toBe(403);
    const admin: Principal = { username: 'admin', role: 'admin' };
    const readKey = await env.api.apiKeys.create(admin, { name: 'reader', scopes: ['agents:read'] });
    const denied = await fetch(`${env.host.baseUrl}/metrics`, { headers: { authorization: `Bearer ${readKey.key}` } });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ code: 'insufficient_scope' });

    const metricsKey = await env.api.apiKeys.create(admin, { name: 'prometheus', scopes: ['metrics:read'] });
    const families = await scrape(metricsKey.key);
    expect(families.get('http_server_request_duration_seconds')?.type).toBe('HISTOGRAM');
    // A user cannot mint a metrics key: the scope is for admins only.
    await expect(env.api.apiKeys.create(BOB, { name: 'sneaky', scopes: ['metrics:read'] })).rejects.toMatchObject({ code: 'insufficient_scope' });

    const post = await fetch(`${env.host.baseUrl}/metrics`, { method: 'POST', headers: { authorization: `Bearer ${env.adminToken}` } });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.arrayBuffer();
  });

  it('exports the process metrics (event loop lag, heap, GC, CPU)', async () => {
    const families = await scrape();
    for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds', 'process_cpu_user_seconds_total']) {
      expect(families.has(name), name).toBe(true);
    }
  });
});

describe('series after REST calls', () => {
  it('counts requests by method, route template and status, never by raw path', async () => {
    const before = await scrape();
    const health = { method: 'GET', route: '/v1/health', status: '200' };
    const missing = { method: 'GET', route: '/v1/agents/:id', status: '404' };
    const healthBefore = before.has('http_server_request_duration_seconds') ? valueOf(before, 'http_server_request_duration_seconds', health) : 0;
    const missingBefore = valueOf(before, 'http_server_request_duration_seconds', missing);
    const unmatchedBefore = valueOf(before, 'http_server_request_duration_seconds', { route: 'unmatched', status: '404' });

    for (let i = 0; i < 3; i++) expect((await fetch(`${env.host.baseUrl}/v1/health`)).status).toBe(200);
    expect((await get('/v1/agents/no-such-agent-1')).status).toBe(404);
    expect((await get('/v1/agents/no-such-agent-2')).status).toBe(404);
    expect((await get('/v1/no/such/route')).status).toBe(404);

    const after = await scrape();
    expect(valueOf(after, 'http_server_request_duration_seconds', health) - healthBefore).toBe(3);
    expect(valueOf(after, 'http_server_request_duration_seconds', missing) - missingBefore).toBe(2);
    expect(valueOf(after, 'http_server_request_duration_seconds', { route: 'unmatched', status: '404' }) - unmatchedBefore).toBe(1);
    // The histogram's time is real: > 0, and far below a second for a health check.
    const healthSum = sumOf(after, 'http_server_request_duration_seconds', health);
    expect(healthSum).toBeGreaterThan(0);
    expect(healthSum).toBeLessThan(3);
    const routes = new Set(histogramSeries(after, 'http_server_request_duration_seconds').map((labels) => labels.route));
    for (const route of routes) expect(route === 'unmatched' || route === '/metrics' || route?.startsWith('/v1/') || route === '/docs' || route === '/console').toBe(true);
    expect([...routes].some((route) => route?.includes('no-such'))).toBe(false);
    // The store was timed, by back end and operation.
    expect(valueOf(after, 'sentinel_store_operation_duration_seconds', { backend: 'sqlite', operation: 'getAgent' })).toBeGreaterThan(0);
  });
});

describe('series after a chat turn with a tool call', () => {
  it('counts the turn, both model calls with their tokens, the frames each way and the open socket', async () => {
    const agent = await env.createAgent({ image: 'metrics/gpt:v1' });
    const before = await scrape();
    const genAi = { gen_ai_provider_name: 'openai', gen_ai_request_model: MODEL };
    const stopBefore = valueOf(before, 'sentinel_turns_total', { status: 'stop' });
    const turnsBefore = valueOf(before, 'sentinel_turn_duration_seconds');
    const appendsBefore = valueOf(before, 'sentinel_event_log_appends_total');
    const publishesBefore = valueOf(before, 'sentinel_bus_publish_total');
    const chatInBefore = valueOf(before, 'sentinel_ws_messages_total', { channel: 'chat', direction: 'in' });
    const chatOutBefore = valueOf(before, 'sentinel_ws_messages_total', { channel: 'chat', direction: 'out' });

    fake.reply(
      openAiStream(openAiToolCallEvents([{ id: 'call_m_1', name: 'calculator', argumentChunks: ['{"expression": "6*7"}'] }], { usage: { prompt_tokens: 40, completion_tokens: 12 } })),
      openAiStream(openAiTextEvents(['6*7 ', 'is 42.'], { usage: { prompt_tokens: 70, completion_tokens: 6 } })),
    );
    const client = await chat(agent.id);
    client.send({ type: 'message', content: 'What is 6*7?', message_id: 'm1' });
    expect(await client.terminal('m1')).toMatchObject({ type: 'stream_end', reason: 'stop', content: '6*7 is 42.' });
    const framesOut = client.frames.length;

    const during = await scrape();
    expect(valueOf(during, 'sentinel_ws_connections', { channel: 'chat' })).toBe(1);
    expect(valueOf(during, 'sentinel_turns_total', { status: 'stop' }) - stopBefore).toBe(1);
    expect(valueOf(during, 'sentinel_turn_duration_seconds') - turnsBefore).toBe(1);
    expect(valueOf(during, 'sentinel_turns_running')).toBe(0);
    expect(valueOf(during, 'sentinel_turn_queue_depth')).toBe(0);
    // Two model rounds: the tool call, then the answer; tokens as the provider reported them.
    expect(valueOf(during, 'gen_ai_client_operation_duration_seconds', genAi)).toBe(2);
    expect(sumOf(during, 'gen_ai_client_operation_duration_seconds', genAi)).toBeGreaterThan(0);
    expect(valueOf(during, 'gen_ai_client_token_usage', { ...genAi, gen_ai_token_type: 'input' })).toBe(2);
    expect(sumOf(during, 'gen_ai_client_token_usage', { ...genAi, gen_ai_token_type: 'input' })).toBe(110);
    expect(sumOf(during, 'gen_ai_client_token_usage', { ...genAi, gen_ai_token_type: 'output' })).toBe(18);
    // One frame in (the message); every frame the client got, out (welcome included).
    expect(valueOf(during, 'sentinel_ws_messages_total', { channel: 'chat', direction: 'in' }) - chatInBefore).toBe(1);
    expect(valueOf(during, 'sentinel_ws_messages_total', { channel: 'chat', direction: 'out' }) - chatOutBefore).toBe(framesOut);
    // message_received, tool_used, message_processed at least, each stored then published.
    expect(valueOf(during, 'sentinel_event_log_appends_total') - appendsBefore).toBeGreaterThanOrEqual(3);
    expect(valueOf(during, 'sentinel_bus_publish_total') - publishesBefore).toBeGreaterThanOrEqual(3);

    client.close();
    await eventually(() => env.handle.clients === 0, 'the chat socket to close');
    expect(valueOf(await scrape(), 'sentinel_ws_connections', { channel: 'chat' })).toBe(0);
  });

  it('a provider answering 500 counts one provider error by code and one turn ended in error', async () => {
    const agent = await env.createAgent({ image: 'metrics/gpt:v1' });
    const before = await scrape();
    const errorsBefore = before.has('sentinel_provider_errors_total') ? valueOf(before, 'sentinel_provider_errors_total', { provider: 'openai' }) : 0;
    const failedBefore = valueOf(before, 'sentinel_turns_total', { status: 'error' });
    fake.reply(openAiErrorReply(500, 'The server had an error while processing your request.'));
    const client = await chat(agent.id);
    client.send({ type: 'message', content: 'hello?', message_id: 'e1' });
    expect(await client.terminal('e1')).toMatchObject({ type: 'error', code: 'upstream_error' });

    const after = await scrape();
    expect(valueOf(after, 'sentinel_provider_errors_total', { provider: 'openai', code: 'upstream_error' }) - errorsBefore).toBe(1);
    expect(valueOf(after, 'sentinel_provider_errors_total', { provider: 'openai' }) - errorsBefore).toBe(1);
    expect(valueOf(after, 'sentinel_turns_total', { status: 'error' }) - failedBefore).toBe(1);
    client.close();
  });
});

describe('series after a slow consumer', () => {
  it('counts the 1008 close in sentinel_ws_slow_consumer_closes_total, as the transport does', async () => {
    const agent = await env.createAgent();
    let raw: Socket | undefined;
    const client = await FrameClient.connect(env.url(agent.id, 'events'), {
      ...bearer(env.adminToken),
      createConnection: (options) => {
        raw = connect(options as Parameters<typeof connect>[0]);
        sockets.push(raw);
        return raw;
      },
    });
    clients.push(client);
    await client.waitFor((f) => f.event_type === 'agent_status', 'the snapshot');
    const before = await scrape();
    const slowBefore = valueOf(before, 'sentinel_ws_slow_consumer_closes_total');
    expect(valueOf(before, 'sentinel_ws_connections', { channel: 'events' })).toBe(1);
    raw?.pause();
    const closesBefore = env.handle.stats.slowConsumerCloses;
    let appended = 0;
    while (env.handle.stats.slowConsumerCloses === closesBefore) {
      if (appended >= 2_000) throw new Error('no slow-consumer close after 2000 events of 64 KiB');
      await new Promise((resolve) => setImmediate(resolve));
      await env.api.journal.event(agent.id, 'flood', BIG_CONTENT, { n: appended++ });
    }
    raw?.resume();
    expect(await client.closed).toEqual({ code: 1008, reason: 'consumer too slow' });
    await eventually(() => env.handle.clients === 0, 'the socket to be gone');
    const after = await scrape();
    expect(valueOf(after, 'sentinel_ws_slow_consumer_closes_total') - slowBefore).toBe(1);
    expect(valueOf(after, 'sentinel_ws_connections', { channel: 'events' })).toBe(0);
    expect(valueOf(after, 'sentinel_event_log_appends_total') - valueOf(before, 'sentinel_event_log_appends_total')).toBe(appended);
  });
});

describe('label cardinality', () => {
  it('200 agents, each read and several chatted with, add no series', async () => {
    /** Creates `count` echo agents, reads each over REST, chats with `chats` of them. */
    const exercise = async (count: number, chats: number): Promise<void> => {
      const ids: string[] = [];
      for (let i = 0; i < count; i++) ids.push((await env.createAgent()).id);
      for (const id of ids) expect((await get(`/v1/agents/${id}`)).status).toBe(200);
      expect((await get('/v1/agents')).status).toBe(200);
      for (const id of ids.slice(0, chats)) {
        const client = await chat(id);
        client.send({ type: 'message', content: `hello ${id}`, message_id: `c-${id}` });
        expect(await client.terminal(`c-${id}`)).toMatchObject({ type: 'stream_end', reason: 'stop' });
        client.close();
      }
      await eventually(() => env.handle.clients === 0, 'the chat sockets to close');
    };
    // Once, so every kind of series these calls touch exists.
    await exercise(5, 2);
    const baseline = await scrape();
    await exercise(195, 5);
    const after = await scrape();
    expect(ownSeries(after)).toBe(ownSeries(baseline));
    const text = JSON.stringify([...after.values()]);
    const agents = await env.api.store.listAgents({});
    expect(agents.length).toBeGreaterThanOrEqual(200);
    // No agent id (nor any raw path) is a label value anywhere.
    for (const agent of agents) expect(text.includes(agent.id)).toBe(false);
  }, 120_000);
});
