/**
 * Streamed responses over HTTP, against the real core (createSentinelApi on a real SQLite file)
 * in every host: events as SSE (ids = seq, Last-Event-ID resumes) and NDJSON, logs follow, client
 * aborts, backpressure from a client that stops reading, and a graceful close with open streams.
 * Bodies are read incrementally with undici, the way `curl -N` shows them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  AgentEventsService,
  compileRoute,
  createJsonLogger,
  createSentinelApi,
  invokeRoute,
  routeReply,
  SentinelError,
  streamResult,
  type RouteDef,
  type SentinelApi,
  type SentinelApiSurface,
  type StreamItem,
} from '@sentinel/api-core';
import { listen } from '@sentinel/api-http';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const SECRET = 'streams-spec-secret-0123456789abcdef';
const ADMIN_PASSWORD = 'admin-password-123';

interface SseEvent {
  id?: string;
  event?: string;
  data: any;
}

/** Accumulates a response body as it arrives; parses complete SSE events / NDJSON lines. */
class BodyReader {
  text = '';
  ended = false;
  failed: Error | undefined;
  #waiters: (() => void)[] = [];

  constructor(readonly body: Readable) {
    body.setEncoding('utf8');
    body.on('data', (chunk: string) => {
      this.text += chunk;
      this.#notify();
    });
    body.on('end', () => {
      this.ended = true;
      this.#notify();
    });
    body.on('error', (err) => {
      this.failed = err;
      this.#notify();
    });
  }

  /** Complete SSE events (comments left out). */
  events(): SseEvent[] {
    const blocks = this.text.split('\n\n').slice(0, -1);
    const events: SseEvent[] = [];
    for (const block of blocks) {
      const event: Partial<SseEvent> & { dataLines: string[] } = { dataLines: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(': ');
        const [field, value] = [line.slice(0, colon), line.slice(colon + 2)];
        if (field === 'id') event.id = value;
        else if (field === 'event') event.event = value;
        else if (field === 'data') event.dataLines.push(value);
      }
      if (event.dataLines.length === 0) continue;
      events.push({ ...(event.id === undefined ? {} : { id: event.id }), ...(event.event === undefined ? {} : { event: event.event }), data: JSON.parse(event.dataLines.join('\n')) });
    }
    return events;
  }

  /** Complete NDJSON lines, parsed. */
  lines(): any[] {
    return this.text
      .split('\n')
      .slice(0, -1)
      .map((line) => JSON.parse(line));
  }

