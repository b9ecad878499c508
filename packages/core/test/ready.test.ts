import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compileRoute, createLocalEventBus, createSentinelApi, errorBody, invokeRoute, isSentinelError, openSqliteStore, silentLogger, type EventBus, type Logger, type Principal, type RouteContext, type SentinelApi, type Store } from '@sentinel/api-core';
import { healthRoutes } from '../src/routes/health.js';
import { openPostgresStore, redactDatabaseUrl } from '@sentinel/api-core/postgres';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-ready-'));
  dirs.push(dir);
  return dir;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Warning {
  msg: string;
  fields: Record<string, unknown> | undefined;
}

/** A logger that keeps its warnings, to check what `/v1/ready` tells the operator. */
function recordingLogger(warnings: Warning[]): Logger {
  const logger: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (msg, fields) => void warnings.push({ msg, fields }),
    error: () => undefined,
    child: () => logger,
    isLevelEnabled: () => true,
  };
  return logger;
}

function ctx(log: Logger = silentLogger, principal: Principal | null = null): RouteContext {
  return { principal, requestId: 'test', signal: new AbortController().signal, log, origin: { secure: false, host: 'localhost:8080' }, remoteAddress: '127.0.0.1' };
}

/** Calls `GET /v1/ready` of a route table built with `deps`; resolves with the answer or the SentinelError. */
async function ready(deps: Parameters<typeof healthRoutes>[0], log?: Logger): Promise<{ status: number; body: unknown }> {
  const route = healthRoutes(deps).find((r) => r.path === '/v1/ready');
  if (!route) throw new Error('no /v1/ready route');
  try {
    return await invokeRoute(compileRoute(route), { params: {}, query: {} }, ctx(log), () => undefined);
  } catch (err) {
    if (!isSentinelError(err)) throw err;
    return { status: err.code === 'unavailable' ? 503 : 500, body: errorBody(err) };
  }
}

