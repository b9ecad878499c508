/**
 * Webhooks below the HTTP layer: the Standard Webhooks signature (checked here with the spec's
 * algorithm written out, not with the module's own verifier), the Store's webhook part on both
 * back ends (secrets, agents' defaults, deliveries leased by compare-and-set), and the
 * dispatcher against real loopback receivers: retries with backoff, each attempt recorded, the
 * address policy, and one delivery however many dispatchers share the database.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  WebhookDispatcher,
  WebhookSecrets,
  checkWebhookUrl,
  generateWebhookSecret,
  isSentinelError,
  openSqliteStore,
  signWebhook,
  verifyWebhookSignature,
  type Store,
  type WebhookDeliveryWithAttempts,
} from '@sentinel/api-core';
import { openPostgresStore } from '@sentinel/api-core/postgres';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const T0 = '2025-01-01T00:00:00.000Z';

/**
 * The spec's verification, step by step (standardwebhooks.com, "Verifying webhooks"): the key is
 * the base64 after `whsec_`; the signed content is `${id}.${timestamp}.${body}`; the header holds
 * space-separated `v1,<base64>` entries; compare in constant time; refuse timestamps more than
 * five minutes away.
 */
function specVerify(secret: string, headers: IncomingHttpHeaders, body: string, nowSeconds = Date.now() / 1000): boolean {
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signature = headers['webhook-signature'];
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signature !== 'string') return false;
  if (Math.abs(nowSeconds - Number(timestamp)) > 300) return false;
  const key = Buffer.from(secret.split('_')[1] ?? '', 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest();
  return signature.split(' ').some((entry) => {
    const [version, value] = entry.split(',');
    const given = Buffer.from(value ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A loopback receiver answering each POST with the next status of `statuses` (then the last one). */
async function startReceiver(statuses: number[]): Promise<{ url: string; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const status = statuses[Math.min(received.length - 1, statuses.length - 1)] ?? 200;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'nope');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/sentinel`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function until<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('expected a rejection'),
    (err: unknown) => err,
  );
}

/** A user, an image and an agent, the rows a delivery hangs on. */
async function seed(store: Store, agentId = 'a1b2c3d4e5f60718'): Promise<{ agentId: string; owner: string }> {
  const owner = 'alice';
  if ((await store.getUser(owner)) === null) {
    await store.createUser({ username: owner, password_hash: 'scrypt$16384$8$1$c2FsdA$x', role: 'user', can_push: false, created_at: T0, updated_at: T0 });
  }
  const config = JSON.stringify({ name: 'hook', model: { provider: 'echo', name: 'echo', parameters: {} } });
  const digest = `sha256:${'ab'.repeat(32)}`;
  await store.putImage({ digest, manifest: '{"schemaVersion":2}', config, config_digest: `sha256:${'cd'.repeat(32)}`, size: config.length, created_at: T0 }, []);
  await store.createAgent({
    id: agentId,
    name: `agent-${agentId}`,
    owner,
    image: 'hook:latest',
    image_id: digest,
    status: 'running',
    model: 'echo/echo',
    parameters: {},
    environment: {},
    usage_requests: 0,
    usage_tokens: 0,
    created_at: T0,
    updated_at: T0,
  });
  return { agentId, owner };
}

/** A run record as the run layer announces it (only id, agent_id, owner and webhook matter here). */
function runRecord(agentId: string, owner: string, webhook: string | null, id = 'run_0123456789abcdef01234567') {
  return {
    id,
    agent_id: agentId,
    owner,
    message_id: 'msg_1',
    status: 'completed' as const,
    input: { content: 'hello' },
    output: { content: 'hello back', reason: 'stop' },
    usage: { input_tokens: 1, output_tokens: 2, total_tokens: 3 },
    error: null,
    required_action: null,
    webhook,
    last_seq: 4,
    created_at: T0,
    started_at: T0,
    ended_at: T0,
  };
}

describe('Standard Webhooks signature', () => {
  const secret = generateWebhookSecret();

  it('makes secrets of the spec shape and signs what the spec says', () => {
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(secret.slice(6), 'base64')).toHaveLength(32);
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': '1700000000', 'webhook-signature': signWebhook(secret, { id: 'msg_1', timestamp: 1700000000, body: '{"a":1}' }) };
    expect(specVerify(secret, headers, '{"a":1}', 1700000000)).toBe(true);
    expect(specVerify(secret, headers, '{"a":2}', 1700000000)).toBe(false);
  });

  it('matches the spec’s published test vector', () => {
    // From the Standard Webhooks reference libraries' tests.
    const vector = signWebhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', {
      id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      timestamp: 1614265330,
      body: '{"test": 2432232314}',
    });
    expect(vector).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('verifies in constant time, within five minutes, with several signatures', () => {
    const body = '{"type":"run.completed"}';
    const good = signWebhook(secret, { id: 'msg_2', timestamp: 1700000000, body });
    const other = signWebhook(generateWebhookSecret(), { id: 'msg_2', timestamp: 1700000000, body });
    const headers = (signature: string, timestamp = '1700000000') => ({ 'webhook-id': 'msg_2', 'webhook-timestamp': timestamp, 'webhook-signature': signature });
    expect(verifyWebhookSignature(secret, headers(good), body, { nowSeconds: 1700000000 })).toBe(true);
    expect(verifyWebhookSignature(secret, headers(`${other} ${good}`), body, { nowSeconds: 1700000299 })).toBe(true);
    expect(verifyWebhookSignature(secret, headers(other), body, { nowSeconds: 1700000000 })).toBe(false);
    expect(verifyWebhookSignature(secret, headers(good), body, { nowSeconds: 1700000301 })).toBe(false);
    expect(verifyWebhookSignature(secret, headers(good), body, { nowSeconds: 1699999699 })).toBe(false);
    expect(verifyWebhookSignature(secret, headers(good, 'soon'), body, { nowSeconds: 1700000000 })).toBe(false);
    expect(verifyWebhookSignature(secret, headers(good), `${body} `, { nowSeconds: 1700000000 })).toBe(false);
    expect(verifyWebhookSignature(secret, {}, body)).toBe(false);
  });
});

describe('webhook URLs at the edge', () => {
  it('accepts absolute http(s) URLs without credentials, within 2048 characters', async () => {
    await expect(checkWebhookUrl('https://93.184.215.14/hook')).resolves.toMatchObject({ url: 'https://93.184.215.14/hook' });
    for (const [bad, why] of [
      ['/relative', 'absolute'],
      ['ftp://93.184.215.14/x', 'http'],
      ['https://user:pw@93.184.215.14/x', 'credentials'],
      [`https://93.184.215.14/${'a'.repeat(2048)}`, '2048'],
    ] as const) {
      const err = await rejection(checkWebhookUrl(bad));
      expect(isSentinelError(err) && err.code).toBe('invalid_request');
      expect((err as Error).message).toContain(why);
    }
  });

  it('refuses loopback, private and link-local targets unless allowed', async () => {
    for (const url of ['http://127.0.0.1:9/x', 'http://10.1.2.3/x', 'http://169.254.169.254/latest', 'http://[::1]/x', 'http://192.168.1.1/']) {
      const err = await rejection(checkWebhookUrl(url));
      expect(isSentinelError(err) && err.code, url).toBe('invalid_request');
      expect((err as Error).message).toMatch(/loopback, private or link-local/);
    }
    const resolver = async () => [{ address: '10.0.0.7', family: 4 as const }];
    const err = await rejection(checkWebhookUrl('https://hooks.example.test/x', { resolver }));
    expect((err as Error).message).toContain('resolves to 10.0.0.7');
    await expect(checkWebhookUrl('http://127.0.0.1:9/x', { allowPrivateAddresses: true })).resolves.toMatchObject({ url: 'http://127.0.0.1:9/x' });
    // A name that does not resolve now is accepted (checked again at each delivery).
    const nowhere = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    await expect(checkWebhookUrl('https://not-yet.example.test/x', { resolver: nowhere })).resolves.toEqual({ url: 'https://not-yet.example.test/x', addresses: [] });
  });
});

