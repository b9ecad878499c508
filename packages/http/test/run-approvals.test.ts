/**
 * `POST /v1/agents/{id}/runs/{run}/approvals` on every host and both stores: a run started over
 * REST whose model (a loopback OpenAI fake) calls the image's gated calculator waits in
 * requires_action (`?wait=` returns then); an approval continues it (the calculator ran, the
 * model got its result, the run completed), a refusal reaches the model as the tool result, and
 * the errors are the documented ones: 404 for a request the run does not have (or another
 * user's run), 409 once the run no longer waits, 400 for a bad body. Every response is checked
 * against the served OpenAPI document by the contract checker.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { FakeProviderServer, type FakeReply } from '@sentinel/test-support/fakes/fake-server';
import { openAiStream, openAiTextEvents, openAiToolCallEvents } from '@sentinel/test-support/fakes/openai-fake';
import { HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const SECRET = 'run-approvals-secret-0123456789abcdef';
const ADMIN_PASSWORD = 'admin-password-123';
const STORES = ['sqlite', 'postgres'] as const;

interface Reply {
  status: number;
  json: any;
}

/** A model round that calls the calculator (`callId`) with 6*7. */
function calculatorCall(callId: string): FakeReply {
  return openAiStream(openAiToolCallEvents([{ id: callId, name: 'calculator', argumentChunks: ['{"expression":"6*7"}'] }], { usage: { prompt_tokens: 9, completion_tokens: 4 } }), 1);
}

function answer(text: string): FakeReply {
  return openAiStream(openAiTextEvents([text], { usage: { prompt_tokens: 15, completion_tokens: 2 } }), 1);
}

