/**
 * Runs' webhooks end to end, on SQLite and PostgreSQL: a run's transition is POSTed to a real
 * loopback receiver, signed per Standard Webhooks (checked here with the spec's algorithm and
 * the secret from `GET /v1/auth/webhook-secret`), retried when the receiver answers 500 twice,
 * every attempt listed by `GET /v1/agents/{id}/runs/{run}/deliveries`; a private target is
 * refused without the option; and with three API instances on one PostgreSQL and one Redis,
 * each event reaches the receiver once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  createSentinelApi,
  isSentinelError,
  parseAgentDefinition,
  type ModelProvider,
  type Principal,
  type ProviderEvent,
  type ProviderRequest,
  type SentinelApi,
} from '@sentinel/api-core';
import { mountApi } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix } from '@sentinel/test-support/redis';

/** The spec's verification written out (standardwebhooks.com): HMAC-SHA256 of `${id}.${timestamp}.${body}`, key = base64 after `whsec_`. */
function specVerify(secret: string, headers: IncomingHttpHeaders, body: string): boolean {
  const id = String(headers['webhook-id']);
  const timestamp = String(headers['webhook-timestamp']);
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return String(headers['webhook-signature'])
    .split(' ')
    .some((entry) => {
      const [version, value] = entry.split(',');
      const given = Buffer.from(value ?? '', 'base64');
      return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
    });
}

/** A model that answers "calc <expr>" with one calculator call, then with the tool's result. */
class GatedToolProvider implements ModelProvider {
  readonly name = 'gatedtool';
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    const last = req.messages.at(-1);
    if (last?.role === 'user' && last.content.startsWith('calc ')) {
      yield { type: 'tool_call', call: { id: 'call_calc', name: 'calculator', arguments: { expression: last.content.slice(5) } } };
      yield { type: 'finish', reason: 'tool_calls' };
      return;
    }
    const result = JSON.parse(last?.content ?? '{}') as { result?: unknown };
    yield { type: 'text', delta: `the answer is ${String(result.result)}` };
    yield { type: 'finish', reason: 'stop' };
  }
}

interface Receiver {
  url: string;
  received: Array<{ headers: IncomingHttpHeaders; body: string }>;
  close(): Promise<void>;
}

