import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import type { AgentRecord, EventRecord, Logger, NewEventRecord, Store } from '@sentinel/api-core';
import { POSTGRES_MIGRATIONS_TABLE_SQL, isPostgresUrl, openPostgresStore, postgresMigrations, redactDatabaseUrl, type PostgresStore, type PostgresStoreOptions } from '@sentinel/api-core/postgres';
import { describeStoreConformance } from './store-conformance.js';
import { createTestDatabase, queryDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

let db: TestDatabase;
let schemaCounter = 0;
/** A schema name no other store of this file used: fresh tables, migrated from nothing. */
function freshSchema(): string {
  return `s${++schemaCounter}`;
}

/**
 * The schema most tests share. Migrating a fresh schema costs a few hundred ms of DDL on a busy
 * machine; emptying one is about a millisecond, and gives the test the same empty tables.
 */
const SHARED_SCHEMA = 'shared';
const EMPTY_SHARED_SCHEMA_SQL = ['agents', 'agent_logs', 'agent_events', 'agent_messages', 'agent_sequences', 'image_tags', 'images', 'repositories', 'users', 'meta', 'audit_log', 'run_frames', 'runs']
  .map((table) => `DELETE FROM ${SHARED_SCHEMA}.${table};`)
  .join(' ');

/** Opens a store on the shared schema (migrating it the first time) and empties its tables. */
async function openEmptyStore(options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  const store = await openPostgresStore({ url: db.url, schema: SHARED_SCHEMA, ...options });
  await cleaner.query(`BEGIN; ${EMPTY_SHARED_SCHEMA_SQL} COMMIT;`);
  return store;
}

const opened: Store[] = [];
/** Opens a store (default: the emptied shared schema) and closes it after the test. */
async function openStore(options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  const store = options.schema === undefined ? await openEmptyStore(options) : await openPostgresStore({ url: db.url, ...options });
  opened.push(store);
  return store;
}

/** One connection, kept for the whole file, that empties the shared schema between tests. */
let cleaner: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  cleaner = new pg.Client({ connectionString: db.url });
  cleaner.on('error', () => undefined);
  await cleaner.connect();
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((store) => store.close()));
});

afterAll(async () => {
  await cleaner?.end().catch(() => undefined);
  await db?.drop();
});

describeStoreConformance('postgres', async () => {
  const store = await openEmptyStore();
  return { store, cleanup: () => store.close() };
});

const T0 = '2025-01-01T00:00:00.000Z';

/** Resolves with the rejection of `promise` (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('expected a rejection'),
    (err: unknown) => err,
  );
}

function expectCode(err: unknown, code: string): void {
  expect(isSentinelError(err), `expected a SentinelError ${code}, got ${String(err)}`).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

/** A user, an image and an agent `a1`: what appends need to exist. */
async function seed(store: Store): Promise<AgentRecord> {
  await store.createUser({ username: 'alice', password_hash: 'scrypt$x', role: 'user', can_push: false, created_at: T0, updated_at: T0 });
  const image = { digest: `sha256:${'ab'.repeat(32)}`, manifest: '{"schemaVersion":2}', config: '{"name":"x"}', config_digest: `sha256:${'cd'.repeat(32)}`, size: 12, created_at: T0 };
  await store.putImage(image, ['x:latest']);
  const agent: AgentRecord = { id: 'a1', name: 'one', owner: 'alice', image: 'x:latest', image_id: image.digest, status: 'running', model: 'echo/echo', parameters: {}, environment: {}, usage_requests: 0, usage_tokens: 0, created_at: T0, updated_at: T0 };
  await store.createAgent(agent);
  return agent;
}

function event(n: number): NewEventRecord {
  return { agent_id: 'a1', event_type: 'message_processed', timestamp: T0, content: `event ${n}`, data: { n } };
}

/**
 * A TCP relay in front of the real server that a test can cut and restore: "PostgreSQL went
 * away" and "it came back" on a real socket, without touching the shared server.
 */
