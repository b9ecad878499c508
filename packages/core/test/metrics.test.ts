/**
 * The metrics registry of the core (telemetry/metrics.ts): one per API instance (two APIs in one
 * process keep apart and do not collide in prom-client's global registry), off with
 * `metrics: false`, the model label capped, and the scale-out series: the PostgreSQL store's
 * operations and the Redis bus's publishes and reconnections, on a redis-server this file owns
 * and kills.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, Histogram, Registry, register as globalRegistry } from 'prom-client';
import { HotCounter, HotHistogram } from '../src/telemetry/hot-metrics.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, SentinelMetrics, type Principal, type SentinelApi } from '@sentinel/api-core';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { parseExposition, sumOf, valueOf, histogramSeries } from '@sentinel/test-support/prometheus';
import { startOwnRedis, type OwnRedis } from '@sentinel/test-support/redis';

const ADMIN: Principal = { username: 'admin', role: 'admin' };
const origin = { secure: false, host: 'localhost' };
const dirs: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-metrics-'));
  dirs.push(dir);
  return dir;
}

async function start(options: Parameters<typeof createSentinelApi>[0] = {}): Promise<SentinelApi> {
  const api = await createSentinelApi({ dataDir: tempDir(), tokenSecret: 'metrics-test-secret-0123456789', adminPassword: 'admin-password-for-tests', ...options });
  cleanups.push(() => api.close());
  return api;
}

async function exposition(api: SentinelApi) {
  if (api.metrics === undefined) throw new Error('metrics are off');
  return parseExposition(await api.metrics.text());
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('a registry per API instance', () => {
  it('two APIs in one process each count their own, share the process metrics, and neither touches the global registry', async () => {
    const a = await start();
    const b = await start();
    expect(a.metrics?.registry).not.toBe(b.metrics?.registry);
    const bBefore = valueOf(await exposition(b), 'sentinel_event_log_appends_total');
    const agent = await a.agents.create(ADMIN, { image: 'sentinel/echo' }, origin);
    await a.journal.event(agent.id, 'test_event', 'counted once', {});
    const fromA = await exposition(a);
    expect(valueOf(fromA, 'sentinel_event_log_appends_total')).toBeGreaterThanOrEqual(1);
    expect(valueOf(fromA, 'sentinel_store_operation_duration_seconds', { backend: 'sqlite', operation: 'createAgent' })).toBe(1);
    const fromB = await exposition(b);
    expect(valueOf(fromB, 'sentinel_event_log_appends_total')).toBe(bBefore);
    expect(histogramSeries(fromB, 'sentinel_store_operation_duration_seconds').some((labels) => labels.operation === 'createAgent')).toBe(false);
    // Both export the process metrics, collected once for the process they share, and none went global.
    expect(fromA.has('nodejs_eventloop_lag_seconds') && fromB.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(a.metrics?.processRegistry).toBeDefined();
    expect(a.metrics?.processRegistry).toBe(b.metrics?.processRegistry);
    expect(await globalRegistry.getMetricsAsJSON()).toEqual([]);
  });

  it('metrics: false records nothing and leaves the store unwrapped', async () => {
    const api = await start({ metrics: false });
    expect(api.metrics).toBeUndefined();
    expect(api.store.constructor.name).toMatch(/Sqlite/);
    const agent = await api.agents.create(ADMIN, { image: 'sentinel/echo' }, origin);
    expect((await api.agents.get(ADMIN, agent.id, origin)).id).toBe(agent.id);
  });

  it('processMetrics: false leaves out the process metrics', async () => {
    const api = await start({ metrics: { processMetrics: false } });
    const families = await exposition(api);
    expect(families.has('process_cpu_user_seconds_total')).toBe(false);
    expect(families.has('sentinel_turns_total')).toBe(true);
  });
});

describe('the hot-path metrics', () => {
  it('HotHistogram and HotCounter expose exactly what prom-client\'s Histogram and Counter would for the same observations', async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const ours = new Registry();
    const theirs = new Registry();
    const hot = new HotHistogram({ name: 'h_seconds', help: 'a histogram', labelNames: ['route', 'status'], buckets, registry: ours });
    const reference = new Histogram({ name: 'h_seconds', help: 'a histogram', labelNames: ['route', 'status'], buckets, registers: [theirs] });
    const hotCounter = new HotCounter({ name: 'c_total', help: 'a counter', labelNames: ['direction'], registry: ours });
    const referenceCounter = new Counter({ name: 'c_total', help: 'a counter', labelNames: ['direction'], registers: [theirs] });
    const values = [0, 0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 0.5, 1, 2, 30];
    const observeA = hot.child('/v1/a', '200');
    const observeB = hot.child('/v1/b', '404');
    const inbound = hotCounter.child({ direction: 'in' });
    hotCounter.child({ direction: 'out' });
    referenceCounter.labels('out').inc(0);
    for (const value of values) {
      observeA(value);
      reference.labels('/v1/a', '200').observe(value);
      inbound.inc();
      referenceCounter.labels('in').inc();
    }
    observeB(0.003);
    reference.labels('/v1/b', '404').observe(0.003);
    const normalized = (text: string) => text.split('\n').map((line) => line.replace(/\{le="([^"]+)",(.*)\}/, '{$2,le="$1"}')).sort();
    expect(normalized(await ours.metrics())).toEqual(normalized(await theirs.metrics()));
    // A second scrape does not count the counter twice.
    expect(normalized(await ours.metrics())).toEqual(normalized(await theirs.metrics()));
    hot.reset();
    expect(valueOf(parseExposition(await ours.metrics()), 'h_seconds')).toBe(0);
  });
});

describe('bounded labels', () => {
  it('gen_ai_request_model keeps the first modelLabelCap models; the rest count as other', async () => {
    const metrics = new SentinelMetrics({ processMetrics: false, modelLabelCap: 3 });
    for (let i = 0; i < 10; i++) {
      const call = metrics.providerCall('openai', `model-${i}`);
      call.duration(0.5);
      call.tokens(10, 2);
    }
    // A known model stays itself after the cap was reached.
    metrics.providerCall('openai', 'model-1').duration(0.25);
    const families = parseExposition(await metrics.text());
    const models = histogramSeries(families, 'gen_ai_client_operation_duration_seconds').map((labels) => labels.gen_ai_request_model);
    expect(models.sort()).toEqual(['model-0', 'model-1', 'model-2', 'other']);
    expect(valueOf(families, 'gen_ai_client_operation_duration_seconds', { gen_ai_request_model: 'other' })).toBe(7);
    expect(valueOf(families, 'gen_ai_client_operation_duration_seconds', { gen_ai_request_model: 'model-1' })).toBe(2);
    expect(sumOf(families, 'gen_ai_client_token_usage', { gen_ai_request_model: 'other', gen_ai_token_type: 'input' })).toBe(70);
    expect(sumOf(families, 'gen_ai_client_token_usage', { gen_ai_request_model: 'other', gen_ai_token_type: 'output' })).toBe(14);
  });
});

describe('with PostgreSQL and Redis', () => {
  let db: TestDatabase;
  let redis: OwnRedis;

  beforeAll(async () => {
    db = await createTestDatabase();
    redis = await startOwnRedis();
  });
  afterAll(async () => {
    await redis?.dispose();
    await db?.drop();
  });

  it('times the PostgreSQL store, counts bus publishes, and counts the bus reconnecting after Redis came back', async () => {
    const api = await start({ storeUrl: db.url, busUrl: `${redis.url}?prefix=metrics-test:` });
    const agent = await api.agents.create(ADMIN, { image: 'sentinel/echo' }, origin);
    const before = await exposition(api);
    expect(valueOf(before, 'sentinel_store_operation_duration_seconds', { backend: 'postgres', operation: 'createAgent' })).toBe(1);
    const published = valueOf(before, 'sentinel_bus_publish_total');
    await api.journal.event(agent.id, 'test_event', 'over redis', {});
    expect(valueOf(await exposition(api), 'sentinel_bus_publish_total') - published).toBe(1);
    expect(valueOf(before, 'sentinel_bus_reconnects_total')).toBe(0);

    await redis.kill();
    await redis.start();
    // Both connections (commands and subscriptions) come back on their own.
    const deadline = Date.now() + 15_000;
    while (valueOf(await exposition(api), 'sentinel_bus_reconnects_total') < 2) {
      if (Date.now() > deadline) throw new Error('the bus did not reconnect');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(valueOf(await exposition(api), 'sentinel_bus_reconnects_total')).toBe(2);
  }, 30_000);
});