describe.each(STORES)('run approvals over REST on %s', (storeKind) => {
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

    async function call(method: string, path: string, token: string, body?: unknown): Promise<Reply> {
      const res = await request(`${base}${path}`, {
        method: method as 'GET',
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.body.text();
      return { status: res.statusCode, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
    }

    async function login(username: string, password: string): Promise<string> {
      const reply = await call('POST', '/v1/auth/login', '', { username, password });
      expect(reply.status).toBe(200);
      return reply.json.token as string;
    }

    /** Starts a run whose model calls the calculator (then answers `after`); resolves once it waits for the approval. */
    async function waitingRun(callId: string, after?: FakeReply): Promise<any> {
      fake.reply(calculatorCall(callId), ...(after === undefined ? [] : [after]));
      const started = await call('POST', `/v1/agents/${agentId}/runs`, alice, { content: 'what is 6*7?' });
      expect(started.status, JSON.stringify(started.json)).toBe(202);
      const waiting = await call('GET', `/v1/agents/${agentId}/runs/${started.json.id as string}?wait=20`, alice);
      expect(waiting.json).toMatchObject({ status: 'requires_action', output: null, required_action: { type: 'tool_approval', decisions: {}, calls: [{ id: callId, name: 'calculator' }] } });
      expect(waiting.json.required_action.requests).toEqual([{ request_id: expect.stringMatching(/^apr_[0-9a-f]{16}$/), call_id: callId, tool: 'calculator', parameters: { expression: '6*7' } }]);
      return waiting.json;
    }

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sentinel-run-approvals-'));
      database = storeKind === 'postgres' ? await createTestDatabase() : undefined;
      fake = await FakeProviderServer.start();
      api = await createSentinelApi({
        dataDir: dir,
        ...(database === undefined ? {} : { storeUrl: database.url }),
        tokenSecret: SECRET,
        adminPassword: ADMIN_PASSWORD,
        providers: { env: {}, file: false, openai: { apiKey: 'sk-approvals-key', baseUrl: `${fake.url}/v1` }, retries: { attempts: 1, baseDelayMs: 5 } },
        rateLimits: false,
      });
      mounted = await mountApi(hostName, api, { logRequests: false, sseHeartbeatMs: 0 });
      base = mounted.baseUrl;
      const admin = await login('admin', ADMIN_PASSWORD);
      for (const name of ['alice', 'bob']) expect((await call('POST', '/v1/users', admin, { username: name, password: `${name}-password` })).status).toBe(201);
      alice = await login('alice', 'alice-password');
      bob = await login('bob', 'bob-password');
      const image = { name: 'approvals/gpt', tag: 'v1', model: { provider: 'openai', name: 'gpt-gated' }, tools: [{ name: 'calculator', approval: 'required' }] };
      const built = await call('POST', '/v1/images', admin, image);
      expect(built.status).toBe(201);
      // The image says which of its tools wait for a person.
      expect(built.json).toMatchObject({ tools: ['calculator'], tool_approval: ['calculator'] });
      const agent = await call('POST', '/v1/agents', alice, { image: 'approvals/gpt:v1', name: 'gated' });
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

    it('an approval continues the run: the calculator ran, the model got 42 and the run completed', async () => {
      const run = await waitingRun('call_rest_ok', answer('It is 42.'));
      const path = `/v1/agents/${agentId}/runs/${run.id as string}`;
      const requestId = run.required_action.requests[0].request_id as string;
      // A new run is refused while this one waits (its history would not be valid).
      const busy = await call('POST', `/v1/agents/${agentId}/runs`, alice, { content: 'hello?' });
      expect(busy).toMatchObject({ status: 429, json: { code: 'agent_busy', error: expect.stringContaining(run.id as string) } });

      const decided = await call('POST', `${path}/approvals`, alice, { request_id: requestId, approve: true });
      expect(decided.status, JSON.stringify(decided.json)).toBe(200);
      expect(decided.json).toMatchObject({ id: run.id, required_action: null });
      expect(['running', 'completed']).toContain(decided.json.status);
      const done = await call('GET', `${path}?wait=20`, alice);
      expect(done.json).toMatchObject({ status: 'completed', output: { content: 'It is 42.', reason: 'stop' }, usage: { input_tokens: 24, output_tokens: 6, total_tokens: 30 } });
      const continued = fake.requests.at(-1)!.json as { messages: { role: string; content: unknown; tool_call_id?: string }[] };
      expect(continued.messages.slice(-2)).toMatchObject([{ role: 'assistant' }, { role: 'tool', tool_call_id: 'call_rest_ok', content: '{"expression":"6*7","result":42}' }]);
      // The journal says what happened, in order.
      const frames = await api.store.listRunFrames(run.id as string, 0);
      const types = frames.map((f) => JSON.parse(f.json) as { type: string; event_type?: string }).map((f) => (f.type === 'event' ? `event:${f.event_type}` : f.type));
      expect(types).toEqual(['event:thinking', 'stream_start', 'event:tool_call', 'tool_approval_required', 'event:tool_approval', 'tool_result', 'stream_chunk', 'stream_end']);
      expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i + 1));
      // Once it no longer waits, a decision is a conflict.
      expect(await call('POST', `${path}/approvals`, alice, { request_id: requestId, approve: true })).toMatchObject({ status: 409, json: { code: 'conflict' } });
    });

    it('a refusal reaches the model as the tool result, with its reason', async () => {
      const run = await waitingRun('call_rest_no', answer('Understood.'));
      const requestId = run.required_action.requests[0].request_id as string;
      const decided = await call('POST', `/v1/agents/${agentId}/runs/${run.id as string}/approvals`, alice, { request_id: requestId, approve: false, reason: 'ask finance first' });
      expect(decided.status).toBe(200);
      const done = await call('GET', `/v1/agents/${agentId}/runs/${run.id as string}?wait=20`, alice);
      expect(done.json).toMatchObject({ status: 'completed', output: { content: 'Understood.' } });
      const continued = fake.requests.at(-1)!.json as { messages: { role: string; content: unknown; tool_call_id?: string }[] };
      expect(continued.messages.at(-1)).toMatchObject({ role: 'tool', tool_call_id: 'call_rest_no', content: '{"error":"refused by a person: ask finance first"}' });
    });

    it('answers 404 for a request the run does not have or another user, 400 for a bad body', async () => {
      const run = await waitingRun('call_rest_err');
      const path = `/v1/agents/${agentId}/runs/${run.id as string}/approvals`;
      expect(await call('POST', path, alice, { request_id: 'apr_0000000000000000', approve: true })).toMatchObject({ status: 404, json: { code: 'not_found' } });
      expect(await call('POST', path, bob, { request_id: run.required_action.requests[0].request_id, approve: true })).toMatchObject({ status: 404, json: { code: 'not_found' } });
      for (const body of [{ request_id: 'apr_0000000000000000' }, { request_id: 'nope', approve: true }, { request_id: 'apr_0000000000000000', approve: true, reason: 'x'.repeat(2001) }, { request_id: 'apr_0000000000000000', approve: 'yes' }]) {
        expect((await call('POST', path, alice, body)).json, JSON.stringify(body)).toMatchObject({ code: 'invalid_request' });
      }
      // The run still waits; a cancel ends it and answers its call, so the agent takes runs again.
      expect((await call('GET', `/v1/agents/${agentId}/runs/${run.id as string}`, alice)).json.status).toBe('requires_action');
      const cancelled = await call('POST', `/v1/agents/${agentId}/runs/${run.id as string}/cancel`, alice);
      expect(cancelled.json).toMatchObject({ status: 'cancelled', required_action: null });
      fake.reply(answer('back again'));
      const next = await call('POST', `/v1/agents/${agentId}/runs`, alice, { content: 'still there?' });
      expect(next.status).toBe(202);
      expect((await call('GET', `/v1/agents/${agentId}/runs/${next.json.id as string}?wait=20`, alice)).json).toMatchObject({ status: 'completed', output: { content: 'back again' } });
      const sent = fake.requests.at(-1)!.json as { messages: { role: string; content: unknown }[] };
      expect(sent.messages.slice(-3)).toMatchObject([{ role: 'assistant' }, { role: 'tool', content: '{"error":"not run: the run was cancelled"}' }, { role: 'user', content: 'still there?' }]);
    });
  });
});