interface Relay {
  readonly port: number;
  /** Stops listening and resets every relayed connection. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

async function startRelay(target: { host: string; port: number }): Promise<Relay> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async () => {
    const next = createServer((client) => {
      const upstream = connect(target.port, target.host);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    next.listen(port, '127.0.0.1');
    await once(next, 'listening');
    port = (next.address() as AddressInfo).port;
    server = next;
  };
  const cut = async () => {
    const current = server;
    server = undefined;
    for (const socket of sockets) socket.resetAndDestroy();
    if (current) await new Promise<void>((resolve) => current.close(() => resolve()));
  };
  await listen();
  return {
    get port() {
      return port;
    },
    cut,
    restore: listen,
    close: cut,
  };
}

function relayedUrl(relay: Relay): string {
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(relay.port);
  return url.toString();
}

function targetOf(url: string): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || 5432) };
}

describe('PostgresStore specifics', () => {
  it('declares migrations with strictly increasing versions from 1, the same as the SQLite ones but for the PostgreSQL-only ones', async () => {
    const { sqliteMigrations } = await import('../src/store/sqlite/migrations.js');
    const versions = postgresMigrations.map((m) => m.version);
    expect(versions[0]).toBe(1);
    // Gaps are allowed (parallel work takes numbers ahead); order and uniqueness are not optional.
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBeGreaterThan(versions[i - 1] as number);
    // 5: the embedded registry in the database (SQLite keeps it in the data directory).
    const postgresOnly = new Set([5]);
    expect(postgresMigrations.filter((m) => !postgresOnly.has(m.version)).map((m) => [m.version, m.name])).toEqual(sqliteMigrations.map((m) => [m.version, m.name]));
  });

  it('upgrades users of an older schema in place: each gets an id of its own and token version 0', async () => {
    const schema = freshSchema();
    const older = postgresMigrations.filter((m) => m.version < 4);
    const setup = [`CREATE SCHEMA ${schema}`, `SET search_path TO ${schema}`, POSTGRES_MIGRATIONS_TABLE_SQL, ...older.map((m) => m.sql)];
    for (const m of older) setup.push(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (${m.version}, '${m.name}', '${T0}')`);
    setup.push(`INSERT INTO users (username, password_hash, role, can_push, created_at, updated_at) VALUES ('alice', 'x', 'user', false, '${T0}', '${T0}'), ('bob', 'x', 'admin', true, '${T0}', '${T0}')`);
    await queryDatabase(db.url, setup.join(';\n'));
    const store = await openStore({ schema });
    const [alice, bob] = [await store.getUser('alice'), await store.getUser('bob')];
    expect(alice).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{32}$/), username: 'alice', token_version: 0 });
    expect(bob).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{32}$/), username: 'bob', role: 'admin', token_version: 0 });
    expect(bob?.id).not.toBe(alice?.id);
  });

  it('migrates safely when three instances start at once on a fresh schema: each version applied once', async () => {
    const schema = freshSchema();
    const stores = await Promise.all([1, 2, 3].map(() => openStore({ schema })));
    const rows = await queryDatabase<{ version: number; name: string }>(db.url, `SELECT version, name FROM ${schema}.schema_migrations ORDER BY version`);
    expect(rows.map((r) => [r.version, r.name])).toEqual(postgresMigrations.map((m) => [m.version, m.name]));
    // All three work on the same tables.
    await stores[0]?.setMeta('k', 'v');
    expect(await stores[2]?.getMeta('k')).toBe('v');
    await Promise.all(stores.map((store) => store.migrate()));
    expect(await queryDatabase(db.url, `SELECT version FROM ${schema}.schema_migrations`)).toHaveLength(postgresMigrations.length);
  });

  it('gives three stores (three instances) appending to one agent at once consecutive, gap-free seq numbers', async () => {
    const first = await openStore({ poolSize: 4 });
    const stores = [first, await openStore({ schema: SHARED_SCHEMA, poolSize: 4 }), await openStore({ schema: SHARED_SCHEMA, poolSize: 4 })];
    await seed(first);
    const batches = await Promise.all(
      Array.from({ length: 30 }, (_, i) => (stores[i % 3] as PostgresStore).appendEvents('a1', [event(i * 2), event(i * 2 + 1)])),
    );
    for (const batch of batches) expect(batch[1]?.seq).toBe((batch[0]?.seq ?? 0) + 1);
    const seqs = batches.flat().map((e) => e.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    // What each append returned is exactly what is stored, whoever reads it.
    const stored: EventRecord[] = await (stores[1] as PostgresStore).listEvents('a1', 0);
    expect(stored).toEqual([...batches.flat()].sort((a, b) => a.seq - b.seq));

    const logs = await Promise.all(stores.map((store, i) => store.appendLogs('a1', [{ agent_id: 'a1', timestamp: T0, level: 'info', message: `from ${i}` }])));
    expect(logs.flat().map((l) => l.seq).sort()).toEqual([1, 2, 3]);
  });

  it('creates one run for one idempotency key from three instances at once, and lets one of their transitions win', async () => {
    const first = await openStore({ poolSize: 4 });
    const stores = [first, await openStore({ schema: SHARED_SCHEMA, poolSize: 4 }), await openStore({ schema: SHARED_SCHEMA, poolSize: 4 })];
    await seed(first);
    const options = { idempotencyWindowMs: 86_400_000, nowMs: Date.parse(T0) };
    const newRun = (i: number) => ({
      id: `run_${i}`, agent_id: 'a1', owner: 'alice', message_id: 'm', status: 'queued' as const, input: { content: 'hi' },
      usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 }, webhook: null, idempotency_key: 'm', request_hash: `h${i}`, instance_id: `i-${i % 3}`, created_at: T0,
    });
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (stores[i % 3] as PostgresStore).createRun(newRun(i), options)));
    const created = results.filter((r) => r.created);
    expect(created).toHaveLength(1);
    const id = created[0]?.run.id ?? '';
    for (const result of results) expect(result.run.id).toBe(id);
    expect(await queryDatabase(db.url, `SELECT id FROM ${SHARED_SCHEMA}.runs`)).toEqual([{ id }]);

    const transitions = await Promise.all(stores.map((store, i) => store.updateRun(id, { status: 'running', instance_id: `i-${i}` }, { fromStatus: ['queued'] })));
    expect(transitions.filter((r) => r !== null)).toHaveLength(1);
  });

  it('journals frames from one instance while another deletes the agent: no append fails and no frame outlives its run', async () => {
    const [a, b] = [await openStore({ poolSize: 4 }), await openStore({ schema: SHARED_SCHEMA, poolSize: 4 })];
    await seed(a);
    const options = { idempotencyWindowMs: 86_400_000, nowMs: Date.parse(T0) };
    await a.createRun({ id: 'run_1', agent_id: 'a1', owner: 'alice', message_id: 'm', status: 'running', input: { content: 'hi' }, usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 }, webhook: null, idempotency_key: null, request_hash: null, instance_id: null, created_at: T0 }, options);
    const appends = Array.from({ length: 40 }, (_, i) => a.appendRunFrames('run_1', [{ seq: i * 2 + 1, json: '{}' }, { seq: i * 2 + 2, json: '{}' }]));
    const deleted = b.deleteAgent('a1');
    await Promise.all(appends);
    expect(await deleted).toBe(true);
    expect(await queryDatabase(db.url, `SELECT count(*)::int AS n FROM ${SHARED_SCHEMA}.run_frames`)).toEqual([{ n: 0 }]);
    expect(await a.getRun('run_1')).toBeNull();
  });

  it('numbers audit entries of three instances in commit order: a reader paging by since meanwhile misses none', async () => {
    const stores = [await openStore({ poolSize: 4 }), await openStore({ schema: SHARED_SCHEMA, poolSize: 4 }), await openStore({ schema: SHARED_SCHEMA, poolSize: 4 })];
    const reader = stores[0] as PostgresStore;
    const entry = (n: number) => ({ at: T0, actor: 'admin', action: 'auth.login', target: `user:u${n}`, address: null, request_id: `r${n}` });
    let writing = true;
    const seen: number[] = [];
    // Follows the log the way a client of GET /v1/audit?since= does, while the writers run.
    const following = (async () => {
      let since = 0;
      for (;;) {
        const done = !writing;
        const page = await reader.listAudit({ since, limit: 7 });
        seen.push(...page.map((e) => e.seq));
        since = page.at(-1)?.seq ?? since;
        if (done && page.length === 0) return;
      }
    })();
    const written = await Promise.all(Array.from({ length: 60 }, (_, i) => (stores[i % 3] as PostgresStore).appendAudit([entry(i * 2), entry(i * 2 + 1)])));
    writing = false;
    await following;
    const all = written.flat().map((e) => e.seq).sort((a, b) => a - b);
    expect(new Set(all).size).toBe(120);
    expect(seen).toEqual(all);
  });

  it('keeps everything across close and reopen, and another instance sees it at once', async () => {
    const a = await openStore();
    const b = await openStore({ schema: SHARED_SCHEMA });
    const agent = await seed(a);
    expect(await b.getAgent('a1')).toEqual(agent);
    await a.appendEvents('a1', [event(1)]);
    await a.close();
    const reopened = await openStore({ schema: SHARED_SCHEMA });
    expect((await reopened.listEvents('a1', 0)).map((e) => e.seq)).toEqual([1]);
    expect((await reopened.appendEvents('a1', [event(2)])).map((e) => e.seq)).toEqual([2]);
    expect(await b.firstEventSeq('a1')).toBe(1);
  });

  it('refuses a database whose schema is newer than the code, naming the URL without its password', async () => {
    const schema = freshSchema();
    await openStore({ schema });
    await queryDatabase(db.url, `INSERT INTO ${schema}.schema_migrations (version, name, applied_at) VALUES (999, 'from the future', $1)`, [T0]);
    const err = await rejection(openPostgresStore({ url: db.url, schema }));
    expectCode(err, 'unavailable');
    expect((err as Error).message).toBe(
      `cannot open database ${redactDatabaseUrl(db.url)}: database schema version 999 is newer than this server supports (${postgresMigrations.at(-1)?.version}); upgrade SentinelStacks or use another database`,
    );
  });

  it('masks passwords in URLs it shows, and recognises only postgres URLs', () => {
    expect(redactDatabaseUrl('postgres://bob:s3cr%40t@db.example:5432/app?sslmode=require')).toBe('postgres://bob:***@db.example:5432/app?sslmode=require');
    expect(redactDatabaseUrl('postgresql://bob@db/app?password=hunter2&application_name=x')).toBe('postgresql://bob@db/app?password=***&application_name=x');
    expect(redactDatabaseUrl('postgres://db/app')).toBe('postgres://db/app');
    // Not parseable as a URL: still masked between // and @.
    expect(redactDatabaseUrl('postgres://bob:hunter2@[not-an-address/app')).toBe('postgres://***@[not-an-address/app');
    expect(isPostgresUrl('postgres://db/app')).toBe(true);
    expect(isPostgresUrl('postgresql://db/app')).toBe(true);
    expect(isPostgresUrl('redis://db')).toBe(false);
    expect(isPostgresUrl('/var/lib/sentinel.db')).toBe(false);
  });

  it('rejects bad options with invalid_request before connecting', async () => {
    for (const options of [{ url: 'mysql://localhost/x' }, { url: 'not a url' }, { url: db.url, poolSize: 0 }, { url: db.url, schema: 'Robert"; DROP' }, { url: db.url, statementTimeoutMs: 1.5 }]) {
      expectCode(await rejection(openPostgresStore(options)), 'invalid_request');
    }
  });

  it('fails fast with unavailable when nothing listens, and never shows the password', async () => {
    const relay = await startRelay(targetOf(db.url));
    await relay.close();
    const url = `postgres://sentinel:hunter2-secret@127.0.0.1:${relay.port}/nothing`;
    const started = Date.now();
    const err = await rejection(openPostgresStore({ url, connectTimeoutMs: 1000 }));
    expect(Date.now() - started).toBeLessThan(3000);
    expectCode(err, 'unavailable');
    expect((err as Error).message).toBe(`cannot open database postgres://sentinel:***@127.0.0.1:${relay.port}/nothing: connection refused`);
    expect((err as Error).message).not.toContain('hunter2');
  });

  it('gives up on a server that accepts but never answers after connectTimeoutMs, with unavailable', async () => {
    const silent = createServer(() => undefined);
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const { port } = silent.address() as AddressInfo;
      const started = Date.now();
      const err = await rejection(openPostgresStore({ url: `postgres://postgres@127.0.0.1:${port}/x`, connectTimeoutMs: 300 }));
      const elapsed = Date.now() - started;
      expectCode(err, 'unavailable');
      expect((err as Error).message).toMatch(/: connection timed out$/);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
    } finally {
      silent.close();
    }
  });

  it('ends a statement stuck on a lock after statementTimeoutMs with unavailable, and serves the next one', async () => {
    const store = await openStore({ statementTimeoutMs: 300 });
    await seed(store);
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query(`LOCK TABLE ${SHARED_SCHEMA}.agents IN ACCESS EXCLUSIVE MODE`);
      const started = Date.now();
      const err = await rejection(store.getAgent('a1'));
      expect(Date.now() - started).toBeLessThan(2000);
      expectCode(err, 'unavailable');
      expect((err as Error).message).toBe('database unavailable: statement timed out');
      await blocker.query('ROLLBACK');
      expect((await store.getAgent('a1'))?.id).toBe('a1');
    } finally {
      await blocker.end();
    }
  });

  it('answers unavailable while the server is unreachable, then carries on by itself when it is back', async () => {
    const relay = await startRelay(targetOf(db.url));
    const warnings: string[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (msg) => void warnings.push(msg),
      error: () => undefined,
      child: () => logger,
      isLevelEnabled: () => true,
    };
    try {
      const store = await openStore({ url: relayedUrl(relay), connectTimeoutMs: 500, statementTimeoutMs: 1000, logger });
      await seed(store);
      await store.appendEvents('a1', [event(1)]);

      await relay.cut();
      for (const call of [store.ping(), store.getAgent('a1'), store.appendEvents('a1', [event(2)])]) {
        const started = Date.now();
        const err = await rejection(call);
        expect(Date.now() - started).toBeLessThan(2000);
        expectCode(err, 'unavailable');
        expect((err as Error).message).toMatch(/^database unavailable: /);
      }

      await relay.restore();
      await expect(store.ping()).resolves.toBeUndefined();
      const [next] = await store.appendEvents('a1', [event(3)]);
      // The append that failed while the server was away did not happen: numbering continues from 1.
      expect(next?.seq).toBe(2);
      expect((await store.listEvents('a1', 0)).map((e) => e.content)).toEqual(['event 1', 'event 3']);
    } finally {
      await relay.close();
    }
  });

  it('replaces connections the server killed, without crashing the process', async () => {
    const store = await openStore({ poolSize: 3 });
    await seed(store);
    await Promise.all([store.getAgent('a1'), store.getAgent('a1'), store.getAgent('a1')]);
    const killed = await queryDatabase<{ killed: boolean }>(
      db.url,
      "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'sentinel' AND pid <> pg_backend_pid()",
    );
    expect(killed.length).toBeGreaterThan(0);
    // The killed idle connections are dropped from the pool as their sockets close; any call
    // that still raced onto one is refused as unavailable, never left hanging.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const outcomes = await Promise.allSettled([store.getAgent('a1'), store.getAgent('a1'), store.getAgent('a1')]);
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') expectCode(outcome.reason, 'unavailable');
    }
    expect((await store.getAgent('a1'))?.id).toBe('a1');
  });

  it('rejects text PostgreSQL cannot store (a NUL character) with invalid_request, storing nothing', async () => {
    const store = await openStore();
    await seed(store);
    const nul = await rejection(store.appendEvents('a1', [{ ...event(1), content: 'nul \u0000 here' }]));
    expectCode(nul, 'invalid_request');
    // PostgreSQL's own text (`unsupported Unicode escape sequence`, the column) stays out of the message.
    expect((nul as Error).message).toBe('invalid record: the store refused a value');
    expectCode(await rejection(store.appendLogs('a1', [{ agent_id: 'a1', timestamp: T0, level: 'info', message: 'x', fields: { bad: '\u0000' } }])), 'invalid_request');
    expect(await store.listEvents('a1', 0)).toEqual([]);
    expect((await store.appendEvents('a1', [event(1)])).map((e) => e.seq)).toEqual([1]);
  });

  it('loses no acknowledged event when the writing process is killed with SIGKILL', async () => {
    const dist = fileURLToPath(new URL('../dist/postgres/index.js', import.meta.url));
    expect(existsSync(dist), `${dist} is missing: run \`pnpm build\` first (the child process needs the built core)`).toBe(true);
    const fixture = fileURLToPath(new URL('./fixtures/append-events-to-postgres-until-killed.mjs', import.meta.url));
    const store = await openStore();

    const child = spawn(process.execPath, [fixture, db.url, SHARED_SCHEMA, 'durable'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let acknowledged = 0;
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      acknowledged += chunk.split('\n').length - 1;
      if (acknowledged >= 200 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (_code, sig) => resolve(sig));
    });
    expect(signal, `the child did not die by SIGKILL; stderr: ${stderr}`).toBe('SIGKILL');

    // Only complete lines were acknowledged; every one of them must be stored.
    const acked = stdout.split('\n').slice(0, -1).map(Number);
    expect(acked.length).toBeGreaterThanOrEqual(200);
    const stored: EventRecord[] = [];
    for (let page = await store.listEvents('durable', 0); page.length > 0; page = await store.listEvents('durable', page.at(-1)?.seq ?? 0)) stored.push(...page);
    const storedSeqs = stored.map((e) => e.seq);
    // Gap-free although four appends were in flight: an append cut off by the kill took no numbers.
    expect(storedSeqs).toEqual(storedSeqs.map((_, i) => i + 1));
    // Each call wrote two events in one statement: the kill must never leave half a batch.
    expect(storedSeqs.length % 2).toBe(0);
    const present = new Set(storedSeqs);
    expect(acked.filter((seq) => !present.has(seq))).toEqual([]);
    // The next append (another instance taking over) continues the numbering. A COMMIT the child
    // sent just before it died may still land after the read above (the server finishes it), so
    // the check is on the whole log after the append: gap-free, with the new event last.
    const [next] = await store.appendEvents('durable', [event(1)]);
    const after: EventRecord[] = [];
    for (let page = await store.listEvents('durable', 0); page.length > 0; page = await store.listEvents('durable', page.at(-1)?.seq ?? 0)) after.push(...page);
    expect(after.map((e) => e.seq)).toEqual(after.map((_, i) => i + 1));
    expect(next?.seq).toBe(after.length);
    expect(after.length).toBeGreaterThan(storedSeqs.length);
  });

  it('closes idempotently; later calls reject unavailable', async () => {
    const store = await openStore();
    await store.close();
    await store.close();
    expectCode(await rejection(store.getUser('alice')), 'unavailable');
    expect(store.url).toBe(redactDatabaseUrl(db.url));
  });
});
