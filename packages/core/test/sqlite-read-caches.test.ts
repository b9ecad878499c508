import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStore, type SqliteStore } from '@sentinel/api-core';
import type { AgentRecord, NewMessageRecord } from '@sentinel/api-core';

const T0 = '2025-01-01T00:00:00.000Z';
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function storeWithAgents(count: number): Promise<{ store: SqliteStore; path: string; digest: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-read-caches-'));
  const path = join(dir, 'sentinel.db');
  const store = await openSqliteStore({ path });
  cleanups.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.createUser({ username: 'alice', password_hash: 'x', role: 'user', can_push: false, created_at: T0, updated_at: T0 });
  const config = JSON.stringify({ name: 'base', model: { provider: 'echo', name: 'echo', parameters: {} } });
  const manifest = JSON.stringify({ schemaVersion: 2, config });
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  await store.putImage({ digest, manifest, config, config_digest: digest, size: manifest.length, created_at: T0 }, ['base:latest']);
  for (let i = 0; i < count; i++) await store.createAgent(agent(`a${i}`, digest, i));
  return { store, path, digest };
}

function agent(id: string, digest: string, second: number): AgentRecord {
  const at = new Date(Date.parse(T0) + second * 1000).toISOString();
  return {
    id,
    name: id,
    owner: 'alice',
    image: 'base:latest',
    image_id: digest,
    status: 'running',
    model: 'echo/echo',
    parameters: { temperature: 0.5, nested: { top_p: 1 } },
    environment: { KEY: 'v' },
    usage_requests: 0,
    usage_tokens: 0,
    created_at: at,
    updated_at: at,
  };
}

describe('SqliteStore agent lists (cached between writes)', () => {
  it('reflects every write of its own at once: create, status, usage, delete', async () => {
    const { store, digest } = await storeWithAgents(2);
    expect((await store.listAgents({ owner: 'alice' })).map((a) => a.id)).toEqual(['a1', 'a0']);

    await store.createAgent(agent('a2', digest, 2));
    expect((await store.listAgents({ owner: 'alice' })).map((a) => a.id)).toEqual(['a2', 'a1', 'a0']);

    await store.updateAgent('a0', { status: 'stopped', updated_at: T0 });
    expect((await store.listAgents()).find((a) => a.id === 'a0')?.status).toBe('stopped');

    await store.addAgentUsage('a1', 1, 42, T0);
    expect((await store.listAgents({ owner: 'alice' })).find((a) => a.id === 'a1')).toMatchObject({ usage_requests: 1, usage_tokens: 42 });

    await store.deleteAgent('a2');
    expect((await store.listAgents({ owner: 'alice' })).map((a) => a.id)).toEqual(['a1', 'a0']);
  });

  it('sees what another connection (another process) committed', async () => {
    const { store, path } = await storeWithAgents(3);
    expect((await store.listAgents({ owner: 'alice' }))[0]?.status).toBe('running');
    const other = new Database(path);
    try {
      other.prepare("UPDATE agents SET status = 'error' WHERE id = 'a2'").run();
    } finally {
      other.close();
    }
    expect((await store.listAgents({ owner: 'alice' }))[0]).toMatchObject({ id: 'a2', status: 'error' });
  });

  it('hands out frozen records, so no caller can change what the next caller reads', async () => {
    const { store } = await storeWithAgents(1);
    const [first] = await store.listAgents({ owner: 'alice' });
    expect(Object.isFrozen(first)).toBe(true);
    expect(() => {
      (first?.parameters.nested as { top_p: number }).top_p = 99;
    }).toThrow(TypeError);
    const list = await store.listAgents({ owner: 'alice' });
    list.pop();
    expect(await store.listAgents({ owner: 'alice' })).toHaveLength(1);
    expect((await store.listAgents({ owner: 'alice' }))[0]?.parameters).toEqual({ temperature: 0.5, nested: { top_p: 1 } });
  });
});

function message(n: number): NewMessageRecord {
  return { agent_id: 'a0', role: n % 2 === 0 ? 'user' : 'assistant', content: `message ${n}`, created_at: T0 };
}

