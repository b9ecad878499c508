import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { isSentinelError, openSqliteStore, type SqliteStore } from '@sentinel/api-core';
import type { LogLevel, NewEventRecord } from '@sentinel/api-core';

const T0 = '2025-01-01T00:00:00.000Z';
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freshStore(): Promise<{ store: SqliteStore; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-group-commit-'));
  const path = join(dir, 'sentinel.db');
  const store = await openSqliteStore({ path });
  cleanups.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, path };
}

function event(agentId: string, n: number): NewEventRecord {
  return { agent_id: agentId, event_type: 'message_processed', timestamp: T0, content: `event ${n}`, data: { n } };
}

/** Frames written to the WAL since the last TRUNCATE checkpoint (each commit writes at least one). */
function walFrames(path: string): number {
  const raw = new Database(path);
  try {
    const [result] = raw.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
    return result?.log ?? 0;
  } finally {
    raw.close();
  }
}

function truncateWal(path: string): void {
  const raw = new Database(path);
  try {
    raw.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    raw.close();
  }
}

async function seedAgent(store: SqliteStore, id: string): Promise<void> {
  await store.createUser({ username: 'alice', password_hash: 'x', role: 'user', can_push: false, created_at: T0, updated_at: T0 });
  const config = JSON.stringify({ name: 'base', model: { provider: 'echo', name: 'echo', parameters: {} } });
  const manifest = JSON.stringify({ schemaVersion: 2, config });
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  await store.putImage({ digest, manifest, config, config_digest: digest, size: manifest.length, created_at: T0 }, ['base:latest']);
  await store.createAgent({
    id,
    name: id,
    owner: 'alice',
    image: 'base:latest',
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
}

describe('SqliteStore group commit', () => {
  it('commits concurrent appends of many agents together, each with consecutive seqs', async () => {
    const { store, path } = await freshStore();
    truncateWal(path);
    const agents = Array.from({ length: 20 }, (_, i) => `agent-${i}`);
    const appends = agents.flatMap((agentId) => Array.from({ length: 10 }, (_, n) => store.appendEvents(agentId, [event(agentId, n)])));
    const results = await Promise.all(appends);

    // 200 commits would write at least 200 WAL frames; one group commit writes a handful of pages.
    expect(walFrames(path)).toBeLessThan(40);
    for (const agentId of agents) {
      const seqs = results.flat().filter((e) => e.agent_id === agentId).map((e) => e.seq);
      expect(seqs).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
      const stored = await store.listEvents(agentId, 0);
      expect(stored.map((e) => e.content)).toEqual(Array.from({ length: 10 }, (_, n) => `event ${n}`));
    }
  });

  it('rolls back only the append that failed; its neighbours in the same commit are stored', async () => {
    const { store } = await freshStore();
    const line = (level: string, message: string) => ({ agent_id: 'a', timestamp: T0, level: level as LogLevel, message });
    const before = store.appendLogs('a', [line('info', 'before')]);
    // The second line breaks the level CHECK constraint: the whole call must leave nothing behind.
    const broken = store.appendLogs('a', [line('info', 'half'), line('loud', 'bad level')]);
    // One row: no savepoint of its own, SQLite's statement rollback is enough.
    const brokenSingle = store.appendLogs('a', [line('loud', 'bad level alone')]);
    const after = store.appendLogs('a', [line('warn', 'after')]);

    for (const failing of [broken, brokenSingle]) {
      const err: unknown = await failing.then(
        () => expect.unreachable('the broken append resolved'),
        (e: unknown) => e,
      );
      expect(isSentinelError(err) && err.code).toBe('invalid_request');
    }
    expect((await before).map((l) => l.seq)).toEqual([1]);
    expect((await after).map((l) => l.seq)).toEqual([2]);
    expect((await store.listLogs('a')).map((l) => l.message)).toEqual(['before', 'after']);
  });

  it('acknowledges an append only once it is committed and visible to another connection', async () => {
    const { store, path } = await freshStore();
    const [stored] = await store.appendEvents('seen', [event('seen', 1)]);
    const raw = new Database(path, { readonly: true });
    try {
      const row = raw.prepare('SELECT content FROM agent_events WHERE agent_id = ? AND seq = ?').get('seen', stored?.seq) as { content: string } | undefined;
      expect(row?.content).toBe('event 1');
    } finally {
      raw.close();
    }
  });

  it('keeps call order: a later delete commits the appends queued before it first', async () => {
    const { store } = await freshStore();
    await seedAgent(store, 'doomed');
    const append = store.appendEvents('doomed', [event('doomed', 1)]);
    const deleted = store.deleteAgent('doomed');
    // Queued before the delete, so written before it and removed by its trigger with the agent.
    expect((await append).map((e) => e.seq)).toEqual([1]);
    expect(await deleted).toBe(true);
    expect(await store.listEvents('doomed', 0)).toEqual([]);
  });

  it('commits what is queued when the store closes', async () => {
    const { store, path } = await freshStore();
    const pending = store.appendEvents('late', [event('late', 1), event('late', 2)]);
    await store.close();
    expect((await pending).map((e) => e.seq)).toEqual([1, 2]);
    const reopened = await openSqliteStore({ path });
    try {
      expect((await reopened.listEvents('late', 0)).map((e) => e.seq)).toEqual([1, 2]);
    } finally {
      await reopened.close();
    }
  });
});