/** Answers the n-th POST with statuses[n] (the last one after that). */
async function startReceiver(statuses: number[] = [200]): Promise<Receiver> {
  const received: Receiver['received'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(statuses[Math.min(received.length - 1, statuses.length - 1)] ?? 200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

async function until<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function call(base: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: any; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.body.text();
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text), text };
}

/** Fast retries for tests: the delays are in ms. */
const FAST = { allowPrivateAddresses: true, retryBaseMs: 20, retryCapMs: 60, pollIntervalMs: 10 } as const;

describe.each(['sqlite', 'postgres'] as const)('run webhooks (%s)', (storeKind) => {
  let dir: string;
  let db: TestDatabase | undefined;
  let strictDb: TestDatabase | undefined;
  let api: SentinelApi;
  let strict: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let aliceToken: string;
  let bobToken: string;
  let alice: Principal;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-run-webhooks-'));
    if (storeKind === 'postgres') db = await createTestDatabase();
    const common = { tokenSecret: 'run-webhooks-secret-0123456789abcdef', adminPassword: 'admin-password-123', ...(db === undefined ? {} : { storeUrl: db.url }) };
    api = await createSentinelApi({ ...common, dataDir: join(dir, 'a'), webhooks: FAST });
    const mounted = await mountApi('standalone', api);
    base = mounted.baseUrl;
    close = mounted.close;
    await api.users.create({ username: 'alice', password: 'alice-password-1', role: 'user' });
    await api.users.create({ username: 'bob', password: 'bob-password-12', role: 'user' });
    aliceToken = (await api.authService.issueToken('alice')).token;
    bobToken = (await api.authService.issueToken('bob')).token;
    alice = await api.authenticate(`Bearer ${aliceToken}`);
    // The default policy, with data of its own: private targets refused.
    if (storeKind === 'postgres') strictDb = await createTestDatabase();
    strict = await createSentinelApi({ ...common, dataDir: join(dir, 'b'), ...(strictDb === undefined ? {} : { storeUrl: strictDb.url }) });
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    await strict?.close();
    for (const r of receivers) await r.close();
    await db?.drop();
    await strictDb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function receiver(statuses?: number[]): Promise<Receiver> {
    const r = await startReceiver(statuses);
    receivers.push(r);
    return r;
  }

  it('POSTs the completed run signed, retries a receiver that answers 500 twice, and lists the three attempts', async () => {
    const hook = await receiver([500, 500, 200]);
    const agent = await call(base, 'POST', '/v1/agents', aliceToken, { image: 'sentinel/echo:latest', name: 'retried' });
    expect(agent.status, agent.text).toBe(201);
    const created = await call(base, 'POST', `/v1/agents/${agent.body.id}/runs`, aliceToken, { content: 'hello webhook', webhook: hook.url });
    expect(created.status, created.text).toBe(202);
    const run = created.body as { id: string; webhook: string };
    expect(run.webhook).toBe(hook.url);
    const ended = await api.runs.wait(alice, agent.body.id, run.id, 10_000);
    expect(ended.status).toBe('completed');

    const listed = await until(async () => {
      const r = await call(base, 'GET', `/v1/agents/${agent.body.id}/runs/${run.id}/deliveries`, aliceToken);
      return r.body?.deliveries?.[0]?.status === 'delivered' ? r : undefined;
    }, 'the delivery');
    expect(listed.status).toBe(200);
    const [delivery] = listed.body.deliveries;
    expect(delivery).toEqual({
      id: expect.stringMatching(/^msg_[0-9a-f]{32}$/),
      event: 'run.completed',
      url: hook.url,
      status: 'delivered',
      attempts: [1, 2, 3].map((attempt, i) => ({ attempt, at: expect.any(String), status_code: [500, 500, 200][i], error: null, duration_ms: expect.any(Number) })),
      created_at: expect.any(String),
      delivered_at: expect.any(String),
    });
    expect(hook.received).toHaveLength(3);

    const secret = (await call(base, 'GET', '/v1/auth/webhook-secret', aliceToken)).body.secret as string;
    const stored = await api.runs.get(alice, agent.body.id, run.id);
    for (const { headers, body } of hook.received) {
      expect(specVerify(secret, headers, body)).toBe(true);
      expect(headers['webhook-id']).toBe(delivery.id);
      expect(headers['content-type']).toBe('application/json');
      expect(JSON.parse(body)).toEqual({ type: 'run.completed', timestamp: expect.any(String), data: stored });
    }
    // Another user does not see the run's deliveries; an unknown run is a 404 too.
    expect((await call(base, 'GET', `/v1/agents/${agent.body.id}/runs/${run.id}/deliveries`, bobToken)).status).toBe(404);
    expect((await call(base, 'GET', `/v1/agents/${agent.body.id}/runs/run_${'0'.repeat(24)}/deliveries`, aliceToken)).status).toBe(404);
  });

  it("delivers to the agent's default webhook, and a run's own webhook wins over it", async () => {
    const byDefault = await receiver();
    const own = await receiver();
    const agent = await call(base, 'POST', '/v1/agents', aliceToken, { image: 'sentinel/echo:latest', name: 'defaulted', webhook: byDefault.url });
    expect(agent.status, agent.text).toBe(201);
    const first = await api.runs.create(alice, agent.body.id, { content: 'one' });
    expect(first.run.webhook).toBe(byDefault.url);
    await api.runs.wait(alice, agent.body.id, first.run.id, 10_000);
    await until(() => byDefault.received.length === 1, 'the default webhook');
    const second = await api.runs.create(alice, agent.body.id, { content: 'two', webhook: own.url });
    await api.runs.wait(alice, agent.body.id, second.run.id, 10_000);
    await until(() => own.received.length === 1, "the run's own webhook");
    expect(byDefault.received).toHaveLength(1);
    expect(JSON.parse(own.received[0]?.body ?? '{}').data.id).toBe(second.run.id);
  });

  it('announces a cancelled run as run.cancelled', async () => {
    const hook = await receiver();
    const agent = await call(base, 'POST', '/v1/agents', aliceToken, { image: 'sentinel/echo:latest', name: 'cancelled' });
    // The echo provider streams a chunk of 1-3 words every 15 ms: 300 words take seconds, so the cancel finds it running.
    const { run } = await api.runs.create(alice, agent.body.id, { content: 'word '.repeat(300), webhook: hook.url });
    const cancelled = await api.runs.cancel(alice, agent.body.id, run.id);
    const ended = cancelled.status === 'cancelled' ? cancelled : await api.runs.wait(alice, agent.body.id, run.id, 10_000);
    expect(ended.status).toBe('cancelled');
    await until(() => hook.received.length === 1, 'the webhook');
    const payload = JSON.parse(hook.received[0]?.body ?? '{}');
    expect(payload).toMatchObject({ type: 'run.cancelled', data: { id: run.id, status: 'cancelled' } });
  });

  it('announces requires_action with the pending approval, then completed after the decision', async () => {
    const hook = await receiver();
    api.providers.register(new GatedToolProvider());
    await api.images.build(parseAgentDefinition({ name: `test/gated-${storeKind}`, model: 'gatedtool/m', tools: [{ name: 'calculator', approval: 'required' }] }));
    const agent = await call(base, 'POST', '/v1/agents', aliceToken, { image: `test/gated-${storeKind}`, name: 'gated', webhook: hook.url });
    expect(agent.status, agent.text).toBe(201);
    const created = await call(base, 'POST', `/v1/agents/${agent.body.id}/runs`, aliceToken, { content: 'calc 6*7' });
    expect(created.status, created.text).toBe(202);
    const runId = created.body.id as string;
    await until(() => hook.received.length === 1, 'the requires_action webhook');
    const waiting = JSON.parse(hook.received[0]?.body ?? '{}');
    expect(waiting).toMatchObject({ type: 'run.requires_action', data: { id: runId, status: 'requires_action', webhook: hook.url } });
    const request = waiting.data.required_action.requests[0];
    expect(request).toMatchObject({ tool: 'calculator', parameters: { expression: '6*7' } });

    await api.runs.decide(alice, agent.body.id, runId, { request_id: request.request_id, approve: true });
    await until(() => hook.received.length === 2, 'the completed webhook');
    const done = JSON.parse(hook.received[1]?.body ?? '{}');
    expect(done).toMatchObject({ type: 'run.completed', data: { id: runId, status: 'completed', output: { content: 'the answer is 42' } } });
    const secret = (await call(base, 'GET', '/v1/auth/webhook-secret', aliceToken)).body.secret as string;
    for (const { headers, body } of hook.received) expect(specVerify(secret, headers, body)).toBe(true);
    // The receiver has the request before the attempt is recorded: wait for the record.
    const listed = await until(async () => {
      const r = await call(base, 'GET', `/v1/agents/${agent.body.id}/runs/${runId}/deliveries`, aliceToken);
      return r.body.deliveries.every((d: { status: string }) => d.status === 'delivered') ? r : undefined;
    }, 'both deliveries recorded');
    expect(listed.body.deliveries.map((d: { event: string; status: string }) => `${d.event}:${d.status}`)).toEqual(['run.requires_action:delivered', 'run.completed:delivered']);
  });

  it('refuses a private webhook target without the option, before any run is stored', async () => {
    await strict.users.create({ username: 'dave', password: 'dave-password-12', role: 'user' });
    const principal = await strict.authenticate(`Bearer ${(await strict.authService.issueToken('dave')).token}`);
    const agent = await strict.agents.create(principal, { image: 'sentinel/echo:latest', name: 'strict' }, { secure: false, host: 'localhost' });
    for (const url of ['http://127.0.0.1:9/hook', 'http://10.0.0.1/hook', 'http://169.254.169.254/latest', 'http://[::1]:8080/']) {
      const err = await strict.runs.create(principal, agent.id, { content: 'hi', webhook: url }).then(
        () => expect.unreachable('a private target was accepted'),
        (e: unknown) => e,
      );
      expect(isSentinelError(err) && err.code, url).toBe('invalid_request');
      expect((err as Error).message).toMatch(/loopback, private or link-local address; refused/);
    }
    expect((await strict.runs.list(principal, agent.id, {})).runs).toEqual([]);
    // The agent's default is checked the same way.
    const refused = await strict.agents.create(principal, { image: 'sentinel/echo:latest', name: 'strict2', webhook: 'http://127.0.0.1:9/' }, { secure: false, host: 'localhost' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isSentinelError(refused) && refused.code).toBe('invalid_request');
  });
});

describe('run webhooks across three instances on one PostgreSQL and one Redis', () => {
  const prefix = uniquePrefix();
  let db: TestDatabase;
  let dir: string;
  const apis: SentinelApi[] = [];
  const closers: Array<() => Promise<void>> = [];
  const bases: string[] = [];

  beforeAll(async () => {
    await assertRedisRunning();
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-run-webhooks-3-'));
    for (let i = 0; i < 3; i++) {
      const api = await createSentinelApi({
        dataDir: join(dir, String(i)),
        tokenSecret: 'three-instances-secret-0123456789abcdef',
        adminPassword: 'admin-password-123',
        storeUrl: db.url,
        busUrl: busUrl(prefix),
        webhooks: { ...FAST, pollIntervalMs: 5 },
      });
      apis.push(api);
      const mounted = await mountApi('standalone', api);
      bases.push(mounted.baseUrl);
      closers.push(mounted.close);
    }
  });

  afterAll(async () => {
    for (const close of closers) await close();
    for (const api of apis) await api.close();
    await deletePrefix(prefix);
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('each run transition reaches the receiver once, whichever instance ran it', async () => {
    const hook = await startReceiver();
    try {
      const [a, b] = apis as [SentinelApi, SentinelApi, SentinelApi];
      await a.users.create({ username: 'carol', password: 'carol-password-1', role: 'user' });
      const token = (await b.authService.issueToken('carol')).token;
      const agent = await call(bases[0] as string, 'POST', '/v1/agents', token, { image: 'sentinel/echo:latest', name: 'shared', webhook: hook.url });
      expect(agent.status, agent.text).toBe(201);
      const runIds: string[] = [];
      for (let i = 0; i < 6; i++) {
        const api = apis[i % 3] as SentinelApi;
        const principal = await api.authenticate(`Bearer ${token}`);
        const { run } = await api.runs.create(principal, agent.body.id, { content: `message ${i}` });
        await api.runs.wait(principal, agent.body.id, run.id, 10_000);
        runIds.push(run.id);
      }
      await until(() => hook.received.length >= 6, 'six deliveries');
      // Every dispatcher keeps polling the shared table: a duplicate would arrive within this.
      await new Promise((r) => setTimeout(r, 300));
      expect(hook.received).toHaveLength(6);
      expect(new Set(hook.received.map((r) => JSON.parse(r.body).data.id))).toEqual(new Set(runIds));
      const secret = (await call(bases[2] as string, 'GET', '/v1/auth/webhook-secret', token)).body.secret as string;
      for (const { headers, body } of hook.received) expect(specVerify(secret, headers, body)).toBe(true);
      // Read through the third instance: one delivery of one attempt per run.
      for (const runId of runIds) {
        const listed = await until(async () => {
          const r = await call(bases[2] as string, 'GET', `/v1/agents/${agent.body.id}/runs/${runId}/deliveries`, token);
          return r.body.deliveries[0]?.status === 'delivered' ? r : undefined;
        }, `the delivery of ${runId} recorded`);
        expect(listed.body.deliveries).toHaveLength(1);
        expect(listed.body.deliveries[0]).toMatchObject({ status: 'delivered', event: 'run.completed' });
        expect(listed.body.deliveries[0].attempts).toHaveLength(1);
      }
    } finally {
      await hook.close();
    }
  });
});