  async until(condition: (reader: this) => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition(this)) {
      if (this.failed) throw new Error(`body failed while waiting for ${what}: ${this.failed.message}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; body so far: ${this.text.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  close(): void {
    this.body.destroy();
  }

  #notify(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function eventsServiceOf(api: SentinelApi): AgentEventsService {
  expect(api.events).toBeInstanceOf(AgentEventsService);
  return api.events as AgentEventsService;
}

async function startApi(prefix: string): Promise<{ api: SentinelApi; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD, runtime: { echoChunkDelayMs: 0 } });
  return { api, dir };
}

describe.each(HOSTS)('streamed responses on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let aliceToken: string;
  let bobToken: string;
  const readers: BodyReader[] = [];

  async function login(username: string, password: string): Promise<string> {
    const res = await request(`${base}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    const body = (await res.body.json()) as { token: string };
    expect(res.statusCode).toBe(200);
    return body.token;
  }

  async function createAgent(token = aliceToken): Promise<string> {
    const res = await request(`${base}/v1/agents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ image: 'sentinel/echo:latest' }),
    });
    const body = (await res.body.json()) as { id: string };
    expect(res.statusCode).toBe(201);
    return body.id;
  }

  async function openStream(path: string, headers: Record<string, string> = {}, token: string | null = aliceToken) {
    const res = await request(`${base}${path}`, { headers: { ...headers, ...(token === null ? {} : { authorization: `Bearer ${token}` }) } });
    const reader = new BodyReader(res.body);
    readers.push(reader);
    return { status: res.statusCode, headers: res.headers, reader };
  }

  async function appendEvents(agentId: string, count: number, label = 'e'): Promise<number[]> {
    const seqs: number[] = [];
    for (let i = 0; i < count; i++) seqs.push((await api.journal.event(agentId, 'message_processed', `${label}${i}`, { i })).seq);
    return seqs;
  }

  beforeAll(async () => {
    ({ api, dir } = await startApi('sentinel-streams-'));
    const mounted = await mountApi(hostName, api, { logRequests: false, sseHeartbeatMs: 150 });
    base = mounted.baseUrl;
    close = mounted.close;
    await api.users.create({ username: 'alice', password: 'alice-password' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    aliceToken = await login('alice', 'alice-password');
    bobToken = await login('bob', 'bob-password-1');
  });

  afterAll(async () => {
    for (const reader of readers) reader.close();
    await close?.();
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('streams events as SSE: snapshot first, ids = seq, live events, the streaming headers, heartbeats', async () => {
    const id = await createAgent();
    const { status, headers, reader } = await openStream(`/v1/agents/${id}/events?since=0`, { accept: 'text/event-stream', origin: 'https://app.example.com' });
    expect(status).toBe(200);
    expect(headers['content-type']).toBe('text/event-stream');
    expect(headers['cache-control']).toBe('no-cache');
    expect(headers['x-accel-buffering']).toBe('no');
    expect(headers['content-length']).toBeUndefined();
    expect(headers['transfer-encoding']).toBe('chunked');
    expect(headers['access-control-allow-origin']).toBe('*');
    expect(String(headers.vary)).toContain('Accept');

    // Creation wrote agent_status created (seq 1) and running (seq 2).
    await reader.until((r) => r.events().length >= 3, 'snapshot and replay');
    const [snapshot, ...replayed] = reader.events();
    expect(snapshot).toMatchObject({ event: 'agent_status', data: { type: 'event', event_type: 'agent_status', data: { agent_id: id, status: 'running', memory: '0 B', api_usage: { requests: 0, tokens: 0 } } } });
    expect(snapshot?.id).toBeUndefined();
    expect(replayed.map((e) => [e.id, e.event, e.data.seq])).toEqual([
      ['1', 'agent_status', 1],
      ['2', 'agent_status', 2],
    ]);

    await appendEvents(id, 3, 'live');
    await reader.until((r) => r.events().length >= 6, 'the live events');
    const live = reader.events().slice(3);
    expect(live.map((e) => e.id)).toEqual(['3', '4', '5']);
    expect(live.map((e) => e.event)).toEqual(['message_processed', 'message_processed', 'message_processed']);
    expect(live.map((e) => e.data)).toEqual([0, 1, 2].map((i) => ({ type: 'event', event_type: 'message_processed', timestamp: expect.any(String), content: `live${i}`, data: { i }, seq: 3 + i, agent_id: id })));

    // Idle: the heartbeat comment keeps proxies from closing the stream.
    await reader.until((r) => r.text.includes('\n: ping\n\n') || r.text.startsWith(': ping\n\n'), 'a heartbeat', 2_000);
    reader.close();
  });

  it('resumes from Last-Event-ID with exactly the events after it; a since in the query wins', async () => {
    const id = await createAgent();
    await appendEvents(id, 6); // seq 3..8
    const resumed = await openStream(`/v1/agents/${id}/events`, { accept: 'text/event-stream', 'last-event-id': '5' });
    await resumed.reader.until((r) => r.events().some((e) => e.id === '8'), 'the replay up to 8');
    await appendEvents(id, 2, 'after'); // seq 9, 10
    await resumed.reader.until((r) => r.events().some((e) => e.id === '10'), 'live 9 and 10');
    const events = resumed.reader.events();
    expect(events[0]?.event).toBe('agent_status');
    expect(events.slice(1).map((e) => Number(e.id))).toEqual(range(6, 10));
    resumed.reader.close();

    const explicit = await openStream(`/v1/agents/${id}/events?since=8`, { accept: 'text/event-stream', 'last-event-id': '1' });
    await explicit.reader.until((r) => r.events().some((e) => e.id === '10'), 'the replay from 8');
    expect(explicit.reader.events().slice(1).map((e) => Number(e.id))).toEqual([9, 10]);
    explicit.reader.close();

    const bad = await openStream(`/v1/agents/${id}/events`, { accept: 'text/event-stream', 'last-event-id': 'not-a-number' });
    expect(bad.status).toBe(400);
    await bad.reader.until((r) => r.ended, 'the error body');
    expect(JSON.parse(bad.reader.text)).toMatchObject({ code: 'invalid_request' });
  });

  it('streams NDJSON when the client does not ask for SSE', async () => {
    const id = await createAgent();
    const { status, headers, reader } = await openStream(`/v1/agents/${id}/events?since=1`);
    expect(status).toBe(200);
    expect(headers['content-type']).toBe('application/x-ndjson');
    await appendEvents(id, 2);
    await reader.until((r) => r.lines().length >= 4, 'snapshot, replay and live lines');
    const lines = reader.lines();
    expect(lines[0]).toMatchObject({ type: 'event', event_type: 'agent_status', agent_id: id });
    expect(lines.slice(1).map((l) => l.seq)).toEqual([2, 3, 4]);
    expect(reader.text.split('\n').filter((l) => l !== '').every((l) => !l.startsWith(':'))).toBe(true);
    reader.close();
  });

  it("answers a plain error before streaming: another user's agent 404, a bad since 400, no token 401", async () => {
    const id = await createAgent();
    for (const [path, token, status, code] of [
      [`/v1/agents/${id}/events`, bobToken, 404, 'not_found'],
      [`/v1/agents/${id}/logs?follow=true`, bobToken, 404, 'not_found'],
      [`/v1/agents/${id}/events?since=-1`, aliceToken, 400, 'invalid_request'],
      [`/v1/agents/${id}/logs?follow=maybe`, aliceToken, 400, 'invalid_request'],
      [`/v1/agents/${id}/events`, null, 401, 'unauthorized'],
    ] as const) {
      const { status: got, headers, reader } = await openStream(path, { accept: 'text/event-stream' }, token);
      await reader.until((r) => r.ended, `the ${status} body`);
      expect(got, path).toBe(status);
      expect(headers['content-type']).toContain('application/json');
      expect(JSON.parse(reader.text)).toMatchObject({ code });
    }
  });

  it('follows logs: stored lines, then lines written after the request started, until the agent is deleted', async () => {
    const id = await createAgent();
    const { status, headers, reader } = await openStream(`/v1/agents/${id}/logs?follow=true`);
    expect(status).toBe(200);
    expect(headers['content-type']).toBe('application/x-ndjson');
    await reader.until((r) => r.lines().length >= 2, 'the stored lines');
    expect(reader.lines().map((l) => l.message)).toEqual([expect.stringMatching(/^agent created from image sentinel\/echo:latest/), 'agent started']);

    await api.journal.log(id, 'warn', 'written while following', { n: 1 });
    await reader.until((r) => r.lines().length >= 3, 'the live line');
    expect(reader.lines()[2]).toMatchObject({ agent_id: id, seq: 3, level: 'warn', message: 'written while following', fields: { n: 1 } });

    // The same agent's plain logs request is unchanged JSON.
    const plain = await request(`${base}/v1/agents/${id}/logs?tail=1`, { headers: { authorization: `Bearer ${aliceToken}` } });
    expect(plain.headers['content-type']).toContain('application/json');
    expect(await plain.body.json()).toEqual({ agent_id: id, logs: [expect.objectContaining({ seq: 3, message: 'written while following' })] });

    const deleted = await request(`${base}/v1/agents/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${aliceToken}` } });
    await deleted.body.dump();
    expect(deleted.statusCode).toBe(204);
    await reader.until((r) => r.ended, 'the end of the stream');
    expect(reader.lines().map((l) => l.seq)).toEqual([1, 2, 3, 4]);
    expect(reader.lines()[3]).toMatchObject({ message: 'agent stopped' });
  });

  it('follows logs as SSE with ids = seq and a level filter', async () => {
    const id = await createAgent();
    const { headers, reader } = await openStream(`/v1/agents/${id}/logs?follow=true&level=warn`, { accept: 'text/event-stream' });
    expect(headers['content-type']).toBe('text/event-stream');
    await api.journal.log(id, 'info', 'too quiet');
    await api.journal.log(id, 'error', 'loud');
    await reader.until((r) => r.events().length >= 1, 'the error line');
    expect(reader.events()).toEqual([{ id: '4', data: expect.objectContaining({ seq: 4, level: 'error', message: 'loud' }) }]);
    reader.close();
  });

  it('releases the subscription when the client goes away', async () => {
    const events = eventsServiceOf(api);
    const id = await createAgent();
    const streams = await Promise.all([openStream(`/v1/agents/${id}/events`, { accept: 'text/event-stream' }), openStream(`/v1/agents/${id}/events`)]);
    for (const { reader } of streams) await reader.until((r) => r.text.length > 0, 'the snapshot');
    expect(events.subscriptionCount(id)).toBe(2);
    for (const { reader } of streams) reader.close();
    await eventually(() => events.subscriptionCount(id) === 0, 'the subscriptions to be released');
    // The agent's events keep flowing to nobody, and the server stays healthy.
    await appendEvents(id, 1);
    const health = await request(`${base}/v1/health`);
    expect(await health.body.json()).toEqual({ status: 'ok' });
  });

  it('answers HEAD with the stream headers only, and releases the subscription', async () => {
    const id = await createAgent();
    const res = await request(`${base}/v1/agents/${id}/events`, { method: 'HEAD', headers: { authorization: `Bearer ${aliceToken}` } });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-ndjson');
    await eventually(() => eventsServiceOf(api).subscriptionCount(id) === 0, 'the subscription to be released');
  });

  it('ends the SSE stream when the agent is deleted', async () => {
    const id = await createAgent();
    const { reader } = await openStream(`/v1/agents/${id}/events`, { accept: 'text/event-stream' });
    await reader.until((r) => r.events().length >= 1, 'the snapshot');
    const deleted = await request(`${base}/v1/agents/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${aliceToken}` } });
    await deleted.body.dump();
    await reader.until((r) => r.ended, 'the end of the stream');
    expect(reader.events().at(-1)).toMatchObject({ event: 'agent_status', data: { data: { status: 'stopped' } } });
  });
});

describe('streams and the standalone server', () => {
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    ({ api, dir } = await startApi('sentinel-streams-close-'));
    await api.users.create({ username: 'alice', password: 'alice-password' });
  });

  afterAll(async () => {
    await api?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function tokenFor(url: string): Promise<string> {
    const res = await request(`${url}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: 'alice-password' }) });
    return ((await res.body.json()) as { token: string }).token;
  }

  it('close() ends open streams promptly instead of waiting for them', async () => {
    const running = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
    const token = await tokenFor(running.url);
    const agent = await api.agents.create({ username: 'alice', role: 'user' }, { image: 'sentinel/echo:latest' }, { secure: false, host: 'x' });
    const sse = new BodyReader((await request(`${running.url}/v1/agents/${agent.id}/events`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } })).body);
    const follow = new BodyReader((await request(`${running.url}/v1/agents/${agent.id}/logs?follow=true`, { headers: { authorization: `Bearer ${token}` } })).body);
    await sse.until((r) => r.events().length >= 1, 'the snapshot');
    await follow.until((r) => r.lines().length >= 2, 'the stored lines');

    const started = Date.now();
    await running.close();
    // The default shutdown timeout is 10 s: ending the streams is what makes this fast.
    expect(Date.now() - started).toBeLessThan(2_000);
    await sse.until((r) => r.ended, 'the SSE stream to end');
    await follow.until((r) => r.ended, 'the follow stream to end');
    expect(sse.failed).toBeUndefined();
    await eventually(() => eventsServiceOf(api).subscriptionCount(agent.id) === 0, 'the subscription to be released');
  });

  it('replays far more stored events than the stream may buffer to a client that keeps reading', async () => {
    const running = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
    try {
      const token = await tokenFor(running.url);
      const agent = await api.agents.create({ username: 'alice', role: 'user' }, { image: 'sentinel/echo:latest' }, { secure: false, host: 'x' });
      // 2 creation events + 3000: three times the 1000 items the HTTP stream holds for a client.
      for (let i = 0; i < 3000; i++) await api.journal.event(agent.id, 'message_processed', `m${i}`, { i });
      const res = await request(`${running.url}/v1/agents/${agent.id}/events?since=0`, { headers: { authorization: `Bearer ${token}` } });
      const chunks: string[] = [];
      let tail = '';
      res.body.setEncoding('utf8');
      await new Promise<void>((resolve, reject) => {
        res.body.on('error', reject);
        res.body.on('end', () => reject(new Error(`the stream ended early: ${tail}`)));
        res.body.on('data', (chunk: string) => {
          chunks.push(chunk);
          tail = (tail + chunk).slice(-200);
          if (tail.includes('"seq":3002,')) resolve();
        });
      });
      res.body.destroy();
      const lines = chunks.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { seq?: number });
      expect(lines[0]).toMatchObject({ event_type: 'agent_status' });
      expect(lines.slice(1).map((l) => l.seq)).toEqual(range(1, 3002));
    } finally {
      await running.close();
    }
  });

  it('a client that stops reading cannot grow memory: the stream ends with an error item, nothing lost or reordered before it', async () => {
    const running = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
    try {
      const token = await tokenFor(running.url);
      const agent = await api.agents.create({ username: 'alice', role: 'user' }, { image: 'sentinel/echo:latest' }, { secure: false, host: 'x' });
      const { port } = new URL(running.url);
      const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      socket.write(`GET /v1/agents/${agent.id}/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      let received = '';
      socket.setEncoding('utf8');
      socket.once('data', (chunk: string) => {
        received += chunk;
        socket.pause();
      });
      await eventually(() => received.includes('agent_status'), 'the snapshot');
      expect(eventsServiceOf(api).subscriptionCount(agent.id)).toBe(1);

      // ~12 MiB of events for a client that reads none of them: far past the socket buffers,
      // then past the 1000 items the stream may hold for it.
      const content = 'x'.repeat(6 * 1024);
      let lastSeq = 0;
      for (let i = 0; i < 2000; i++) lastSeq = (await api.journal.event(agent.id, 'message_processed', content, { i })).seq;
      await eventually(() => eventsServiceOf(api).subscriptionCount(agent.id) === 0, 'the slow stream to be dropped', 10_000);

      // Now read everything that was sent: consecutive seqs, then one error item, then the end.
      const ended = new Promise<void>((resolve) => socket.once('end', resolve));
      socket.on('data', (chunk: string) => (received += chunk));
      socket.resume();
      await ended;
      socket.destroy();
      const body = received.slice(received.indexOf('\r\n\r\n') + 4);
      const lines = body
        .split('\r\n')
        .filter((_, i) => i % 2 === 1)
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const seqs = lines.filter((l) => typeof l.seq === 'number').map((l) => l.seq as number);
      expect(seqs.length).toBeGreaterThan(0);
      expect(seqs.length).toBeLessThan(2000);
      expect(seqs).toEqual(range(seqs[0] ?? 0, (seqs[0] ?? 0) + seqs.length - 1));
      expect(lines.at(-1)).toEqual({ error: expect.stringContaining('too slowly'), code: 'unavailable', docs: '/docs/errors#unavailable' });
      expect(lastSeq).toBeGreaterThan(seqs.at(-1) ?? 0);
    } finally {
      await running.close();
    }
  });
});

describe('stream transport details', () => {
  let base: string;
  let close: () => Promise<void>;
  let returned = 0;
  const logLines: Record<string, unknown>[] = [];

  async function* items(list: StreamItem[], failWith?: unknown): AsyncGenerator<StreamItem> {
    try {
      for (const item of list) yield item;
      if (failWith !== undefined) throw failWith;
    } finally {
      returned++;
    }
  }

  beforeAll(async () => {
    const routes: RouteDef[] = [
      {
        method: 'GET', path: '/v1/odd', auth: 'public', summary: 'odd items',
        handler: () =>
          streamResult(items([
            { json: '{\n  "pretty": "printed"\n}', id: '1\nevent: forged', event: 'odd\r\ndata: {}' },
            { json: '{"plain":true}' },
          ])),
      },
      {
        method: 'GET', path: '/v1/failing', auth: 'public', summary: 'fails after one item',
        handler: (input) =>
          streamResult(items([{ json: '{"n":1}', id: '1' }], input.query.known === 'yes' ? new SentinelError('upstream_error', 'the model went away') : new Error('secret detail /srv/db'))),
      },
      {
        method: 'GET', path: '/v1/sse-only', auth: 'public', summary: 'always SSE, with its own status and headers',
        handler: () => routeReply(streamResult(items([{ json: '{"n":1}', id: '1', event: 'one' }]), { format: 'sse' }), { status: 201, headers: { Location: '/v1/somewhere' } }),
      },
      {
        method: 'GET', path: '/v1/echo-header', auth: 'public', summary: 'a request header, answered with a status and headers of its own',
        handler: (_input, ctx) => routeReply({ key: ctx.header?.('idempotency-key') ?? null }, { status: 202, headers: { 'Idempotency-Replayed': 'true' } }),
      },
    ];
    const api: SentinelApiSurface = {
      routes: routes.map(compileRoute),
      authenticate: () => Promise.reject(new SentinelError('unauthorized', 'no users here')),
      invoke: (route, raw, ctx) => invokeRoute(route, raw, ctx, (_format, text) => JSON.parse(text)),
      logger: createJsonLogger({ level: 'debug', write: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>) }),
      close: async () => {},
    };
    const mounted = await mountApi('node:http', api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
  });

  afterAll(async () => {
    await close?.();
  });

  async function read(path: string, accept?: string): Promise<{ status: number; type: unknown; text: string }> {
    const res = await request(`${base}${path}`, { headers: accept === undefined ? {} : { accept } });
    return { status: res.statusCode, type: res.headers['content-type'], text: await res.body.text() };
  }

  it('keeps a multi-line JSON item one SSE event / one NDJSON line, and line breaks out of id and event', async () => {
    const sse = await read('/v1/odd', 'application/json, text/event-stream');
    expect(sse.type).toBe('text/event-stream');
    expect(sse.text).toBe('id: 1 event: forged\nevent: odd data: {}\ndata: {\ndata:   "pretty": "printed"\ndata: }\n\ndata: {"plain":true}\n\n');
    const ndjson = await read('/v1/odd');
    expect(ndjson.type).toBe('application/x-ndjson');
    expect(ndjson.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))).toEqual([{ pretty: 'printed' }, { plain: true }]);
    // text/event-stream;q=0 means "not that".
    expect((await read('/v1/odd', 'text/event-stream;q=0, */*')).type).toBe('application/x-ndjson');
    expect(returned).toBeGreaterThanOrEqual(3);
  });

  it('sends a stream with a fixed format as SSE whatever the Accept (no Vary), with the status and headers of its route reply', async () => {
    for (const accept of [undefined, 'application/x-ndjson', 'text/event-stream']) {
      const res = await request(`${base}/v1/sse-only`, { headers: accept === undefined ? {} : { accept } });
      expect(res.statusCode).toBe(201);
      expect(res.headers['content-type']).toBe('text/event-stream');
      expect(res.headers.location).toBe('/v1/somewhere');
      expect(res.headers.vary).toBeUndefined();
      expect(await res.body.text()).toBe('id: 1\nevent: one\ndata: {"n":1}\n\n');
    }
  });

  it('hands a route its request headers by lower-case name (repeated ones joined) and sends the status and headers it replies with', async () => {
    const one = await request(`${base}/v1/echo-header`, { headers: { 'Idempotency-Key': '"abc"' } });
    expect(one.statusCode).toBe(202);
    expect(one.headers['idempotency-replayed']).toBe('true');
    expect(await one.body.json()).toEqual({ key: '"abc"' });
    const twice = await request(`${base}/v1/echo-header`, { headers: { 'idempotency-key': ['a', 'b'] } });
    expect(await twice.body.json()).toEqual({ key: 'a, b' });
    const none = await request(`${base}/v1/echo-header`);
    expect(await none.body.json()).toEqual({ key: null });
  });

  it('ends a failing stream with an error item after what was sent; internal details stay in the log', async () => {
    const sse = await read('/v1/failing', 'text/event-stream');
    expect(sse.status).toBe(200);
    expect(sse.text).toBe('id: 1\ndata: {"n":1}\n\nevent: error\ndata: {"error":"internal server error","code":"internal","docs":"/docs/errors#internal"}\n\n');
    expect(logLines.some((l) => l.msg === 'stream failed' && String(l.error).includes('secret detail'))).toBe(true);
    const ndjson = await read('/v1/failing?known=yes');
    expect(ndjson.text).toBe('{"n":1}\n{"error":"the model went away","code":"upstream_error","docs":"/docs/errors#upstream_error"}\n');
  });
});
