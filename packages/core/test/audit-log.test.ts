/**
 * The AuditLog on a real SQLite store: record() returns before anything is written and never
 * throws, entries of one turn are written in one batch, close() writes the queue, a store that
 * refuses is reported in the log (without the entries' fields) and never reaches the caller.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, createJsonLogger, openSqliteStore, type AuditEvent, type NewAuditEntry, type SqliteStore } from '@sentinel/api-core';

const dirs: string[] = [];
const stores: SqliteStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function openStore(): Promise<SqliteStore> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-audit-log-'));
  dirs.push(dir);
  const store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  stores.push(store);
  return store;
}

/** The store, with every appendAudit batch it was handed noted (the calls go through unchanged). */
function observed(store: SqliteStore): { store: SqliteStore; batches: NewAuditEntry[][] } {
  const batches: NewAuditEntry[][] = [];
  const append = store.appendAudit.bind(store);
  store.appendAudit = (entries) => {
    batches.push(entries);
    return append(entries);
  };
  return { store, batches };
}

function event(n: number, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return { action: 'user.created', actor: 'admin', target: `user:u${n}`, address: '192.0.2.1', request_id: `r${n}`, ...overrides };
}

function capturingLogger(): { logger: ReturnType<typeof createJsonLogger>; lines: string[] } {
  const lines: string[] = [];
  return { logger: createJsonLogger({ level: 'debug', write: (line) => lines.push(line) }), lines };
}

describe('AuditLog', () => {
  it('returns from record() before writing, then writes the entries of one turn in one batch, stamped with the clock', async () => {
    const { store, batches } = observed(await openStore());
    let now = Date.UTC(2026, 0, 2, 3, 4, 5);
    const audit = new AuditLog({ store, now: () => now++ });
    for (let i = 0; i < 50; i++) audit.record(event(i, { details: { i } }));
    expect(batches).toHaveLength(0);
    expect(await store.listAudit()).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(batches.map((batch) => batch.length)).toEqual([50]);
    const entries = await audit.list({ limit: 1000 });
    expect(entries.map((entry) => entry.target)).toEqual(Array.from({ length: 50 }, (_, i) => `user:u${i}`));
    expect(entries[0]).toEqual({ seq: expect.any(Number), at: '2026-01-02T03:04:05.000Z', action: 'user.created', actor: 'admin', target: 'user:u0', address: '192.0.2.1', request_id: 'r0', details: { i: 0 } });
    expect(entries[49]?.at).toBe('2026-01-02T03:04:05.049Z');
  });

  it('copies details when recording: a later change by the caller is not journaled', async () => {
    const store = await openStore();
    const audit = new AuditLog({ store });
    const details: Record<string, unknown> = { role: 'user' };
    audit.record(event(1, { details }));
    details.role = 'admin';
    await audit.flush();
    expect((await audit.list({}))[0]?.details).toEqual({ role: 'user' });
  });

  it('close() writes what is queued (even with a long flush delay); later records are dropped with a warning', async () => {
    const store = await openStore();
    const { logger, lines } = capturingLogger();
    const audit = new AuditLog({ store, logger, flushDelayMs: 60_000 });
    audit.record(event(1));
    audit.record(event(2));
    await audit.close();
    expect((await store.listAudit()).map((entry) => entry.target)).toEqual(['user:u1', 'user:u2']);
    expect(() => audit.record(event(3))).not.toThrow();
    await audit.close();
    expect(await store.listAudit()).toHaveLength(2);
    expect(lines.some((line) => line.includes('audit entry dropped: the audit log is closed'))).toBe(true);
  });

  it('never throws to the caller: a store that refuses is logged with count and actions only, and given up after its retries', async () => {
    const store = await openStore();
    const { logger, lines } = capturingLogger();
    const audit = new AuditLog({ store, logger, retryDelayMs: 10 });
    await store.close();
    expect(() => audit.record(event(1, { target: 'user:secret-target', details: { marker: 'detail-marker-1f2e' } }))).not.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await audit.flush();
    const errors = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.level === 'error');
    expect(errors.map((line) => line.msg)).toEqual([
      'audit entries not stored yet: the store refused them; retrying',
      'audit entries not stored yet: the store refused them; retrying',
      'audit entries lost: the store refused them',
    ]);
    expect(errors[2]).toMatchObject({ count: 1, actions: ['user.created'], attempt: 3, reason: 'the store is closed' });
    const all = lines.join('\n');
    expect(all.includes('detail-marker-1f2e')).toBe(false);
    expect(all.includes('secret-target')).toBe(false);
  });

  it('drops what JSON cannot hold without failing the batch it would have joined', async () => {
    const store = await openStore();
    const { logger, lines } = capturingLogger();
    const audit = new AuditLog({ store, logger });
    audit.record(event(1));
    expect(() => audit.record(event(2, { details: { big: 1n } }))).not.toThrow();
    audit.record(event(3));
    await audit.flush();
    expect((await store.listAudit()).map((entry) => entry.target)).toEqual(['user:u1', 'user:u3']);
    expect(lines.some((line) => line.includes('audit entry dropped: it could not be recorded'))).toBe(true);
  });

  it('bounds the queue: past maxQueued new entries are dropped and counted in the log', async () => {
    const store = await openStore();
    const { logger, lines } = capturingLogger();
    const audit = new AuditLog({ store, logger, maxQueued: 3, flushDelayMs: 60_000 });
    for (let i = 0; i < 5; i++) audit.record(event(i));
    await audit.flush();
    expect((await store.listAudit()).map((entry) => entry.target)).toEqual(['user:u0', 'user:u1', 'user:u2']);
    const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(parsed.filter((line) => line.msg === 'audit entries dropped: too many waiting for the store')).toHaveLength(1);
    expect(parsed.find((line) => line.msg === 'audit entries were dropped while the store was behind')).toMatchObject({ dropped: 2 });
  });

  it('splits a burst into batches of at most 500 and keeps their order', async () => {
    const { store, batches } = observed(await openStore());
    const audit = new AuditLog({ store });
    for (let i = 0; i < 1200; i++) audit.record(event(i));
    await audit.flush();
    expect(batches.map((batch) => batch.length)).toEqual([500, 500, 200]);
    const entries = await store.listAudit({ limit: 1000 });
    expect(entries.map((entry) => entry.target)).toEqual(Array.from({ length: 1000 }, (_, i) => `user:u${i}`));
  });
});