describe('SqliteStore conversations (cached between writes)', () => {
  it('returns the right window for every limit while appends extend the cached conversation', async () => {
    const { store } = await storeWithAgents(1);
    await store.appendMessages('a0', [message(1), message(2), message(3)]);
    const contents = async (limit?: number) => (await store.listMessages('a0', limit === undefined ? {} : { limit })).map((m) => m.content);

    expect(await contents(2)).toEqual(['message 2', 'message 3']);
    await store.appendMessages('a0', [message(4)]);
    expect(await contents(2)).toEqual(['message 3', 'message 4']);
    expect(await contents(0)).toEqual([]);
    // More than the cached window (2 + 1 appended): read again from the file.
    expect(await contents(10)).toEqual(['message 1', 'message 2', 'message 3', 'message 4']);
    await store.appendMessages('a0', [message(5), message(6)]);
    expect(await contents()).toEqual([1, 2, 3, 4, 5, 6].map((n) => `message ${n}`));
    expect((await store.listMessages('a0', { limit: 3 })).map((m) => m.seq)).toEqual([4, 5, 6]);
  });

  it('sees messages another connection committed, and none after the agent is deleted', async () => {
    const { store, path } = await storeWithAgents(1);
    await store.appendMessages('a0', [message(1)]);
    expect(await store.listMessages('a0', { limit: 5 })).toHaveLength(1);
    const other = new Database(path);
    try {
      other
        .prepare("INSERT INTO agent_messages (agent_id, seq, role, content, created_at) VALUES ('a0', 2, 'assistant', 'from elsewhere', ?)")
        .run(T0);
    } finally {
      other.close();
    }
    expect((await store.listMessages('a0', { limit: 5 })).map((m) => m.content)).toEqual(['message 1', 'from elsewhere']);
    await store.deleteAgent('a0');
    expect(await store.listMessages('a0', { limit: 5 })).toEqual([]);
  });

  it('hands out frozen messages', async () => {
    const { store } = await storeWithAgents(1);
    await store.appendMessages('a0', [{ ...message(1), role: 'assistant', tool_calls: [{ id: 'c1', name: 'calculator', arguments: { expression: '1+1' } }] }]);
    const [first] = await store.listMessages('a0', { limit: 1 });
    expect(Object.isFrozen(first?.tool_calls?.[0]?.arguments)).toBe(true);
    expect(() => first?.tool_calls?.push({ id: 'c2', name: 'x', arguments: {} })).toThrow(TypeError);
    expect((await store.listMessages('a0'))[0]?.tool_calls).toHaveLength(1);
  });
});