/** A TCP relay in front of the real PostgreSQL whose traffic a test can freeze (a server that stopped answering). */
async function startFreezableRelay(targetUrl: string): Promise<{ url: string; freeze(): void; close(): Promise<void> }> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => void (frozen || upstream.write(chunk)));
    upstream.on('data', (chunk: Buffer) => void (frozen || client.write(chunk)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.toString(),
    freeze: () => {
      frozen = true;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * How often `start` calls the real store class's `migrate`: wrapped on the prototype of `probe`'s
 * class (closed first) for the duration of one start only. The started API is closed after the test.
 */
async function migrateCallsOfOneStart(probe: { close(): Promise<void> }, start: () => Promise<{ close(): Promise<void> }>): Promise<number> {
  const proto = Object.getPrototypeOf(probe) as { migrate: (this: unknown) => Promise<void> };
  await probe.close();
  const original = proto.migrate;
  let calls = 0;
  proto.migrate = function (this: unknown) {
    calls++;
    return original.call(this);
  };
  try {
    const api = await start();
    cleanups.push(() => api.close());
    return calls;
  } finally {
    proto.migrate = original;
  }
}

describe('GET /v1/ready', () => {
  it('is public, and left out when there is no store to check', () => {
    expect(healthRoutes().map((r) => r.path)).toEqual(['/v1/health']);
    const routes = healthRoutes({ store: { ping: async () => undefined } });
    expect(routes.map((r) => [r.method, r.path, r.auth])).toEqual([
      ['GET', '/v1/health', 'public'],
      ['GET', '/v1/ready', 'public'],
    ]);
  });

  it('answers ready with a working store and an in-process bus (bus: none), 503 naming the store once it is closed', async () => {
    const store = await openSqliteStore({ path: join(tempDir(), 'sentinel.db') });
    cleanups.push(() => store.close());
    const bus = createLocalEventBus();
    expect(await ready({ store, bus })).toEqual({ status: 200, body: { status: 'ready', store: 'ok', bus: 'none' } });

    await store.close();
    const warnings: Warning[] = [];
    expect(await ready({ store, bus }, recordingLogger(warnings))).toEqual({
      status: 503,
      body: { error: 'not ready: store is down', code: 'unavailable', docs: '/docs/errors#unavailable', details: { store: 'down', bus: 'none' } },
    });
    // The reason is for the operator's log, not for the public answer.
    expect(warnings).toEqual([{ msg: 'not ready', fields: { store: 'the store is closed' } }]);
  });

  it('pings a bus that can be pinged, and names both when both are down', async () => {
    const store = await openSqliteStore({ path: join(tempDir(), 'sentinel.db') });
    cleanups.push(() => store.close());
    let busUp = true;
    const bus: EventBus = {
      ...createLocalEventBus(),
      ping: async () => {
        if (!busUp) throw new Error('event bus unavailable: connection refused');
      },
    };
    expect(await ready({ store, bus })).toEqual({ status: 200, body: { status: 'ready', store: 'ok', bus: 'ok' } });
    busUp = false;
    expect((await ready({ store, bus })).body).toEqual({ error: 'not ready: bus is down', code: 'unavailable', docs: '/docs/errors#unavailable', details: { store: 'ok', bus: 'down' } });
    await store.close();
    expect((await ready({ store, bus })).body).toEqual({ error: 'not ready: store and bus are down', code: 'unavailable', docs: '/docs/errors#unavailable', details: { store: 'down', bus: 'down' } });
  });

  it('answers 503 within its bound when PostgreSQL stops answering mid-connection, instead of hanging', async () => {
    const relay = await startFreezableRelay(db.url);
    const store: Store = await openPostgresStore({ url: relay.url, schema: 'frozen', statementTimeoutMs: 5000 }).catch(async (err: unknown) => {
      await relay.close();
      throw err;
    });
    // The relay goes first: its sockets closing fail the ping still waiting on it, so the pool ends at once.
    cleanups.push(async () => {
      await relay.close();
      await store.close();
    });
    expect((await ready({ store, readyTimeoutMs: 300 })).status).toBe(200);

    relay.freeze();
    const warnings: Warning[] = [];
    const started = Date.now();
    const answer = await ready({ store, readyTimeoutMs: 300 }, recordingLogger(warnings));
    const elapsed = Date.now() - started;
    expect(answer).toEqual({ status: 503, body: { error: 'not ready: store is down', code: 'unavailable', docs: '/docs/errors#unavailable', details: { store: 'down', bus: 'none' } } });
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1500);
    expect(warnings[0]?.fields).toEqual({ store: 'no answer within 300 ms' });
  });
});

describe('createSentinelApi with storeUrl', () => {
  const origin = { secure: false, host: 'localhost:8080' };
  const apiOptions = (dataDir: string) => ({ dataDir, storeUrl: db.url, tokenSecret: 'ready-test-secret-0123456789', adminUsername: 'root', adminPassword: 'root-password-1' });

  it('starts two instances at once on one fresh PostgreSQL database: what one writes the other serves', async () => {
    const started = await Promise.allSettled([createSentinelApi(apiOptions(tempDir())), createSentinelApi(apiOptions(tempDir()))]);
    for (const outcome of started) if (outcome.status === 'fulfilled') cleanups.push(() => outcome.value.close());
    const [a, b] = started.map((outcome) => {
      if (outcome.status === 'rejected') throw outcome.reason;
      return outcome.value;
    }) as [SentinelApi, SentinelApi];
    expect(redactDatabaseUrl(db.url)).toBe((a.store as unknown as { url: string }).url);

    const readyRoute = a.routes.find((r) => r.path === '/v1/ready');
    if (!readyRoute) throw new Error('no /v1/ready route');
    expect(await a.invoke(readyRoute, { params: {}, query: {} }, ctx())).toEqual({ status: 200, body: { status: 'ready', store: 'ok', bus: 'none' } });

    const root: Principal = { username: 'root', role: 'admin' };
    const created = await a.agents.create(root, { image: 'sentinel/echo:latest', name: 'shared' }, origin);
    expect((await b.agents.list(root, origin)).map((agent) => agent.id)).toContain(created.id);
    // The admin was created once, by whichever started first; the other found it.
    expect(await b.store.countUsers()).toBe(1);
  });

  it('migrates the PostgreSQL schema once per start (one migration transaction, one advisory lock)', async () => {
    const calls = await migrateCallsOfOneStart(await openPostgresStore({ url: db.url }), () => createSentinelApi(apiOptions(tempDir())));
    expect(calls).toBe(1);
  });

  it('migrates SQLite once per start too', async () => {
    const calls = await migrateCallsOfOneStart(await openSqliteStore({ path: join(tempDir(), 'probe.db') }), () =>
      createSentinelApi({ dataDir: tempDir(), tokenSecret: 'ready-test-secret-0123456789', adminPassword: 'root-password-1' }),
    );
    expect(calls).toBe(1);
  });

  it('refuses a URL that is not postgres:// with invalid_request, naming neither host nor password', async () => {
    const err = await createSentinelApi({ ...apiOptions(tempDir()), storeUrl: 'mysql://root:hunter2@localhost/db' }).then(
      () => expect.unreachable('expected a rejection'),
      (e: unknown) => e,
    );
    expect(isSentinelError(err) && err.code).toBe('invalid_request');
    expect((err as Error).message).not.toContain('hunter2');
  });
});
