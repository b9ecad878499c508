/**
 * The audit log survives `kill -9` of the built `sentinel api` once its flush window has passed
 * (entries are written on the next turn of the event loop after the action: one group commit
 * on SQLite, one round trip on PostgreSQL; the test waits 200 ms, far beyond). Real processes,
 * real HTTP, on the SQLite file and on a fresh PostgreSQL database.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { callJson as call, cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'audit-kill-admin-password';
const WRONG_PASSWORD = 'audit-kill-wrong-password';
/** How long the test leaves the server after the last action before killing it. */
const PAST_FLUSH_WINDOW_MS = 200;

const scratch = useCliScratch('sentinel-cli-audit-');
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

function startApi(dataDir: string, extra: string[]): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, ...extra], cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD }));
}

async function login(url: string, password: string): Promise<{ status: number; json: any }> {
  return call('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password });
}

describe.each(['sqlite', 'postgres'] as const)('audit log after kill -9 (%s)', (kind) => {
  it("keeps the entries of actions answered before the kill, in seq order, and no password in either process's output", async () => {
    const dataDir = join(scratch.dir, 'data');
    const storeArgs = kind === 'postgres' ? ['--store', db.url] : [];
    const first = startApi(dataDir, storeArgs);
    const url = await first.url();
    expect((await login(url, WRONG_PASSWORD)).status).toBe(401);
    const ok = await login(url, ADMIN_PASSWORD);
    expect(ok.status).toBe(200);
    const created = await call('POST', `${url}/v1/users`, ok.json.token, { username: `killed-${kind}`, password: 'killed-user-password' });
    expect(created.status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, PAST_FLUSH_WINDOW_MS));
    expect(await first.stop('SIGKILL')).toMatchObject({ signal: 'SIGKILL' });

    const second = startApi(dataDir, storeArgs);
    const url2 = await second.url();
    const again = await login(url2, ADMIN_PASSWORD);
    expect(again.status).toBe(200);
    const page = await call('GET', `${url2}/v1/audit?limit=1000`, again.json.token);
    expect(page.status).toBe(200);
    const entries = page.json.entries as Array<{ seq: number; action: string; actor: string | null; target: string | null }>;
    const before = entries.filter((entry) => entry.target === `user:killed-${kind}` || entry.action.startsWith('auth.login'));
    expect(before.map(({ action, actor, target }) => ({ action, actor, target }))).toEqual(
      expect.arrayContaining([
        { action: 'auth.login_failed', actor: null, target: 'user:admin' },
        { action: 'auth.login', actor: 'admin', target: 'user:admin' },
        { action: 'user.created', actor: 'admin', target: `user:killed-${kind}` },
      ]),
    );
    const seqs = entries.map((entry) => entry.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    // Neither instance logged a password.
    for (const out of [first.stdout() + first.stderr(), second.stdout() + second.stderr()]) {
      expect(out.includes(ADMIN_PASSWORD)).toBe(false);
      expect(out.includes(WRONG_PASSWORD)).toBe(false);
    }
    await second.stop();
  });
});