type StoreFactory = () => Promise<{ store: Store; cleanup(): Promise<void> }>;

let pgDb: TestDatabase;
let schemaCount = 0;
beforeAll(async () => {
  pgDb = await createTestDatabase();
});
afterAll(async () => {
  await pgDb?.drop();
});

const FACTORIES: ReadonlyArray<[string, StoreFactory]> = [
  [
    'sqlite',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'sentinel-webhooks-'));
      const store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
      return { store, cleanup: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
    },
  ],
  [
    'postgres',
    async () => {
      const store = await openPostgresStore({ url: pgDb.url, schema: `hooks${++schemaCount}` });
      return { store, cleanup: () => store.close() };
    },
  ],
];

describe.each(FACTORIES)('webhook store and delivery (%s)', (_name, open) => {
  let store: Store;
  let cleanup: () => Promise<void>;
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    ({ store, cleanup } = await open());
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  afterAll(async () => {
    await cleanup();
  });

  it('keeps one secret per user, made once even by racing first uses, replaced by rotation', async () => {
    const { owner } = await seed(store, 'a000000000000001');
    const secrets = new WebhookSecrets({ store });
    expect(await store.getWebhookSecret(owner)).toBeNull();
    const raced = await Promise.all([secrets.secretOf(owner), secrets.secretOf(owner), secrets.secretOf(owner)]);
    expect(new Set(raced).size).toBe(1);
    expect(await store.getWebhookSecret(owner)).toBe(raced[0]);
    const rotated = await secrets.rotate(owner);
    expect(rotated).not.toBe(raced[0]);
    expect(await secrets.secretOf(owner)).toBe(rotated);
    const err = await rejection(secrets.secretOf('nobody'));
    expect(isSentinelError(err) && err.code).toBe('not_found');
    expect(isSentinelError(await rejection(store.setWebhookSecret('nobody', generateWebhookSecret(), T0))) && 'ok').toBe('ok');
  });

  it('stores an agent’s default webhook, which goes with the agent', async () => {
    const { agentId } = await seed(store, 'a000000000000002');
    expect(await store.getAgentWebhook(agentId)).toBeNull();
    await store.setAgentWebhook(agentId, 'https://example.com/a');
    await store.setAgentWebhook(agentId, 'https://example.com/b');
    expect(await store.getAgentWebhook(agentId)).toBe('https://example.com/b');
    await store.setAgentWebhook(agentId, null);
    expect(await store.getAgentWebhook(agentId)).toBeNull();
    await store.setAgentWebhook(agentId, 'https://example.com/c');
    const err = await rejection(store.setAgentWebhook('nope', 'https://example.com/'));
    expect(isSentinelError(err) && err.code).toBe('not_found');
    await store.deleteAgent(agentId);
    expect(await store.getAgentWebhook(agentId)).toBeNull();
  });

  it('leases each due delivery to one claimant at a time and records attempts only under the lease', async () => {
    const { agentId, owner } = await seed(store, 'a000000000000003');
    const base = { run_id: 'run_lease', agent_id: agentId, owner, event: 'run.completed' as const, url: 'https://example.com/', payload: '{"x":1}', created_at: T0 };
    for (let i = 0; i < 6; i++) await store.createWebhookDelivery({ ...base, id: `msg_lease${i}`, next_attempt_at: T0 });
    await store.createWebhookDelivery({ ...base, id: 'msg_later', next_attempt_at: '2025-01-01T01:00:00.000Z' });
    const dup = await rejection(store.createWebhookDelivery({ ...base, id: 'msg_lease0', next_attempt_at: T0 }));
    expect(isSentinelError(dup) && dup.code).toBe('conflict');

    const now = '2025-01-01T00:00:10.000Z';
    const until = '2025-01-01T00:01:10.000Z';
    const claims = await Promise.all(['c1', 'c2', 'c3'].map((claimant) => store.claimWebhookDeliveries({ now, until, claimant, limit: 4 })));
    const ids = claims.flat().map((d) => d.id);
    expect(ids.sort()).toEqual(['msg_lease0', 'msg_lease1', 'msg_lease2', 'msg_lease3', 'msg_lease4', 'msg_lease5']);
    expect(new Set(ids).size).toBe(6);
    expect(claims.flat().every((d) => d.claimed_until === until && d.status === 'pending' && d.attempts === 0)).toBe(true);
    // Still leased: nobody else gets them.
    expect(await store.claimWebhookDeliveries({ now: '2025-01-01T00:00:20.000Z', until, claimant: 'c4', limit: 10 })).toEqual([]);

    const owned = claims.findIndex((c) => c.some((d) => d.id === 'msg_lease0'));
    const holder = ['c1', 'c2', 'c3'][owned] as string;
    const attempt = { attempt: 1, at: now, status_code: 500, error: null, duration_ms: 12 };
    const retry = { status: 'pending' as const, next_attempt_at: '2025-01-01T00:00:15.000Z', delivered_at: null };
    expect(await store.recordWebhookAttempt('msg_lease0', 'intruder', attempt, retry)).toBe(false);
    expect(await store.recordWebhookAttempt('msg_lease0', holder, attempt, retry)).toBe(true);
    // The lease ended with the record: the claimant cannot write twice.
    expect(await store.recordWebhookAttempt('msg_lease0', holder, { ...attempt, attempt: 2 }, retry)).toBe(false);

    // An expired lease is taken over; the old holder's late write is refused.
    const afterLease = '2025-01-01T00:01:11.000Z';
    const taken = await store.claimWebhookDeliveries({ now: afterLease, until: '2025-01-01T00:02:11.000Z', claimant: 'c5', limit: 10 });
    expect(taken.map((d) => d.id).sort()).toEqual(['msg_lease0', 'msg_lease1', 'msg_lease2', 'msg_lease3', 'msg_lease4', 'msg_lease5']);
    expect(taken.find((d) => d.id === 'msg_lease0')?.attempts).toBe(1);
    const other = ['c1', 'c2', 'c3'][claims.findIndex((c) => c.some((d) => d.id === 'msg_lease1'))] as string;
    expect(await store.recordWebhookAttempt('msg_lease1', other, attempt, retry)).toBe(false);
    const done = { status: 'delivered' as const, next_attempt_at: afterLease, delivered_at: afterLease };
    expect(await store.recordWebhookAttempt('msg_lease0', 'c5', { ...attempt, attempt: 2, status_code: 204, at: afterLease }, done)).toBe(true);

    const listed = await store.listWebhookDeliveries('run_lease');
    expect(listed.map((d) => d.id)).toContain('msg_later');
    const first = listed.find((d) => d.id === 'msg_lease0') as WebhookDeliveryWithAttempts;
    expect(first).toMatchObject({ status: 'delivered', attempts: 2, delivered_at: afterLease, claimed_until: null, payload: '{"x":1}' });
    expect(first.attempt_log).toEqual([attempt, { ...attempt, attempt: 2, status_code: 204, at: afterLease }]);
    // Delivered: never claimed again.
    const again = await store.claimWebhookDeliveries({ now: '2025-01-02T00:00:00.000Z', until: '2025-01-02T00:01:00.000Z', claimant: 'c6', limit: 10 });
    expect(again.map((d) => d.id)).not.toContain('msg_lease0');
    expect(await store.listWebhookDeliveries('run_none')).toEqual([]);
    await store.deleteAgent(agentId);
    expect(await store.listWebhookDeliveries('run_lease')).toEqual([]);
  });

  it('delivers signed, retries a receiver that answers 500 twice, records three attempts', async () => {
    const { agentId, owner } = await seed(store, 'a000000000000004');
    const receiver = await startReceiver([500, 500, 200]);
    closers.push(receiver.close);
    const secrets = new WebhookSecrets({ store });
    const dispatcher = new WebhookDispatcher({ store, secrets, allowPrivateAddresses: true, retryBaseMs: 20, retryCapMs: 50, pollIntervalMs: 10 });
    closers.push(() => dispatcher.close());
    dispatcher.start();
    const run = runRecord(agentId, owner, receiver.url, 'run_retry');
    const queued = await dispatcher.enqueue(run, 'completed');
    expect(queued?.id).toMatch(/^msg_[0-9a-f]{32}$/);

    const [delivery] = await until(async () => {
      const list = await store.listWebhookDeliveries('run_retry');
      return list[0]?.status === 'delivered' ? list : undefined;
    }, 'the delivery');
    expect(delivery?.attempts).toBe(3);
    expect(delivery?.attempt_log.map((a) => a.status_code)).toEqual([500, 500, 200]);
    expect(delivery?.attempt_log.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(delivery?.attempt_log.every((a) => a.error === null && a.duration_ms >= 0)).toBe(true);
    expect(receiver.received).toHaveLength(3);

    const secret = (await store.getWebhookSecret(owner)) as string;
    for (const { headers, body } of receiver.received) {
      expect(specVerify(secret, headers, body)).toBe(true);
      expect(headers['webhook-id']).toBe(queued?.id);
      expect(headers['content-type']).toBe('application/json');
      expect(headers['user-agent']).toMatch(/^SentinelStacks-Webhooks\//);
      expect(JSON.parse(body)).toEqual({ type: 'run.completed', timestamp: expect.any(String), data: run });
    }
    // The same bytes every time: a receiver deduplicates by webhook-id and gets one event.
    expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
    expect(specVerify(generateWebhookSecret(), receiver.received[0]?.headers ?? {}, receiver.received[0]?.body ?? '')).toBe(false);
  });

  it('uses the agent’s default URL when the run names none, and gives up after the retry window', async () => {
    const { agentId, owner } = await seed(store, 'a000000000000005');
    const receiver = await startReceiver([503]);
    closers.push(receiver.close);
    await store.setAgentWebhook(agentId, receiver.url);
    const dispatcher = new WebhookDispatcher({ store, secrets: new WebhookSecrets({ store }), allowPrivateAddresses: true, retryBaseMs: 20, retryCapMs: 40, retryForMs: 150, pollIntervalMs: 10 });
    closers.push(() => dispatcher.close());
    dispatcher.start();
    await dispatcher.enqueue(runRecord(agentId, owner, null, 'run_default'), 'failed');
    const [delivery] = await until(async () => {
      const list = await store.listWebhookDeliveries('run_default');
      return list[0]?.status === 'failed' ? list : undefined;
    }, 'the delivery to fail');
    expect(delivery?.url).toBe(receiver.url);
    expect(delivery?.event).toBe('run.failed');
    expect(delivery?.attempts).toBeGreaterThanOrEqual(2);
    expect(delivery?.attempt_log.every((a) => a.status_code === 503)).toBe(true);
    expect(receiver.received).toHaveLength(delivery?.attempts ?? -1);
    // No URL anywhere: nothing is stored.
    await store.setAgentWebhook(agentId, null);
    expect(await dispatcher.enqueue(runRecord(agentId, owner, null, 'run_nourl'), 'completed')).toBeNull();
    expect(await store.listWebhookDeliveries('run_nourl')).toEqual([]);
  });

  it('refuses a private target at delivery without the option: one attempt, failed, nothing sent', async () => {
    const { agentId, owner } = await seed(store, 'a000000000000006');
    const receiver = await startReceiver([200]);
    closers.push(receiver.close);
    const dispatcher = new WebhookDispatcher({ store, secrets: new WebhookSecrets({ store }), retryBaseMs: 20, pollIntervalMs: 10 });
    closers.push(() => dispatcher.close());
    dispatcher.start();
    await dispatcher.enqueue(runRecord(agentId, owner, receiver.url, 'run_private'), 'cancelled');
    const [delivery] = await until(async () => {
      const list = await store.listWebhookDeliveries('run_private');
      return list[0]?.status === 'failed' ? list : undefined;
    }, 'the refusal');
    expect(delivery?.attempts).toBe(1);
    expect(delivery?.attempt_log[0]).toMatchObject({ status_code: null, error: expect.stringMatching(/loopback, private or link-local address; refused/) });
    expect(receiver.received).toHaveLength(0);
  });

  it('records a receiver that does not answer in time, and one that refuses connections', async () => {
    const { agentId, owner } = await seed(store, 'a000000000000007');
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => { silent.close(() => resolve()); silent.closeAllConnections(); }));
    const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`;
    const gone = await startReceiver([200]);
    await gone.close();
    const dispatcher = new WebhookDispatcher({
      store, secrets: new WebhookSecrets({ store }), allowPrivateAddresses: true, timeoutMs: 200, leaseMs: 1000, retryBaseMs: 10_000, pollIntervalMs: 10,
    });
    closers.push(() => dispatcher.close());
    dispatcher.start();
    await dispatcher.enqueue(runRecord(agentId, owner, silentUrl, 'run_silent'), 'completed');
    await dispatcher.enqueue(runRecord(agentId, owner, gone.url, 'run_gone'), 'completed');
    const first = async (runId: string) =>
      until(async () => (await store.listWebhookDeliveries(runId)).find((d) => d.attempts === 1), `the first attempt of ${runId}`);
    const timedOut = await first('run_silent');
    expect(timedOut.status).toBe('pending');
    expect(timedOut.attempt_log[0]).toMatchObject({ status_code: null, error: 'no answer within 200 ms' });
    expect(timedOut.attempt_log[0]?.duration_ms).toBeGreaterThanOrEqual(150);
    expect(Date.parse(timedOut.next_attempt_at) - Date.parse(timedOut.attempt_log[0]?.at ?? '')).toBeGreaterThanOrEqual(5000);
    const refused = await first('run_gone');
    expect(refused.attempt_log[0]).toMatchObject({ status_code: null, error: 'ECONNREFUSED' });
  });
});

describe('one delivery across three dispatchers on one PostgreSQL database', () => {
  it('the receiver gets each event once', async () => {
    const schema = `hooks${++schemaCount}`;
    const stores = await Promise.all([0, 1, 2].map(() => openPostgresStore({ url: pgDb.url, schema })));
    const receiver = await startReceiver([200]);
    const dispatchers = stores.map(
      (store) => new WebhookDispatcher({ store, secrets: new WebhookSecrets({ store }), allowPrivateAddresses: true, pollIntervalMs: 5, retryBaseMs: 20 }),
    );
    try {
      const a = stores[0] as Store;
      const { agentId, owner } = await seed(a, 'a000000000000010');
      for (const d of dispatchers) d.start();
      // Ten runs, each announced by one instance (the one that made its transition): every
      // dispatcher polls the same table all the while.
      for (let i = 0; i < 10; i++) await dispatchers[i % 3]?.enqueue(runRecord(agentId, owner, receiver.url, `run_three${i}`), 'completed');
      await until(async () => {
        const lists = await Promise.all(Array.from({ length: 10 }, (_, i) => a.listWebhookDeliveries(`run_three${i}`)));
        return lists.every((l) => l[0]?.status === 'delivered');
      }, 'ten deliveries');
      // Give a duplicate every chance to show up.
      await new Promise((r) => setTimeout(r, 200));
      expect(receiver.received).toHaveLength(10);
      expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).toBe(10);
      for (let i = 0; i < 10; i++) expect((await a.listWebhookDeliveries(`run_three${i}`))[0]?.attempts).toBe(1);
    } finally {
      await Promise.all(dispatchers.map((d) => d.close()));
      await receiver.close();
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});
