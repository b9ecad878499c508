import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { isSentinelError, openSqliteStore } from '@sentinel/api-core';
import { sqliteMigrations } from '../src/store/sqlite/migrations.js';
import { SqliteStore } from '../src/store/sqlite/store.js';
import type { EventRecord } from '@sentinel/api-core';
import { describeStoreConformance } from './store-conformance.js';

const tempDirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-sqlite-'));
  tempDirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describeStoreConformance('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-sqlite-conf-'));
  const store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

/** Resolves with the rejection of `promise` (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('expected a rejection'),
    (err: unknown) => err,
  );
}

const T0 = '2025-01-01T00:00:00.000Z';

describe('SqliteStore specifics', () => {
  it('declares migrations with strictly increasing versions from 1', () => {
    // Gaps are allowed (versions are assigned to parallel branches); order is not negotiable.
    expect(sqliteMigrations[0]?.version).toBe(1);
    for (let i = 1; i < sqliteMigrations.length; i++) expect(sqliteMigrations[i]?.version).toBeGreaterThan(sqliteMigrations[i - 1]?.version ?? 0);
    expect(sqliteMigrations.every((m) => m.name.length > 0 && m.sql.trim().length > 0)).toBe(true);
  });

  it('runs in WAL mode, records its migrations, and creates an owner-only file', async () => {
    const path = join(tempDir(), 'sentinel.db');
    const store = await openSqliteStore({ path });
    expect(store.path).toBe(path);
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      const rows = raw.prepare('SELECT version, name, applied_at FROM schema_migrations ORDER BY version').all() as { version: number; name: string; applied_at: string }[];
      expect(rows.map((r) => [r.version, r.name])).toEqual(sqliteMigrations.map((m) => [m.version, m.name]));
      expect(Number.isNaN(Date.parse(rows[0]?.applied_at ?? ''))).toBe(false);
    } finally {
      raw.close();
    }
    if (process.platform !== 'win32') expect(statSync(path).mode & 0o777).toBe(0o600);
    await store.close();
  });

  it('keeps everything across close and reopen, and continues the sequences', async () => {
    const path = join(tempDir(), 'sentinel.db');
    const first = await openSqliteStore({ path });
    await first.createUser({ username: 'alice', password_hash: 'scrypt$x', role: 'admin', can_push: true, created_at: T0, updated_at: T0 });
    const image = { digest: `sha256:${'ab'.repeat(32)}`, manifest: '{"schemaVersion":2}', config: '{"name":"x"}', config_digest: `sha256:${'cd'.repeat(32)}`, size: 12, created_at: T0 };
    await first.putImage(image, ['x:latest']);
    const agent = { id: 'a1', name: 'one', owner: 'alice', image: 'x:latest', image_id: image.digest, status: 'running' as const, model: 'echo/echo', parameters: { t: 0.5 }, environment: { K: 'v' }, usage_requests: 3, usage_tokens: 40, created_at: T0, updated_at: T0 };
    await first.createAgent(agent);
    await first.appendLogs('a1', [{ agent_id: 'a1', timestamp: T0, level: 'warn', message: 'careful', fields: { n: 1 } }]);
    await first.appendEvents('a1', [{ agent_id: 'a1', event_type: 'agent_status', timestamp: T0, content: 'running', data: { status: 'running' } }]);
    await first.setMeta('instance', 'one');
    await first.close();

    const second = await openSqliteStore({ path });
    try {
      expect(await second.getUser('alice')).toEqual({ id: expect.stringMatching(/^[0-9a-f]{32}$/), username: 'alice', password_hash: 'scrypt$x', role: 'admin', can_push: true, token_version: 0, disabled: false, quota_tokens_per_day: null, quota_turns_per_day: null, quota_concurrent_agents: null, created_at: T0, updated_at: T0 });
      expect(await second.getImage(image.digest)).toEqual({ ...image, tags: ['x:latest'] });
      expect(await second.getAgent('a1')).toEqual(agent);
      expect(await second.listLogs('a1')).toEqual([{ agent_id: 'a1', seq: 1, timestamp: T0, level: 'warn', message: 'careful', fields: { n: 1 } }]);
      expect((await second.listEvents('a1', 0)).map((e) => e.content)).toEqual(['running']);
      expect(await second.getMeta('instance')).toBe('one');
      const [next] = await second.appendEvents('a1', [{ agent_id: 'a1', event_type: 'agent_status', timestamp: T0, content: 'stopped', data: {} }]);
      expect(next?.seq).toBe(2);
    } finally {
      await second.close();
    }
  });

  it('keeps runs and their journal across close and reopen: the key still holds and frames continue', async () => {
    const path = join(tempDir(), 'sentinel.db');
    const first = await openSqliteStore({ path });
    await first.createUser({ username: 'alice', password_hash: 'scrypt$x', role: 'user', can_push: false, created_at: T0, updated_at: T0 });
    const image = { digest: `sha256:${'ab'.repeat(32)}`, manifest: '{"schemaVersion":2}', config: '{"name":"x"}', config_digest: `sha256:${'cd'.repeat(32)}`, size: 12, created_at: T0 };
    await first.putImage(image, ['x:latest']);
    await first.createAgent({ id: 'a1', name: 'one', owner: 'alice', image: 'x:latest', image_id: image.digest, status: 'running', model: 'echo/echo', parameters: {}, environment: {}, usage_requests: 0, usage_tokens: 0, created_at: T0, updated_at: T0 });
    const options = { idempotencyWindowMs: 86_400_000, nowMs: Date.parse(T0) };
    const created = await first.createRun(
      { id: 'run_1', agent_id: 'a1', owner: 'alice', message_id: 'm1', status: 'queued', input: { content: 'hi' }, usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 }, webhook: null, idempotency_key: 'm1', request_hash: 'h', instance_id: 'i-1', created_at: T0 },
      options,
    );
    expect(created.created).toBe(true);
    await first.updateRun('run_1', { status: 'running', started_at: T0 }, { fromStatus: ['queued'] });
    await first.appendRunFrames('run_1', [{ seq: 1, json: '{"type":"stream_start"}' }, { seq: 2, json: '{"type":"stream_chunk"}' }]);
    // close() commits what the group commit still holds.
    const pending = first.appendRunFrames('run_1', [{ seq: 3, json: '{"type":"stream_end"}' }]);
    await first.close();
    await pending;

    const second = await openSqliteStore({ path });
    try {
      const run = await second.getRun('run_1');
      expect(run).toMatchObject({ status: 'running', started_at: T0, last_seq: 3 });
      expect((await second.listRunFrames('run_1', 0)).map((f) => f.json)).toEqual(['{"type":"stream_start"}', '{"type":"stream_chunk"}', '{"type":"stream_end"}']);
      const again = await second.createRun(
        { id: 'run_2', agent_id: 'a1', owner: 'alice', message_id: 'm1', status: 'queued', input: { content: 'hi' }, usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 }, webhook: null, idempotency_key: 'm1', request_hash: 'h', instance_id: 'i-2', created_at: T0 },
        options,
      );
      expect(again).toEqual({ created: false, run, requestHash: 'h' });
      expect((await second.findRuns({ status: ['running'], instanceId: 'i-1' })).map((r) => r.id)).toEqual(['run_1']);
    } finally {
      await second.close();
    }
  });

  it('gives one run for one idempotency key created through two connections to one file (two processes)', async () => {
    const path = join(tempDir(), 'sentinel.db');
    const [a, b] = [await openSqliteStore({ path }), await openSqliteStore({ path })];
    try {
      await a.createUser({ username: 'alice', password_hash: 'scrypt$x', role: 'user', can_push: false, created_at: T0, updated_at: T0 });
      const image = { digest: `sha256:${'ab'.repeat(32)}`, manifest: '{"schemaVersion":2}', config: '{"name":"x"}', config_digest: `sha256:${'cd'.repeat(32)}`, size: 12, created_at: T0 };
      await a.putImage(image, ['x:latest']);
      await a.createAgent({ id: 'a1', name: 'one', owner: 'alice', image: 'x:latest', image_id: image.digest, status: 'running', model: 'echo/echo', parameters: {}, environment: {}, usage_requests: 0, usage_tokens: 0, created_at: T0, updated_at: T0 });
      const options = { idempotencyWindowMs: 86_400_000, nowMs: Date.parse(T0) };
      const newRun = (i: number) => ({
        id: `run_${i}`, agent_id: 'a1', owner: 'alice', message_id: 'm', status: 'queued' as const, input: { content: 'hi' },
        usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 }, webhook: null, idempotency_key: 'm', request_hash: null, instance_id: null, created_at: T0,
      });
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).createRun(newRun(i), options)));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.run.id)).size).toBe(1);
      const id = results[0]?.run.id ?? '';
      const transitions = await Promise.all([a, b].map((store) => store.updateRun(id, { status: 'running' }, { fromStatus: ['queued'] })));
      expect(transitions.filter((r) => r !== null)).toHaveLength(1);
      expect((await b.listRuns('a1', { limit: 10 })).map((r) => r.status)).toEqual(['running']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('upgrades a version-2 database: existing repositories go to their namespace user, else to sentinel', async () => {
    const path = join(tempDir(), 'sentinel.db');
    const raw = new Database(path);
    raw.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL);');
    for (const migration of sqliteMigrations.filter((m) => m.version <= 2)) {
      raw.exec(migration.sql);
      raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(migration.version, migration.name, T0);
    }
    raw.prepare("INSERT INTO users VALUES ('alice', 'scrypt$x', 'user', 0, ?, ?)").run(T0, T0);
    raw.prepare("INSERT INTO images VALUES ('sha256:aa', '{}', '{}', 'sha256:bb', 2, ?)").run(T0);
    for (const tag of ['alice/tool:v1', 'alice/tool:v2', 'demo/helper:v1', 'sentinel/echo:latest', 'plain:latest', 'ghost/thing:1']) {
      raw.prepare('INSERT INTO image_tags VALUES (?, ?)').run(tag, 'sha256:aa');
    }
    raw.close();

    const store = await openSqliteStore({ path });
    try {
      const repositories = await store.listRepositories();
      expect(repositories.map((r) => [r.name, r.owner, r.visibility])).toEqual([
        ['alice/tool', 'alice', 'public'],
        ['demo/helper', 'sentinel', 'public'],
        ['ghost/thing', 'sentinel', 'public'],
        ['plain', 'sentinel', 'public'],
        ['sentinel/echo', 'sentinel', 'public'],
      ]);
      for (const r of repositories) expect(r.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    } finally {
      await store.close();
    }
  });

  it('upgrades a version-1 database in place: data kept, messages and marks deleted with the agent', async () => {
    const path = join(tempDir(), 'sentinel.db');
    const v1 = sqliteMigrations.find((m) => m.version === 1);
    if (!v1) throw new Error('migration 1 is missing');
    const raw = new Database(path);
    raw.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL);${v1.sql}`);
    raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, ?, ?)').run(v1.name, T0);
    raw.prepare("INSERT INTO users VALUES ('alice', 'scrypt$x', 'user', 0, ?, ?)").run(T0, T0);
    raw.prepare("INSERT INTO images VALUES ('sha256:aa', '{}', '{}', 'sha256:bb', 2, ?)").run(T0);
    raw.prepare("INSERT INTO agents (id, name, owner, image, image_id, status, model, created_at, updated_at) VALUES ('a1', 'one', 'alice', 'x:1', 'sha256:aa', 'running', 'echo/echo', ?, ?)").run(T0, T0);
    raw.prepare("INSERT INTO agent_events VALUES ('a1', 1, 'agent_status', ?, 'old', '{}')").run(T0);
    raw.close();

    const store = await openSqliteStore({ path });
    try {
      expect((await store.listEvents('a1', 0)).map((e) => e.content)).toEqual(['old']);
      // Migration 4: an existing user gets an id of its own and token version 0.
      expect(await store.getUser('alice')).toMatchObject({ id: expect.stringMatching(/^[0-9a-f]{32}$/), username: 'alice', token_version: 0 });
      await store.appendMessages('a1', [{ agent_id: 'a1', role: 'user', content: 'hi', created_at: T0 }]);
      await store.appendEvents('a1', [{ agent_id: 'a1', event_type: 'agent_status', timestamp: T0, content: 'new', data: {} }]);
      expect(await store.pruneEvents('a1', 0)).toBe(2);
      expect(await store.deleteAgent('a1')).toBe(true);
    } finally {
      await store.close();
    }
    const check = new Database(path, { readonly: true });
    try {
      const versions = check.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
      expect(versions).toEqual(sqliteMigrations.map((m) => m.version));
      for (const table of ['agent_messages', 'agent_event_marks', 'agent_events', 'agent_logs']) {
        expect(check.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get(), table).toBe(0);
      }
    } finally {
      check.close();
    }
  });

  it('rejects a file that is not a database with one clear unavailable error', async () => {
    const path = join(tempDir(), 'notes.txt');
    writeFileSync(path, 'this is a text file, not a database\n'.repeat(100));
    const err = await rejection(openSqliteStore({ path }));
    expect(isSentinelError(err) && err.code).toBe('unavailable');
    expect((err as Error).message).toBe(`cannot open database ${path}: the file is not a SQLite database`);
  });

  it('rejects a path in a missing directory with unavailable', async () => {
    const path = join(tempDir(), 'no', 'such', 'dir', 'sentinel.db');
    const err = await rejection(openSqliteStore({ path }));
    expect(isSentinelError(err) && err.code).toBe('unavailable');
    expect((err as Error).message).toBe(`cannot open database ${path}: the directory does not exist`);
  });

  it('refuses a database whose schema is newer than the code', async () => {
    const path = join(tempDir(), 'sentinel.db');
    await (await openSqliteStore({ path })).close();
    const raw = new Database(path);
    raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, ?)').run('from the future', T0);
    raw.close();
    const err = await rejection(openSqliteStore({ path }));
    expect(isSentinelError(err) && err.code).toBe('unavailable');
    expect((err as Error).message).toContain(`cannot open database ${path}: database schema version 999 is newer than this server supports`);
  });

  it('closes idempotently; later calls reject unavailable', async () => {
    const store = await openSqliteStore({ path: join(tempDir(), 'sentinel.db') });
    await store.close();
    await store.close();
    const err = await rejection(store.getUser('alice'));
    expect(isSentinelError(err) && err.code).toBe('unavailable');
    await expect(store.migrate()).rejects.toThrow('closed');
  });

  it('refuses queries before migrate() with unavailable, then works after it', async () => {
    const store = new SqliteStore({ path: join(tempDir(), 'sentinel.db') });
    try {
      const err = await rejection(store.countUsers());
      expect(isSentinelError(err) && err.code).toBe('unavailable');
      await store.migrate();
      expect(await store.countUsers()).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('rejects malformed queries with invalid_request instead of guessing', async () => {
    const store = await openSqliteStore({ path: join(tempDir(), 'sentinel.db') });
    try {
      for (const promise of [store.listLogs('a', { since: 'yesterday' }), store.listLogs('a', { tail: -1 }), store.listEvents('a', 0, 1.5)]) {
        const err = await rejection(promise);
        expect(isSentinelError(err) && err.code).toBe('invalid_request');
      }
    } finally {
      await store.close();
    }
  });

  it('loses no acknowledged event when the writing process is killed with SIGKILL', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(existsSync(dist), `${dist} is missing: run \`pnpm build\` first (the child process needs the built core)`).toBe(true);
    const fixture = fileURLToPath(new URL('./fixtures/append-events-until-killed.mjs', import.meta.url));
    const path = join(tempDir(), 'sentinel.db');
    await (await openSqliteStore({ path })).close();

    const child = spawn(process.execPath, [fixture, path, 'durable'], { stdio: ['ignore', 'pipe', 'pipe'] });
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

    // Only complete lines were acknowledged; every one of them must be on disk.
    const acked = stdout.split('\n').slice(0, -1).map(Number);
    expect(acked.length).toBeGreaterThanOrEqual(200);
    const store = await openSqliteStore({ path });
    try {
      const stored: EventRecord[] = [];
      for (let page = await store.listEvents('durable', 0); page.length > 0; page = await store.listEvents('durable', page.at(-1)?.seq ?? 0)) stored.push(...page);
      const storedSeqs = stored.map((e) => e.seq);
      expect(storedSeqs).toEqual(storedSeqs.map((_, i) => i + 1));
      expect(storedSeqs.length).toBeGreaterThanOrEqual(Math.max(...acked));
      // Each call wrote two events in one transaction: the kill must never leave half a batch.
      expect(storedSeqs.length % 2).toBe(0);
      const present = new Set(storedSeqs);
      expect(acked.filter((seq) => !present.has(seq))).toEqual([]);
    } finally {
      await store.close();
    }
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      raw.close();
    }
  });
});
