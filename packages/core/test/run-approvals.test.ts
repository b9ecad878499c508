/**
 * RunApprovals on both real stores: decisions are stored and journaled, the last one continues
 * the run exactly once even when two instances (two RunApprovals, on PostgreSQL two store
 * connections) decide at once, bad decisions are refused with the right codes, and the sweeper
 * fails expired runs once with `approval_timeout`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, parseAgentDefinition, silentLogger, type Principal, type SentinelApi, type Store } from '@sentinel/api-core';
import { openPostgresStore } from '@sentinel/api-core/postgres';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { newRunId } from '../src/contract/ids.js';
import { RunApprovals, type ApprovalFrame, type RunApprovalsOptions } from '../src/runs/approvals.js';
import type { RequiredAction, RunRecord } from '../src/runs/types.js';

interface Backend {
  name: string;
  open(): Promise<{ api: SentinelApi; second: Store; close(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'SQLite',
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'sentinel-approvals-'));
      const api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1' });
      // One file, one Store: a second instance would open the same file; the Store's
      // compare-and-set is what both rely on either way.
      return { api, second: api.store, close: async () => (await api.close(), rmSync(dir, { recursive: true, force: true })) };
    },
  },
  {
    name: 'PostgreSQL',
    async open() {
      const db: TestDatabase = await createTestDatabase();
      const dir = mkdtempSync(join(tmpdir(), 'sentinel-approvals-pg-'));
      const api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1', storeUrl: db.url });
      const second = await openPostgresStore({ url: db.url });
      return {
        api,
        second,
        close: async () => {
          await second.close();
          await api.close();
          await db.drop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

const alice: Principal = { username: 'alice', role: 'user' };
const origin = { secure: false, host: 'localhost' };

interface Harness {
  approvals: RunApprovals;
  frames: { run: string; frame: ApprovalFrame; terminal: boolean }[];
  resumed: { run: RunRecord; continuation: Parameters<RunApprovalsOptions['resume']>[1] }[];
  abandoned: { run: string; why: string }[];
}

function harness(store: Store, overrides: Partial<RunApprovalsOptions> = {}): Harness {
  const h: Harness = { frames: [], resumed: [], abandoned: [], approvals: undefined as unknown as RunApprovals };
  h.approvals = new RunApprovals({
    store,
    logger: silentLogger,
    emit: async (run, frame, terminal) => void h.frames.push({ run: run.id, frame, terminal }),
    resume: async (run, continuation) => void h.resumed.push({ run, continuation }),
    abandon: async (run, _action, why) => void h.abandoned.push({ run: run.id, why }),
    ...overrides,
  });
  return h;
}

for (const backend of backends) {
  describe(`RunApprovals on ${backend.name}`, () => {
    let api: SentinelApi;
    let second: Store;
    let close: () => Promise<void>;
    let agentId: string;

    beforeAll(async () => {
      ({ api, second, close } = await backend.open());
      await api.users.create({ username: 'alice', password: 'alice-password' });
      await api.images.build(parseAgentDefinition({ name: 'test/gated', model: 'echo/m', tools: [{ name: 'calculator', approval: 'required' }, 'current_time'] }));
      agentId = (await api.agents.create(alice, { image: 'test/gated' }, origin)).id;
    }, 30_000);

    afterAll(async () => {
      await close?.();
    });

    /** A run of the agent waiting in requires_action for `requests` gated calls (plus one ungated). */
    async function waitingRun(requests: number, expiresInMs = 60_000): Promise<RunRecord> {
      const calls = [...Array.from({ length: requests }, (_, i) => ({ id: `call_${i}`, name: 'calculator', arguments: { expression: `${i}+1` } })), { id: 'call_t', name: 'current_time', arguments: {} }];
      const h = harness(api.store, { timeoutMs: expiresInMs });
      const { action, frames } = h.approvals.required('m1', {
        requests: calls.slice(0, requests).map((c, i) => ({ request_id: `apr_${String(i).padStart(16, '0')}`, call_id: c.id, tool: c.name, parameters: c.arguments })),
        calls,
      });
      expect(frames.map((f) => f.type)).toEqual(Array(requests).fill('tool_approval_required'));
      expect(frames[0]).toMatchObject({ message_id: 'm1', request_id: 'apr_0000000000000000', tool: 'calculator', parameters: { expression: '0+1' }, expires_at: action.expires_at });
      const created = await api.store.createRun(
        {
          id: newRunId(),
          agent_id: agentId,
          owner: 'alice',
          message_id: 'm1',
          status: 'running',
          input: { content: 'calc' },
          usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
          webhook: null,
          created_at: new Date().toISOString(),
          idempotency_key: null,
          request_hash: null,
          instance_id: null,
        },
        { idempotencyWindowMs: 1000, nowMs: Date.now() },
      );
      const waiting = await api.store.updateRun(created.run.id, { status: 'requires_action', required_action: action }, { fromStatus: ['running'] });
      expect(waiting?.status).toBe('requires_action');
      return waiting as RunRecord;
    }

    it('stores each decision with its event frame and continues once every request is decided', async () => {
      const run = await waitingRun(2);
      const h = harness(api.store, { instanceId: 'instance-a' });
      const first = await h.approvals.decide(run, { request_id: 'apr_0000000000000000', approve: true });
      expect(first.status).toBe('requires_action');
      expect(first.required_action?.decisions).toEqual({ apr_0000000000000000: { approve: true } });
      expect(h.resumed).toEqual([]);
      // The same decision again is answered with the run; another decision for it is refused.
      expect((await h.approvals.decide(first, { request_id: 'apr_0000000000000000', approve: true })).status).toBe('requires_action');
      await expect(h.approvals.decide(first, { request_id: 'apr_0000000000000000', approve: false })).rejects.toMatchObject({ code: 'conflict' });
      await expect(h.approvals.decide(first, { request_id: 'apr_nope', approve: true })).rejects.toMatchObject({ code: 'not_found' });

      const last = await h.approvals.decide(first, { request_id: 'apr_0000000000000001', approve: false, reason: 'no' });
      expect(last).toMatchObject({ status: 'running', required_action: null });
      expect((await api.store.getRun(run.id))?.status).toBe('running');
      expect(h.resumed).toHaveLength(1);
      expect(h.resumed[0]?.continuation.calls.map((c) => c.id)).toEqual(['call_0', 'call_1', 'call_t']);
      expect(h.resumed[0]?.continuation.decisions).toEqual({ call_0: { approve: true }, call_1: { approve: false, reason: 'no' } });
      expect(h.frames.map((f) => f.frame)).toEqual([
        { type: 'event', event_type: 'tool_approval', message_id: 'm1', data: { request_id: 'apr_0000000000000000', approve: true } },
        { type: 'event', event_type: 'tool_approval', message_id: 'm1', data: { request_id: 'apr_0000000000000001', approve: false, reason: 'no' } },
      ]);
      // Once continued, a late decision is a conflict (409), not a second continuation.
      await expect(h.approvals.decide(run, { request_id: 'apr_0000000000000001', approve: true })).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('not waiting') });
      expect(h.resumed).toHaveLength(1);
    });

    it('continues a run once when two instances decide at the same moment', async () => {
      for (let round = 0; round < 5; round++) {
        const run = await waitingRun(1);
        const a = harness(api.store);
        const b = harness(second);
        const results = await Promise.allSettled([
          a.approvals.decide(run, { request_id: 'apr_0000000000000000', approve: true }),
          b.approvals.decide(run, { request_id: 'apr_0000000000000000', approve: true }),
        ]);
        expect(a.resumed.length + b.resumed.length, `round ${round}`).toBe(1);
        expect(results.filter((r) => r.status === 'fulfilled')).not.toHaveLength(0);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'conflict' });
      }
    });

    it('keeps both decisions when two instances decide different requests at once, and continues once', async () => {
      for (let round = 0; round < 5; round++) {
        const run = await waitingRun(2);
        const a = harness(api.store);
        const b = harness(second);
        await Promise.all([
          a.approvals.decide(run, { request_id: 'apr_0000000000000000', approve: true }),
          b.approvals.decide(run, { request_id: 'apr_0000000000000001', approve: false, reason: 'b says no' }),
        ]);
        const resumed = [...a.resumed, ...b.resumed];
        expect(resumed, `round ${round}`).toHaveLength(1);
        expect(resumed[0]?.continuation.decisions).toEqual({ call_0: { approve: true }, call_1: { approve: false, reason: 'b says no' } });
        expect((await api.store.getRun(run.id))?.status).toBe('running');
      }
    });

    it('fails an expired run once with approval_timeout, answering its calls, whichever instance sweeps', async () => {
      const run = await waitingRun(1, 50);
      const a = harness(api.store, { sweepIntervalMs: 20 });
      const b = harness(second, { sweepIntervalMs: 20 });
      a.approvals.start();
      b.approvals.start();
      const deadline = Date.now() + 5000;
      while ((await api.store.getRun(run.id))?.status !== 'failed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      await Promise.all([a.approvals.stop(), b.approvals.stop()]);
      const failed = await api.store.getRun(run.id);
      expect(failed).toMatchObject({ status: 'failed', required_action: null, error: { code: 'approval_timeout', message: expect.stringContaining('apr_0000000000000000') } });
      expect(failed?.ended_at).not.toBeNull();
      const frames = [...a.frames, ...b.frames].filter((f) => f.run === run.id);
      expect(frames).toEqual([{ run: run.id, terminal: true, frame: { type: 'error', error: failed?.error?.message, code: 'approval_timeout', message_id: 'm1' } }]);
      expect([...a.abandoned, ...b.abandoned].filter((x) => x.run === run.id)).toHaveLength(1);
      // A decision that comes too late is refused.
      await expect(a.approvals.decide(run, { request_id: 'apr_0000000000000000', approve: true })).rejects.toMatchObject({ code: 'conflict' });
    });

    it('refuses a decision past expires_at even before the sweeper ran, and fails the run', async () => {
      const run = await waitingRun(1, 1);
      await new Promise((r) => setTimeout(r, 10));
      const h = harness(api.store);
      await expect(h.approvals.decide(run, { request_id: 'apr_0000000000000000', approve: true })).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('expired') });
      expect((await api.store.getRun(run.id))?.error?.code).toBe('approval_timeout');
      expect(h.resumed).toEqual([]);
    });

    it('validates its durations', () => {
      expect(() => harness(api.store, { timeoutMs: 0 })).toThrow('approval timeout must be a positive integer of ms, got 0');
      expect(() => harness(api.store, { sweepIntervalMs: 1.5 })).toThrow('approval sweep interval');
    });

    // Keeps RequiredAction's shape honest against the Store round trip.
    it('stores the required action as given', async () => {
      const run = await waitingRun(1);
      const stored = (await api.store.getRun(run.id))?.required_action as RequiredAction;
      expect(stored).toEqual(run.required_action);
      expect(stored.calls.map((c) => c.name)).toEqual(['calculator', 'current_time']);
    });
  });
}
