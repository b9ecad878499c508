/**
 * Runs over REST (issue 16), on every host and on both stores (a SQLite file, a fresh PostgreSQL
 * database): a run started with POST and waited for with `?wait=`, listing with a status filter
 * and cursor paging, a run's SSE stream cut by the client after a few frames and resumed with
 * Last-Event-ID (every frame exactly once, in order) or `?since=`, `stream: true`, the same
 * Idempotency-Key twice (one run, one request to the provider), the key with another body (409),
 * cancelling a long run (partial output kept), another user's run (404) and bad inputs (400).
 * The model is a loopback OpenAI-compatible server that counts the requests it gets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { FakeProviderServer, type FakeReply } from '@sentinel/test-support/fakes/fake-server';
import { openAiStream, openAiTextEvents } from '@sentinel/test-support/fakes/openai-fake';
import { HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const SECRET = 'runs-rest-secret-0123456789abcdef';
const ADMIN_PASSWORD = 'admin-password-123';
const STORES = ['sqlite', 'postgres'] as const;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: any;
}

interface SseEvent {
  id: string | undefined;
  event: string | undefined;
  data: any;
}

/** Reads an SSE body as it arrives; `events()` are the complete ones so far. */
class SseReader {
  text = '';
  ended = false;
  failed: Error | undefined;
  #waiters: Array<() => void> = [];

  constructor(body: Readable) {
    body.setEncoding('utf8');
    body.on('data', (chunk: string) => {
      this.text += chunk;
      this.#wake();
    });
    body.on('end', () => {
      this.ended = true;
      this.#wake();
    });
    body.on('error', (err) => {
      this.failed = err;
      this.#wake();
    });
  }