describe('SqliteStore agent records by id (cached between writes)', () => {
  it('serves the same frozen record until a write of its own or another connection changes it', async () => {
    const { store, path, digest } = await storeWithAgents(2);
    const first = await store.getAgent('a0');
    expect(first).toMatchObject({ id: 'a0', status: 'running', usage_requests: 0 });
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first?.parameters)).toBe(true);
    expect(await store.getAgent('a0')).toBe(first);

    const updated = await store.updateAgent('a0', { status: 'stopped', updated_at: T0 });
    expect(updated?.status).toBe('stopped');
    expect((await store.getAgent('a0'))?.status).toBe('stopped');

    await store.addAgentUsage('a0', 2, 10, T0);
    expect(await store.getAgent('a0')).toMatchObject({ usage_requests: 2, usage_tokens: 10 });

    const other = new Database(path);
    try {
      other.prepare("UPDATE agents SET status = 'error', usage_tokens = 99 WHERE id = 'a0'").run();
    } finally {
      other.close();
    }
    expect(await store.getAgent('a0')).toMatchObject({ status: 'error', usage_tokens: 99 });

    // Usage builds on the cached record (no RETURNING): what another connection changed since
    // is seen under the write lock, and the result is the stored row, frozen, shared by getAgent.
    const other2 = new Database(path);
    try {
      other2.prepare("UPDATE agents SET name = 'renamed', usage_requests = 5 WHERE id = 'a0'").run();
    } finally {
      other2.close();
    }
    const counted = await store.addAgentUsage('a0', 1, 1, '2025-01-02T00:00:00.000Z');
    expect(counted).toEqual({ ...agent('a0', digest, 0), name: 'renamed', status: 'error', usage_requests: 6, usage_tokens: 100, updated_at: '2025-01-02T00:00:00.000Z' });
    expect(Object.keys(counted ?? {})).toEqual(Object.keys(agent('a0', digest, 0)));
    expect(Object.isFrozen(counted)).toBe(true);
    expect(await store.getAgent('a0')).toBe(counted);
    // Again, now from the cached record: the same as a fresh read of the row.
    const again = await store.addAgentUsage('a0', 2, 3, '2025-01-03T00:00:00.000Z');
    expect(again).toEqual({ ...counted, usage_requests: 8, usage_tokens: 103, updated_at: '2025-01-03T00:00:00.000Z' });
    expect(Object.isFrozen(again)).toBe(true);
    const reader = new Database(path, { readonly: true });
    try {
      const row = reader.prepare("SELECT name, usage_requests, usage_tokens, updated_at FROM agents WHERE id = 'a0'").get();
      expect(row).toEqual({ name: 'renamed', usage_requests: 8, usage_tokens: 103, updated_at: '2025-01-03T00:00:00.000Z' });
    } finally {
      reader.close();
    }

    await store.deleteAgent('a0');
    expect(await store.getAgent('a0')).toBeNull();
    await store.deleteUser('alice');
    expect(await store.getAgent('a1')).toBeNull();
  });
});

describe('SqliteStore next seq numbers (known between our own appends)', () => {
  it('continues after rows another connection appended, and restarts for an agent deleted and made again', async () => {
    const { store, path, digest } = await storeWithAgents(1);
    const event = { agent_id: 'a0', event_type: 'e', timestamp: T0, content: 'x', data: {} };
    const line = { agent_id: 'a0', timestamp: T0, level: 'info' as const, message: 'm' };
    const message: NewMessageRecord = { agent_id: 'a0', role: 'user', content: 'hi', created_at: T0 };
    expect((await store.appendEvents('a0', [event, event])).map((e) => e.seq)).toEqual([1, 2]);
    expect((await store.appendLogs('a0', [line])).map((l) => l.seq)).toEqual([1]);
    expect((await store.appendMessages('a0', [message])).map((m) => m.seq)).toEqual([1]);

    // Another process appends one of each: our next numbers must come after them, not collide.
    const other = new Database(path);
    try {
      other.prepare(`INSERT INTO agent_events (agent_id, seq, event_type, timestamp, content, data) VALUES ('a0', 3, 'e', ?, 'y', '{}')`).run(T0);
      other.prepare(`INSERT INTO agent_logs (agent_id, seq, timestamp, level, message) VALUES ('a0', 2, ?, 'info', 'n')`).run(T0);
      other.prepare(`INSERT INTO agent_messages (agent_id, seq, role, content, created_at) VALUES ('a0', 2, 'assistant', 'yo', ?)`).run(T0);
    } finally {
      other.close();
    }
    expect((await store.appendEvents('a0', [event]))[0]?.seq).toBe(4);
    expect((await store.appendLogs('a0', [line]))[0]?.seq).toBe(3);
    expect((await store.appendMessages('a0', [message]))[0]?.seq).toBe(3);
    expect((await store.listEvents('a0', 0)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);

    // A failed append uses up no number.
    await expect(store.appendMessages('a0', [message, { ...message, role: 'nobody' as 'user' }])).rejects.toThrow();
    expect((await store.appendMessages('a0', [message]))[0]?.seq).toBe(4);

    await store.deleteAgent('a0');
    await store.createAgent(agent('a0', digest, 5));
    expect((await store.appendEvents('a0', [event]))[0]?.seq).toBe(1);
    expect((await store.appendLogs('a0', [line]))[0]?.seq).toBe(1);
    expect((await store.appendMessages('a0', [message]))[0]?.seq).toBe(1);
  });
});