  events(): SseEvent[] {
    const out: SseEvent[] = [];
    for (const block of this.text.split('\n\n').slice(0, -1)) {
      let id: string | undefined;
      let event: string | undefined;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(': ');
        const field = line.slice(0, colon);
        const value = line.slice(colon + 2);
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) out.push({ id, event, data: JSON.parse(data.join('\n')) });
    }
    return out;
  }

  async until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (this.failed && !this.ended) throw new Error(`stream failed while waiting for ${what}: ${this.failed.message}`);
      if (this.ended && !condition()) throw new Error(`stream ended before ${what}; got: ${this.text.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got: ${this.text.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

const TERMINAL = new Set(['stream_end', 'error']);
const isTerminal = (e: SseEvent) => e.event !== undefined && TERMINAL.has(e.event);

/** A text answer of `pieces`, `delayMs` apart (a long run when the delay is long). */
function textReply(pieces: string[], delayMs = 1): FakeReply {
  return openAiStream(openAiTextEvents(pieces, { usage: { prompt_tokens: 7, completion_tokens: pieces.length } }), delayMs);
}

describe.each(STORES)('runs over REST on %s', (storeKind) => {
  describe.each(HOSTS)('mounted on %s', (hostName) => {
    let dir: string;
    let database: TestDatabase | undefined;
    let fake: FakeProviderServer;
    let api: SentinelApi;
    let mounted: MountedApi;
    let base: string;
    let alice: string;
    let bob: string;
    let agentId: string;

    async function call(method: string, path: string, token: string, options: { body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
      const hasBody = options.body !== undefined || options.raw !== undefined;
      const res = await request(`${base}${path}`, {
        method: method as 'GET',
        headers: { authorization: `Bearer ${token}`, ...(hasBody ? { 'content-type': 'application/json' } : {}), ...options.headers },
        body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
      });
      const text = await res.body.text();
      return { status: res.statusCode, headers: res.headers, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
    }

    /** Opens an SSE response; `abort()` cuts it from the client side, like a dropped connection. */
    async function openStream(method: 'GET' | 'POST', path: string, token: string, options: { body?: unknown; headers?: Record<string, string> } = {}) {
      const controller = new AbortController();
      const res = await request(`${base}${path}`, {
        method,
        signal: controller.signal,
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'text/event-stream',
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...options.headers,
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      const reader = new SseReader(res.body as unknown as Readable);
      return { status: res.statusCode, headers: res.headers, reader, abort: () => controller.abort() };
    }

    async function login(username: string, password: string): Promise<string> {
      const reply = await call('POST', '/v1/auth/login', '', { body: { username, password } });
      expect(reply.status).toBe(200);
      return reply.json.token as string;
    }

    /** Starts a run and waits until it ended; the provider answers `pieces`. */
    async function completedRun(content: string, pieces: string[]): Promise<any> {
      fake.reply(textReply(pieces));
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content } });
      expect(started.status, JSON.stringify(started.json)).toBe(202);
      const done = await call('GET', `${started.headers.location as string}?wait=20`, alice);
      expect(done.json.status).toBe('completed');
      return done.json;
    }

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sentinel-runs-rest-'));
      database = storeKind === 'postgres' ? await createTestDatabase() : undefined;
      fake = await FakeProviderServer.start();
      api = await createSentinelApi({
        dataDir: dir,
        ...(database === undefined ? {} : { storeUrl: database.url }),
        tokenSecret: SECRET,
        adminPassword: ADMIN_PASSWORD,
        providers: { env: {}, file: false, openai: { apiKey: 'sk-runs-rest-key', baseUrl: `${fake.url}/v1` }, retries: { attempts: 1, baseDelayMs: 5 } },
        rateLimits: false,
      });
      mounted = await mountApi(hostName, api, { logRequests: false, sseHeartbeatMs: 0 });
      base = mounted.baseUrl;
      const admin = await login('admin', ADMIN_PASSWORD);
      for (const name of ['alice', 'bob']) expect((await call('POST', '/v1/users', admin, { body: { username: name, password: `${name}-password` } })).status).toBe(201);
      alice = await login('alice', 'alice-password');
      bob = await login('bob', 'bob-password');
      expect((await call('POST', '/v1/images', admin, { body: { name: 'runs/gpt', tag: 'v1', model: { provider: 'openai', name: 'gpt-runs' } } })).status).toBe(201);
      const agent = await call('POST', '/v1/agents', alice, { body: { image: 'runs/gpt:v1', name: 'runner' } });
      expect(agent.status, JSON.stringify(agent.json)).toBe(201);
      agentId = agent.json.id as string;
    }, 60_000);

    afterAll(async () => {
      await mounted?.close();
      await api?.close();
      await fake?.close();
      await database?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('starts a run (202, Location) that completes in the background; ?wait= answers once it ended', async () => {
      const before = fake.requests.length;
      fake.reply(textReply(['Hello', ', ', 'world'], 20));
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'greet me', message_id: 'm-wait-1' } });
      expect(started.status, JSON.stringify(started.json)).toBe(202);
      const run = started.json;
      expect(run).toMatchObject({ id: expect.stringMatching(/^run_[0-9a-f]{24}$/), agent_id: agentId, owner: 'alice', message_id: 'm-wait-1', input: { content: 'greet me' }, error: null });
      expect(['queued', 'running']).toContain(run.status);
      expect(started.headers.location).toBe(`/v1/agents/${agentId}/runs/${run.id as string}`);
      expect(started.headers['idempotency-replayed']).toBeUndefined();

      const waited = await call('GET', `${started.headers.location as string}?wait=20`, alice);
      expect(waited.status).toBe(200);
      expect(waited.json).toMatchObject({
        id: run.id,
        status: 'completed',
        output: { content: 'Hello, world', reason: 'stop' },
        usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 },
        error: null,
        started_at: expect.any(String),
        ended_at: expect.any(String),
      });
      expect(waited.json.last_seq).toBeGreaterThan(3);
      expect(fake.requests.length - before).toBe(1);
      // The conversation holds the turn, as a chat turn would.
      const history = await api.store.listMessages(agentId);
      expect(history.slice(-2).map((m) => m.content)).toEqual(['greet me', 'Hello, world']);
      // A plain GET answers the same record.
      expect((await call('GET', `/v1/agents/${agentId}/runs/${run.id as string}`, alice)).json).toEqual(waited.json);
    });

    it('?wait= answers the run as it is once the time is up, and a client that leaves ends the wait', async () => {
      fake.reply(textReply(['slow', ' ', 'answer'], 250));
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'take your time' } });
      expect(started.status).toBe(202);
      const t0 = Date.now();
      const early = await call('GET', `${started.headers.location as string}?wait=0.3`, alice);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(early.json.status).toBe('running');
      // A waiting client that goes away: the server lets go (the run carries on regardless).
      const controller = new AbortController();
      const pending = request(`${base}${started.headers.location as string}?wait=30`, { headers: { authorization: `Bearer ${alice}` }, signal: controller.signal });
      setTimeout(() => controller.abort(), 100);
      await expect(pending).rejects.toThrow();
      const done = await call('GET', `${started.headers.location as string}?wait=20`, alice);
      expect(done.json).toMatchObject({ status: 'completed', output: { content: 'slow answer' } });
    });

    it('lists runs newest first, filtered by status, with cursor paging', async () => {
      const runs = [];
      for (const n of [1, 2, 3]) runs.push(await completedRun(`list ${n}`, [`answer ${n}`]));
      // One cancelled run, for the filter.
      const asked = fake.requests.length;
      fake.reply({ status: 200, headers: { 'content-type': 'text/event-stream' }, steps: [{ write: openAiTextEvents(['partial'])[0] as string }, { stall: true }] });
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'to be cancelled' } });
      const cancelledId = started.json.id as string;
      // Cancelled once the provider has it: the stalled reply must not be left for the next run.
      await fake.waitForRequests(asked + 1);
      expect((await call('POST', `/v1/agents/${agentId}/runs/${cancelledId}/cancel`, alice)).status).toBe(200);
      expect((await call('GET', `/v1/agents/${agentId}/runs/${cancelledId}?wait=20`, alice)).json.status).toBe('cancelled');

      const all = await call('GET', `/v1/agents/${agentId}/runs?limit=100`, alice);
      expect(all.status).toBe(200);
      const ids = (all.json.runs as Array<{ id: string }>).map((r) => r.id);
      expect(ids.slice(0, 4)).toEqual([cancelledId, runs[2].id, runs[1].id, runs[0].id]);
      expect(all.json.next).toBeNull();

      const completed = await call('GET', `/v1/agents/${agentId}/runs?status=completed&limit=2`, alice);
      expect(completed.json.runs.map((r: { id: string }) => r.id)).toEqual([runs[2].id, runs[1].id]);
      expect(completed.json.runs.every((r: { status: string }) => r.status === 'completed')).toBe(true);
      expect(completed.json.next).toBe(runs[1].id);
      const page2 = await call('GET', `/v1/agents/${agentId}/runs?status=completed&limit=2&before=${completed.json.next as string}`, alice);
      expect(page2.json.runs[0].id).toBe(runs[0].id);
      // Every run completed earlier in this file, then the end.
      const seen = new Set<string>([...completed.json.runs, ...page2.json.runs].map((r: { id: string }) => r.id));
      let next: string | null = page2.json.next;
      while (next !== null) {
        const page: Reply = await call('GET', `/v1/agents/${agentId}/runs?status=completed&limit=2&before=${next}`, alice);
        for (const r of page.json.runs) {
          expect(seen.has(r.id)).toBe(false);
          seen.add(r.id);
        }
        next = page.json.next;
      }
      expect(seen.size).toBe(ids.filter((id) => all.json.runs.find((r: { id: string; status: string }) => r.id === id).status === 'completed').length);

      const cancelled = await call('GET', `/v1/agents/${agentId}/runs?status=cancelled`, alice);
      expect(cancelled.json).toEqual({ runs: [expect.objectContaining({ id: cancelledId, status: 'cancelled' })], next: null });
    });

    it('streams a run as SSE; cut after a few frames, Last-Event-ID resumes exactly after the last one seen, and ?since= too', async () => {
      const pieces = Array.from({ length: 12 }, (_, i) => `p${i} `);
      fake.reply(textReply(pieces, 40));
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'stream me' } });
      expect(started.status).toBe(202);
      const runPath = started.headers.location as string;

      const first = await openStream('GET', `${runPath}/stream`, alice);
      expect(first.status).toBe(200);
      expect(first.headers['content-type']).toBe('text/event-stream');
      await first.reader.until(() => first.reader.events().filter((e) => e.event === 'stream_chunk').length >= 3, 'three chunks');
      first.abort();
      const seenFirst = first.reader.events();
      const lastId = seenFirst.at(-1)?.id as string;
      expect(seenFirst.some(isTerminal)).toBe(false);

      const second = await openStream('GET', `${runPath}/stream`, alice, { headers: { 'last-event-id': lastId } });
      expect(second.status).toBe(200);
      await second.reader.until(() => second.reader.ended, 'the end of the resumed stream');
      const seenSecond = second.reader.events();
      const all = [...seenFirst, ...seenSecond];
      // Every frame once, in order, seq = id, and the stream ended right after the terminal frame.
      expect(all.map((e) => Number(e.id))).toEqual(all.map((_, i) => i + 1));
      for (const e of all) {
        expect(e.data).toMatchObject({ run_id: started.json.id, seq: Number(e.id), type: e.event });
      }
      expect(all.filter(isTerminal)).toHaveLength(1);
      expect(all.at(-1)).toMatchObject({ event: 'stream_end', data: { content: pieces.join(''), reason: 'stop' } });
      expect(all.filter((e) => e.event === 'stream_chunk').map((e) => e.data.content as string).join('')).toBe(pieces.join(''));

      const run = (await call('GET', runPath, alice)).json;
      expect(run).toMatchObject({ status: 'completed', last_seq: all.length });
      // ?since= on the ended run: the journal after that seq, then the end.
      const since = Math.floor(all.length / 2);
      const replay = await openStream('GET', `${runPath}/stream?since=${since}`, alice);
      await replay.reader.until(() => replay.reader.ended, 'the end of the replay');
      expect(replay.reader.events().map((e) => Number(e.id))).toEqual(all.slice(since).map((e) => Number(e.id)));
      expect(replay.reader.events().map((e) => e.data)).toEqual(all.slice(since).map((e) => e.data));
      // A cursor at the end of an ended run (or past what became durable): its terminal frame
      // again and the end, so every stream of a run ends with how the run ended.
      for (const cursor of [all.length, all.length + 5]) {
        const after = await openStream('GET', `${runPath}/stream`, alice, { headers: { 'last-event-id': String(cursor) } });
        await after.reader.until(() => after.reader.ended, 'the end');
        expect(after.reader.events()).toEqual([all.at(-1)]);
      }
    });

    it('stream: true answers 200 with the run as SSE (and its Location)', async () => {
      const before = fake.requests.length;
      fake.reply(textReply(['streamed ', 'at once']));
      const opened = await openStream('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'stream it now', stream: true } });
      expect(opened.status).toBe(200);
      expect(opened.headers['content-type']).toBe('text/event-stream');
      expect(opened.headers.location).toMatch(new RegExp(`^/v1/agents/${agentId}/runs/run_[0-9a-f]{24}$`));
      await opened.reader.until(() => opened.reader.ended, 'the end of the stream');
      const events = opened.reader.events();
      expect(events.map((e) => Number(e.id))).toEqual(events.map((_, i) => i + 1));
      expect(events.at(-1)).toMatchObject({ event: 'stream_end', data: { content: 'streamed at once' } });
      expect(events.map((e) => e.event)).toContain('stream_start');
      expect(fake.requests.length - before).toBe(1);
    });

    it('the same Idempotency-Key twice is one run and one provider call; with another body it is 409 idempotency_conflict', async () => {
      const before = fake.requests.length;
      fake.reply(textReply(['only ', 'once'], 10));
      const body = { content: 'do it once', webhook: 'https://example.com/hooks/runs' };
      const first = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body, headers: { 'idempotency-key': '"8e03978e-40d5-43e8-bc93-6894a57f9324"' } });
      expect(first.status, JSON.stringify(first.json)).toBe(202);
      expect(first.json.webhook).toBe('https://example.com/hooks/runs');
      const again = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body, headers: { 'idempotency-key': '"8e03978e-40d5-43e8-bc93-6894a57f9324"' } });
      expect(again.status).toBe(200);
      expect(again.headers['idempotency-replayed']).toBe('true');
      expect(again.headers.location).toBe(first.headers.location);
      expect(again.json.id).toBe(first.json.id);
      // stream: true with the key replays the same run's frames; `stream` is not part of the request's identity.
      const streamed = await openStream('POST', `/v1/agents/${agentId}/runs`, alice, { body: { ...body, stream: true }, headers: { 'idempotency-key': '"8e03978e-40d5-43e8-bc93-6894a57f9324"' } });
      expect(streamed.status).toBe(200);
      expect(streamed.headers['idempotency-replayed']).toBe('true');
      await streamed.reader.until(() => streamed.reader.ended, 'the replayed stream');
      expect(streamed.reader.events().at(-1)).toMatchObject({ event: 'stream_end', data: { run_id: first.json.id, content: 'only once' } });
      expect(streamed.reader.events()[0]?.id).toBe('1');

      const conflict = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { ...body, content: 'something else' }, headers: { 'idempotency-key': '"8e03978e-40d5-43e8-bc93-6894a57f9324"' } });
      expect(conflict.status).toBe(409);
      expect(conflict.json).toMatchObject({ code: 'idempotency_conflict' });
      // A bare token is a key too, and another agent's or user's runs never share it.
      fake.reply(textReply(['bare']));
      const bare = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'bare key' }, headers: { 'idempotency-key': 'order-42' } });
      expect(bare.status).toBe(202);
      expect((await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'bare key' }, headers: { 'idempotency-key': '"order-42"' } })).json.id).toBe(bare.json.id);
      expect((await call('GET', `${bare.headers.location as string}?wait=20`, alice)).json.status).toBe('completed');
      expect((await call('GET', `${first.headers.location as string}?wait=20`, alice)).json).toMatchObject({ status: 'completed', output: { content: 'only once' } });
      expect(fake.requests.length - before).toBe(2);
    });

    it('cancels a long run: cancelled, with the output streamed so far; a second cancel answers it unchanged', async () => {
      fake.reply(textReply(['first part ', 'second part ', 'never', ' sent'], 1500));
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { body: { content: 'a long one' } });
      const runPath = started.headers.location as string;
      const watching = await openStream('GET', `${runPath}/stream`, alice);
      await watching.reader.until(() => watching.reader.events().some((e) => e.event === 'stream_chunk'), 'the first chunk');
      const cancelled = await call('POST', `${runPath}/cancel`, alice);
      expect(cancelled.status).toBe(200);
      expect(cancelled.json.id).toBe(started.json.id);
      await watching.reader.until(() => watching.reader.ended, 'the end of the stream');
      const end = watching.reader.events().at(-1);
      expect(end).toMatchObject({ event: 'stream_end', data: { reason: 'cancelled' } });
      const run = (await call('GET', `${runPath}?wait=20`, alice)).json;
      expect(run).toMatchObject({ status: 'cancelled', output: { reason: 'cancelled' }, ended_at: expect.any(String) });
      expect(run.output.content).toBe(end?.data.content);
      expect(run.output.content.startsWith('first part ')).toBe(true);
      expect(run.output.content).not.toContain('never');
      const again = await call('POST', `${runPath}/cancel`, alice);
      expect(again.status).toBe(200);
      expect(again.json).toEqual(run);
    });

    it("answers 404 for another user's agent and runs, on every run route", async () => {
      const run = await completedRun('mine only', ['private']);
      const runPath = `/v1/agents/${agentId}/runs/${run.id as string}`;
      for (const [method, path] of [
        ['GET', runPath],
        ['GET', `${runPath}?wait=1`],
        ['GET', `${runPath}/stream`],
        ['POST', `${runPath}/cancel`],
        ['GET', `/v1/agents/${agentId}/runs`],
      ] as const) {
        const reply = await call(method, path, bob);
        expect(reply.status, `${method} ${path}`).toBe(404);
        expect(reply.json.code).toBe('not_found');
      }
      const before = fake.requests.length;
      const start = await call('POST', `/v1/agents/${agentId}/runs`, bob, { body: { content: 'not yours' } });
      expect(start.status).toBe(404);
      // Bob's own agent does not reach Alice's run either.
      const bobAgent = await call('POST', '/v1/agents', bob, { body: { image: 'runs/gpt:v1', name: 'bobs' } });
      expect((await call('GET', `/v1/agents/${bobAgent.json.id as string}/runs/${run.id as string}`, bob)).status).toBe(404);
      expect(fake.requests.length).toBe(before);
    });

    it('refuses bad input with 400 and a message that says what is wrong, starting nothing', async () => {
      const before = fake.requests.length;
      const runs = `/v1/agents/${agentId}/runs`;
      const bad = async (reply: Promise<Reply>, message: string | RegExp) => {
        const r = await reply;
        expect(r.status, JSON.stringify(r.json)).toBe(400);
        expect(r.json.code).toBe('invalid_request');
        if (typeof message === 'string') expect(r.json.error).toBe(message);
        else expect(r.json.error).toMatch(message);
      };
      await bad(call('POST', runs, alice, { body: { content: '' } }), 'invalid body: /content: must NOT have fewer than 1 characters');
      await bad(call('POST', runs, alice, { body: { content: 'x'.repeat(100_001) } }), 'invalid body: /content: must NOT have more than 100000 characters');
      await bad(call('POST', runs, alice, { body: {} }), 'invalid body: /content: "content" is required');
      await bad(call('POST', runs, alice, { body: { content: 'hi', colour: 'red' } }), 'invalid body: /colour: unknown field "colour"');
      await bad(call('POST', runs, alice, { body: { content: 'hi', stream: 'yes' } }), 'invalid body: /stream: must be boolean');
      await bad(call('POST', runs, alice, { body: { content: 'hi', message_id: 'has space' } }), /^invalid body: \/message_id: must match pattern/);
      await bad(call('POST', runs, alice, { body: { content: 'hi', webhook: 'ftp://example.com/x' } }), 'webhook must be an absolute http:// or https:// URL');
      await bad(call('POST', runs, alice, { body: { content: 'hi', webhook: '/relative/path' } }), 'webhook must be an absolute http:// or https:// URL');
      await bad(call('POST', runs, alice, { body: { content: 'hi', webhook: 'https://user:pw@example.com/' } }), 'webhook must not carry credentials (user:password@); the deliveries are signed instead');
      await bad(call('POST', runs, alice, { body: { content: 'hi', webhook: `https://example.com/${'a'.repeat(2048)}` } }), 'invalid body: /webhook: must NOT have more than 2048 characters');
      await bad(call('POST', runs, alice, { raw: '{"content": "hi"' }), /^malformed JSON: /);
      for (const key of ['"unterminated', 'two words', '"bad \\x escape"', '""']) {
        await bad(call('POST', runs, alice, { body: { content: 'hi' }, headers: { 'idempotency-key': key } }), /^Idempotency-Key must/);
      }
      await bad(call('POST', runs, alice, { body: { content: 'hi' }, headers: { 'idempotency-key': `"${'k'.repeat(256)}"` } }), 'Idempotency-Key must be at most 255 characters (got 256)');
      fake.reply(textReply(['ok']));
      expect((await call('POST', runs, alice, { body: { content: 'hi' }, headers: { 'idempotency-key': `"${'k'.repeat(255)}"` } })).status).toBe(202);

      await bad(call('GET', `${runs}?status=done`, alice), /^invalid query: \/status: must be equal to one of the allowed values/);
      await bad(call('GET', `${runs}?limit=0`, alice), 'invalid query: /limit: must be >= 1');
      await bad(call('GET', `${runs}?limit=101`, alice), 'invalid query: /limit: must be <= 100');
      await bad(call('GET', `${runs}?before=nope`, alice), /^invalid query: \/before: must match pattern/);
      await bad(call('GET', `${runs}/not-a-run`, alice), /^invalid path parameters of GET \/v1\/agents\/:id\/runs\/:run: \/run: must match pattern/);
      const some = (await call('GET', `${runs}?limit=1`, alice)).json.runs[0].id as string;
      await bad(call('GET', `${runs}/${some}?wait=0`, alice), 'invalid query: /wait: must be > 0');
      await bad(call('GET', `${runs}/${some}?wait=61`, alice), 'invalid query: /wait: must be <= 60');
      await bad(call('GET', `${runs}/${some}?wait=soon`, alice), 'invalid query: /wait: must be number');
      await bad(call('GET', `${runs}/${some}/stream?since=-1`, alice), 'invalid query: /since: must be >= 0');
      await bad(call('GET', `${runs}/${some}/stream`, alice, { headers: { 'last-event-id': 'abc' } }), 'invalid query: /since: must be integer');
      // An unknown run of one's own agent is a 404, not a 400.
      expect((await call('GET', `${runs}/run_${'0'.repeat(24)}`, alice)).status).toBe(404);
      // Only the one run with a valid 255-character key reached the provider.
      await call('GET', `${runs}?limit=1`, alice);
      expect((await call('GET', `${runs}/${some}?wait=20`, alice)).json.status).toBe('completed');
      expect(fake.requests.length - before).toBe(1);
    });
  });
});
