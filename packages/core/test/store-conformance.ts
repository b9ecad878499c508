/**
 * The Store contract as executable specs (docs/ARCHITECTURE.md#storage): every back end runs this suite
 * unchanged, so it talks to the `Store` interface only and never assumes anything an
 * implementation chose beyond the interface's doc comments (e.g. it never relies on insertion
 * order to break ties, and compares unordered lists as sets).
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import type {
  AgentRecord,
  ApiKeyRecord,
  ErrorCode,
  ImageRecord,
  NewAuditEntry,
  NewEventRecord,
  NewLogRecord,
  NewMessageRecord,
  NewRunRecord,
  RequiredAction,
  RunRecord,
  Store,
  UserRecord,
} from '@sentinel/api-core';

/** A freshly opened, empty store and how to dispose of it. */
export interface OpenedStore {
  store: Store;
  cleanup(): Promise<void>;
}

/** A fixed instant `seconds` after 2025-01-01T00:00:00Z, as `toISOString()` writes it. */
function at(seconds: number): string {
  return new Date(Date.UTC(2025, 0, 1) + seconds * 1000).toISOString();
}

function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

function makeUser(username: string, overrides: Partial<UserRecord> = {}): UserRecord {
  return {
    id: `id-of-${username}`,
    username,
    password_hash: `scrypt$16384$8$1$c2FsdA$${username}`,
    role: 'user',
    can_push: false,
    token_version: 0,
    disabled: false,
    quota_tokens_per_day: null,
    quota_turns_per_day: null,
    quota_concurrent_agents: null,
    created_at: at(0),
    updated_at: at(0),
    ...overrides,
  };
}

function makeImage(seed: string, createdAt = at(0)): Omit<ImageRecord, 'tags'> {
  const config = JSON.stringify({ name: seed, model: { provider: 'echo', name: 'echo', parameters: { temperature: 0.7 } } });
  const manifest = JSON.stringify({ schemaVersion: 2, config: { digest: sha256(config), size: config.length }, seed });
  return { digest: sha256(manifest), manifest, config, config_digest: sha256(config), size: config.length, created_at: createdAt };
}

function makeAgent(id: string, owner: string, imageId: string, overrides: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id,
    name: `agent-${id}`,
    owner,
    image: 'starter:latest',
    image_id: imageId,
    status: 'created',
    model: 'echo/echo',
    parameters: { temperature: 0.7, nested: { list: [1, 'two', null], flag: true } },
    environment: { API_KEY: 'not-a-real-key', MODE: 'test' },
    usage_requests: 0,
    usage_tokens: 0,
    created_at: at(0),
    updated_at: at(0),
    ...overrides,
  };
}

function makeLog(agentId: string, seconds: number, level: NewLogRecord['level'], message: string, fields?: Record<string, unknown>): NewLogRecord {
  const line: NewLogRecord = { agent_id: agentId, timestamp: at(seconds), level, message };
  if (fields !== undefined) line.fields = fields;
  return line;
}

function makeEvent(agentId: string, n: number): NewEventRecord {
  return { agent_id: agentId, event_type: 'message_processed', timestamp: at(n), content: `event ${n}`, data: { n, nested: { ok: true } } };
}

function makeAudit(n: number, overrides: Partial<NewAuditEntry> = {}): NewAuditEntry {
  return { at: at(n), actor: 'admin', action: 'user.created', target: `user:u${n}`, address: '192.0.2.7', request_id: `req-${n}`, ...overrides };
}

function makeMessage(agentId: string, n: number, overrides: Partial<NewMessageRecord> = {}): NewMessageRecord {
  return { agent_id: agentId, role: n % 2 === 1 ? 'user' : 'assistant', content: `message ${n}`, created_at: at(n), ...overrides };
}

/** A queued run of `agentId` created at `at(seconds)`, without an idempotency key unless given. */
function makeRun(id: string, agentId: string, seconds: number, overrides: Partial<NewRunRecord> = {}): NewRunRecord {
  return {
    id,
    agent_id: agentId,
    owner: 'alice',
    message_id: `msg-${id}`,
    status: 'queued',
    input: { content: `hello ${id}` },
    usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
    webhook: null,
    idempotency_key: null,
    request_hash: null,
    instance_id: null,
    created_at: at(seconds),
    ...overrides,
  };
}

/** The API record `createRun` stores for `run`. */
function storedRun(run: NewRunRecord): RunRecord {
  const { idempotency_key: _key, request_hash: _hash, instance_id: _instance, ...fields } = run;
  return { ...fields, output: null, error: null, required_action: null, last_seq: 0, started_at: null, ended_at: null };
}

/** The idempotency window the API uses (24 h) and createRun options at `at(seconds)`. */
const DAY_MS = 24 * 60 * 60 * 1000;
function runOptions(seconds: number): { idempotencyWindowMs: number; nowMs: number } {
  return { idempotencyWindowMs: DAY_MS, nowMs: Date.parse(at(seconds)) };
}

/** createRun that must create: returns the stored record. */
async function createdRun(store: Store, run: NewRunRecord, seconds = 0): Promise<RunRecord> {
  const result = await store.createRun(run, runOptions(seconds));
  expect(result.created, `run ${run.id} should have been created`).toBe(true);
  return result.run;
}

/** Awaits `promise`, expecting a SentinelError with `code` whose message contains `text`. */
async function expectSentinelError(promise: Promise<unknown>, code: ErrorCode, text?: string): Promise<void> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSentinelError(err), `expected a SentinelError ${code}, got ${String(err)}`).toBe(true);
  if (!isSentinelError(err)) return;
  expect(err.code).toBe(code);
  if (text !== undefined) expect(err.message).toContain(text);
}

/**
 * Registers the Store conformance specs under `describe(name)`. `open` is called before
 * every spec and must return an empty, migrated store; `cleanup` runs after it.
 */
export function describeStoreConformance(name: string, open: () => Promise<OpenedStore>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      const opened = await open();
      store = opened.store;
      cleanup = () => opened.cleanup();
    });

    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    /** One user owning one agent on one image: the usual starting point. */
    async function seedAgent(id = 'a1', owner = 'alice'): Promise<AgentRecord> {
      if ((await store.getUser(owner)) === null) await store.createUser(makeUser(owner));
      const image = makeImage('base');
      await store.putImage(image, ['base:latest']);
      const agent = makeAgent(id, owner, image.digest);
      await store.createAgent(agent);
      return agent;
    }

    describe('lifecycle', () => {
      it('ping resolves and migrate is idempotent: running it again keeps data and the store keeps working', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
        await store.createUser(makeUser('alice'));
        await store.setMeta('k', 'v');
        await store.migrate();
        await store.migrate();
        expect(await store.getUser('alice')).toEqual(makeUser('alice'));
        expect(await store.getMeta('k')).toBe('v');
        await store.createUser(makeUser('bob'));
        expect(await store.countUsers()).toBe(2);
      });
    });

    describe('users', () => {
      it('round-trips every field, booleans as booleans', async () => {
        const admin = makeUser('root', { role: 'admin', can_push: true, created_at: at(1), updated_at: at(2) });
        const plain = makeUser('alice');
        await store.createUser(admin);
        await store.createUser(plain);
        const gotAdmin = await store.getUser('root');
        expect(gotAdmin).toEqual(admin);
        expect(gotAdmin?.can_push).toBe(true);
        expect((await store.getUser('alice'))?.can_push).toBe(false);
        expect(await store.getUser('nobody')).toBeNull();
      });

      it('rejects a duplicate username with conflict and keeps the original', async () => {
        await store.createUser(makeUser('alice', { role: 'admin' }));
        await expectSentinelError(store.createUser(makeUser('alice')), 'conflict', 'already exists');
        expect((await store.getUser('alice'))?.role).toBe('admin');
        expect(await store.countUsers()).toBe(1);
      });

      it('lists and counts every user', async () => {
        expect(await store.listUsers()).toEqual([]);
        expect(await store.countUsers()).toBe(0);
        for (const name of ['carol', 'alice', 'bob']) await store.createUser(makeUser(name));
        const names = (await store.listUsers()).map((u) => u.username);
        expect([...names].sort()).toEqual(['alice', 'bob', 'carol']);
        expect(await store.countUsers()).toBe(3);
      });

      it('updates only the given fields and reports unknown users', async () => {
        await store.createUser(makeUser('alice'));
        expect(await store.updateUser('alice', { can_push: true, updated_at: at(9) })).toBe(true);
        expect(await store.getUser('alice')).toEqual(makeUser('alice', { can_push: true, updated_at: at(9) }));
        expect(await store.updateUser('alice', { role: 'admin', password_hash: 'scrypt$new' })).toBe(true);
        expect(await store.getUser('alice')).toEqual(makeUser('alice', { can_push: true, updated_at: at(9), role: 'admin', password_hash: 'scrypt$new' }));
        expect(await store.updateUser('alice', { can_push: false })).toBe(true);
        expect((await store.getUser('alice'))?.can_push).toBe(false);
        expect(await store.updateUser('nobody', { role: 'admin' })).toBe(false);
        expect(await store.getUser('nobody')).toBeNull();
      });

      it('stores disabled and the quotas, sets a quota back to null (unlimited) and leaves absent ones alone', async () => {
        await store.createUser(makeUser('alice'));
        expect(await store.updateUser('alice', { disabled: true, quota_tokens_per_day: 5000, quota_turns_per_day: 0, quota_concurrent_agents: 3 })).toBe(true);
        expect(await store.getUser('alice')).toEqual(
          makeUser('alice', { disabled: true, quota_tokens_per_day: 5000, quota_turns_per_day: 0, quota_concurrent_agents: 3 }),
        );
        expect(await store.updateUser('alice', { quota_turns_per_day: null, disabled: false })).toBe(true);
        expect(await store.getUser('alice')).toEqual(makeUser('alice', { quota_tokens_per_day: 5000, quota_concurrent_agents: 3 }));
        // A quota too large for 32 bits survives (PostgreSQL BIGINT; SQLite integers are 64-bit).
        expect(await store.updateUser('alice', { quota_tokens_per_day: 10_000_000_000 })).toBe(true);
        expect((await store.getUser('alice'))?.quota_tokens_per_day).toBe(10_000_000_000);
        await expectSentinelError(store.updateUser('alice', { quota_turns_per_day: -1 }), 'invalid_request');
        const created = makeUser('bob', { disabled: true, quota_turns_per_day: 7 });
        await store.createUser(created);
        expect(await store.getUser('bob')).toEqual(created);
        expect((await store.listUsers()).map((u) => [u.username, u.disabled])).toEqual([['alice', false], ['bob', true]]);
      });

      it('keep_an_admin refuses to demote or disable the last enabled admin, atomically', async () => {
        await store.createUser(makeUser('root', { role: 'admin' }));
        await store.createUser(makeUser('ops', { role: 'admin', disabled: true }));
        expect(await store.updateUser('root', { role: 'user', keep_an_admin: true })).toBe(false);
        expect(await store.updateUser('root', { disabled: true, keep_an_admin: true })).toBe(false);
        expect(await store.getUser('root')).toMatchObject({ role: 'admin', disabled: false });
        expect(await store.updateUser('ops', { disabled: false })).toBe(true);
        // Two admins demoting each other at once: exactly one succeeds.
        const results = await Promise.all([
          store.updateUser('root', { role: 'user', keep_an_admin: true }),
          store.updateUser('ops', { role: 'user', keep_an_admin: true }),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
        const admins = (await store.listUsers()).filter((u) => u.role === 'admin' && !u.disabled);
        expect(admins).toHaveLength(1);
      });

      it('generates a unique id and token version 0 when a new user brings none, and refuses a duplicate id', async () => {
        const { id: _id, token_version: _version, ...bare } = makeUser('alice');
        await store.createUser(bare);
        await store.createUser({ ...bare, username: 'bob' });
        const [alice, bob] = [await store.getUser('alice'), await store.getUser('bob')];
        expect(alice).toMatchObject({ ...bare, token_version: 0 });
        expect(alice?.id).toMatch(/^[0-9a-f]{32}$/);
        expect(bob?.id).toMatch(/^[0-9a-f]{32}$/);
        expect(bob?.id).not.toBe(alice?.id);
        await expectSentinelError(store.createUser(makeUser('carol', { id: alice?.id ?? '' })), 'conflict', 'already exists');
        expect(await store.getUser('carol')).toBeNull();
      });

      it('bumps token_version atomically, even under concurrent updates, and never changes the id', async () => {
        await store.createUser(makeUser('alice'));
        expect(await store.updateUser('alice', { password_hash: 'scrypt$new', bump_token_version: true })).toBe(true);
        expect(await store.getUser('alice')).toEqual(makeUser('alice', { password_hash: 'scrypt$new', token_version: 1 }));
        // A patch without the flag leaves the version alone.
        expect(await store.updateUser('alice', { can_push: true })).toBe(true);
        expect((await store.getUser('alice'))?.token_version).toBe(1);
        const bumps = await Promise.all(Array.from({ length: 5 }, () => store.updateUser('alice', { bump_token_version: true })));
        expect(bumps).toEqual([true, true, true, true, true]);
        expect(await store.getUser('alice')).toMatchObject({ id: 'id-of-alice', token_version: 6 });
        expect(await store.updateUser('nobody', { bump_token_version: true })).toBe(false);
      });

      it('a user deleted and created again under the same name is a new account', async () => {
        await store.createUser(makeUser('alice', { token_version: 3 }));
        expect(await store.deleteUser('alice')).toBe(true);
        const { id: _id, token_version: _version, ...bare } = makeUser('alice');
        await store.createUser(bare);
        const again = await store.getUser('alice');
        expect(again?.id).not.toBe('id-of-alice');
        expect(again?.token_version).toBe(0);
      });

      it('deleting a user deletes their agents with their logs and events, and nothing of others', async () => {
        const mine = await seedAgent('a1', 'alice');
        await store.createUser(makeUser('bob'));
        const theirs = makeAgent('b1', 'bob', mine.image_id);
        await store.createAgent(theirs);
        for (const id of ['a1', 'b1']) {
          await store.appendLogs(id, [makeLog(id, 1, 'info', 'hello')]);
          await store.appendEvents(id, [makeEvent(id, 1)]);
        }

        expect(await store.deleteUser('alice')).toBe(true);
        expect(await store.getUser('alice')).toBeNull();
        expect(await store.getAgent('a1')).toBeNull();
        expect(await store.listLogs('a1')).toEqual([]);
        expect(await store.listEvents('a1', 0)).toEqual([]);
        expect(await store.firstEventSeq('a1')).toBe(0);

        expect(await store.getAgent('b1')).toEqual(theirs);
        expect(await store.listLogs('b1')).toHaveLength(1);
        expect(await store.listEvents('b1', 0)).toHaveLength(1);
        expect(await store.countAgentsUsingImage(mine.image_id)).toBe(1);
        expect(await store.deleteUser('alice')).toBe(false);
      });
    });

    describe('external identities', () => {
      const issuer = 'https://issuer.example.com/realms/sentinel';

      it('creates a user with its identity link in one step and finds it by (issuer, subject) only', async () => {
        expect(await store.getIdentityUser({ issuer, subject: 'sub-1' })).toBeNull();
        const user = makeUser('ext-1');
        await store.createIdentityUser({ issuer, subject: 'sub-1' }, user);
        expect(await store.getIdentityUser({ issuer, subject: 'sub-1' })).toEqual(user);
        expect(await store.getUser('ext-1')).toEqual(user);
        // Same subject at another issuer, or another subject: not linked.
        expect(await store.getIdentityUser({ issuer: `${issuer}/other`, subject: 'sub-1' })).toBeNull();
        expect(await store.getIdentityUser({ issuer, subject: 'sub-2' })).toBeNull();
      });

      it('refuses a taken username or an identity already linked with conflict, writing nothing', async () => {
        await store.createUser(makeUser('alice'));
        await expectSentinelError(store.createIdentityUser({ issuer, subject: 'sub-a' }, makeUser('alice', { id: 'id-other' })), 'conflict', 'alice');
        expect(await store.getIdentityUser({ issuer, subject: 'sub-a' })).toBeNull();

        await store.createIdentityUser({ issuer, subject: 'sub-a' }, makeUser('ext-a'));
        await expectSentinelError(store.createIdentityUser({ issuer, subject: 'sub-a' }, makeUser('ext-b')), 'conflict', 'already linked');
        expect(await store.getUser('ext-b')).toBeNull();
        expect((await store.getIdentityUser({ issuer, subject: 'sub-a' }))?.username).toBe('ext-a');
      });

      it('deleting the user deletes its link, so the identity can be linked to a new account', async () => {
        await store.createIdentityUser({ issuer, subject: 'sub-d' }, makeUser('ext-d'));
        expect(await store.deleteUser('ext-d')).toBe(true);
        expect(await store.getIdentityUser({ issuer, subject: 'sub-d' })).toBeNull();
        await store.createIdentityUser({ issuer, subject: 'sub-d' }, makeUser('ext-d2'));
        expect((await store.getIdentityUser({ issuer, subject: 'sub-d' }))?.username).toBe('ext-d2');
      });
    });

    describe('agents', () => {
      it('round-trips every field, JSON columns as objects', async () => {
        const agent = await seedAgent();
        const got = await store.getAgent(agent.id);
        expect(got).toEqual(agent);
        expect(got?.parameters).toEqual({ temperature: 0.7, nested: { list: [1, 'two', null], flag: true } });
        expect(got?.environment).toEqual({ API_KEY: 'not-a-real-key', MODE: 'test' });
        expect(await store.getAgent('missing')).toBeNull();
      });

      it('rejects a duplicate id, and a duplicate name for the same owner, with conflict', async () => {
        const agent = await seedAgent();
        await expectSentinelError(store.createAgent({ ...agent, name: 'other-name' }), 'conflict', 'already exists');
        await expectSentinelError(store.createAgent({ ...agent, id: 'a2' }), 'conflict', 'already exists');
        await store.createUser(makeUser('bob'));
        await store.createAgent({ ...agent, id: 'b1', owner: 'bob' });
        expect((await store.listAgents()).map((a) => a.id).sort()).toEqual(['a1', 'b1']);
      });

      it('rejects an unknown owner or image with invalid_request', async () => {
        const agent = await seedAgent();
        await expectSentinelError(store.createAgent({ ...agent, id: 'x1', name: 'x1', owner: 'ghost' }), 'invalid_request');
        await expectSentinelError(store.createAgent({ ...agent, id: 'x2', name: 'x2', image_id: sha256('no such manifest') }), 'invalid_request');
        expect(await store.getAgent('x1')).toBeNull();
        expect(await store.getAgent('x2')).toBeNull();
      });

      it('refuses a value a constraint rejects with a fixed message that names no SQL', async () => {
        const agent = await seedAgent();
        const err: unknown = await store.createAgent({ ...agent, id: 'c1', name: 'c1', status: 'bogus' as AgentRecord['status'] }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isSentinelError(err) && err.code).toBe('invalid_request');
        expect((err as Error).message).toBe('invalid record: the store refused a value');
        expect(await store.getAgent('c1')).toBeNull();
      });

      it('lists newest first and filters by owner', async () => {
        const first = await seedAgent('a1', 'alice');
        await store.createUser(makeUser('bob'));
        // Inserted out of chronological order: the order must come from created_at.
        await store.createAgent(makeAgent('a3', 'alice', first.image_id, { created_at: at(30) }));
        await store.createAgent(makeAgent('b2', 'bob', first.image_id, { created_at: at(20) }));
        await store.createAgent(makeAgent('a2', 'alice', first.image_id, { created_at: at(10) }));

        expect((await store.listAgents()).map((a) => a.id)).toEqual(['a3', 'b2', 'a2', 'a1']);
        expect((await store.listAgents({})).map((a) => a.id)).toEqual(['a3', 'b2', 'a2', 'a1']);
        expect((await store.listAgents({ owner: 'alice' })).map((a) => a.id)).toEqual(['a3', 'a2', 'a1']);
        expect(await store.listAgents({ owner: 'bob' })).toEqual([makeAgent('b2', 'bob', first.image_id, { created_at: at(20) })]);
        expect(await store.listAgents({ owner: 'nobody' })).toEqual([]);
      });

      it('finds agents by owner, exact name and id prefix, newest first, bounded by limit', async () => {
        const first = await seedAgent('abc001', 'alice');
        await store.createUser(makeUser('bob'));
        await store.createAgent(makeAgent('abc002', 'alice', first.image_id, { name: 'helper', created_at: at(20) }));
        await store.createAgent(makeAgent('abd003', 'bob', first.image_id, { name: 'helper', created_at: at(10) }));
        await store.createAgent(makeAgent('ff0004', 'bob', first.image_id, { name: 'Helper', created_at: at(30) }));

        const ids = async (query: Parameters<Store['findAgents']>[0]) => (await store.findAgents(query)).map((a) => a.id);
        expect(await ids({ name: 'helper' })).toEqual(['abc002', 'abd003']);
        expect(await ids({ name: 'helper', owner: 'bob' })).toEqual(['abd003']);
        expect(await ids({ name: 'help' })).toEqual([]);
        expect(await ids({ idPrefix: 'ab' })).toEqual(['abc002', 'abd003', 'abc001']);
        expect(await ids({ idPrefix: 'abc' })).toEqual(['abc002', 'abc001']);
        expect(await ids({ idPrefix: 'ab', owner: 'bob' })).toEqual(['abd003']);
        expect(await ids({ idPrefix: 'abc002' })).toEqual(['abc002']);
        expect(await ids({ idPrefix: 'ab', limit: 2 })).toEqual(['abc002', 'abd003']);
        // Not hex: no generated id can start with it, and it never reaches the range bounds.
        expect(await ids({ idPrefix: 'a%' })).toEqual([]);
        expect(await ids({ idPrefix: 'zz' })).toEqual([]);
        expect(await store.findAgents({ name: 'helper', owner: 'alice' })).toEqual([makeAgent('abc002', 'alice', first.image_id, { name: 'helper', created_at: at(20) })]);
      });

      it('updates status, name and updated_at, returning the whole record', async () => {
        const agent = await seedAgent();
        const running = await store.updateAgent(agent.id, { status: 'running', updated_at: at(5) });
        expect(running).toEqual({ ...agent, status: 'running', updated_at: at(5) });
        expect(await store.getAgent(agent.id)).toEqual(running);

        const renamed = await store.updateAgent(agent.id, { name: 'renamed' });
        expect(renamed).toEqual({ ...agent, status: 'running', updated_at: at(5), name: 'renamed' });
        expect(await store.updateAgent('missing', { status: 'stopped' })).toBeNull();
      });

      it('rejects renaming onto another agent name of the same owner with conflict', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id, { name: 'taken' }));
        await expectSentinelError(store.updateAgent(agent.id, { name: 'taken' }), 'conflict', 'already exists');
        expect((await store.getAgent(agent.id))?.name).toBe(agent.name);
      });

      it('accumulates usage atomically: 50 concurrent additions sum exactly', async () => {
        const agent = await seedAgent();
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.addAgentUsage(agent.id, 1, i + 1, at(100 + i))));
        expect(results.every((r) => r !== null && r.id === agent.id)).toBe(true);
        const got = await store.getAgent(agent.id);
        expect(got?.usage_requests).toBe(50);
        expect(got?.usage_tokens).toBe((50 * 51) / 2);
        // Everything but the counters and updated_at is untouched.
        expect({ ...got, usage_requests: 0, usage_tokens: 0, updated_at: agent.updated_at }).toEqual(agent);

        const next = await store.addAgentUsage(agent.id, 2, 10, at(999));
        expect(next).toMatchObject({ usage_requests: 52, usage_tokens: 1285, updated_at: at(999) });
        expect(await store.addAgentUsage('missing', 1, 1, at(1))).toBeNull();
      });

      it('deletes an agent with its logs and events, and reports unknown ids', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        for (const id of ['a1', 'a2']) {
          await store.appendLogs(id, [makeLog(id, 1, 'info', 'one'), makeLog(id, 2, 'error', 'two')]);
          await store.appendEvents(id, [makeEvent(id, 1), makeEvent(id, 2)]);
        }
        expect(await store.deleteAgent('a1')).toBe(true);
        expect(await store.getAgent('a1')).toBeNull();
        expect(await store.listLogs('a1')).toEqual([]);
        expect(await store.listEvents('a1', 0)).toEqual([]);
        expect(await store.firstEventSeq('a1')).toBe(0);
        expect(await store.listLogs('a2')).toHaveLength(2);
        expect(await store.listEvents('a2', 0)).toHaveLength(2);
        expect(await store.deleteAgent('a1')).toBe(false);
        expect(await store.getUser('alice')).not.toBeNull();
      });

      it('counts the agents using an image', async () => {
        const agent = await seedAgent();
        const other = makeImage('other');
        await store.putImage(other, []);
        expect(await store.countAgentsUsingImage(agent.image_id)).toBe(1);
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        expect(await store.countAgentsUsingImage(agent.image_id)).toBe(2);
        expect(await store.countAgentsUsingImage(other.digest)).toBe(0);
        expect(await store.countAgentsUsingImage(sha256('unknown'))).toBe(0);
        await store.deleteAgent('a2');
        expect(await store.countAgentsUsingImage(agent.image_id)).toBe(1);
      });
    });

    describe('images', () => {
      it('round-trips the exact bytes and returns tags sorted', async () => {
        const image = makeImage('one', at(7));
        await store.putImage(image, ['zeta:1', 'alpha:latest', 'mid:2']);
        const got = await store.getImage(image.digest);
        expect(got).toEqual({ ...image, tags: ['alpha:latest', 'mid:2', 'zeta:1'] });
        expect(got?.manifest).toBe(image.manifest);
        expect(got?.config).toBe(image.config);
        expect(await store.getImage(sha256('missing'))).toBeNull();
      });

      it('is idempotent by digest: putting again keeps one image and adds the new tags', async () => {
        const image = makeImage('one', at(1));
        await store.putImage(image, ['one:1']);
        await store.putImage(image, ['one:1']);
        await store.putImage(image, ['one:latest']);
        const images = await store.listImages();
        expect(images).toHaveLength(1);
        expect(images[0]).toEqual({ ...image, tags: ['one:1', 'one:latest'] });
      });

      it('moves a tag from the image that had it to the new one', async () => {
        const v1 = makeImage('v1', at(1));
        const v2 = makeImage('v2', at(2));
        await store.putImage(v1, ['app:latest', 'app:1']);
        expect(await store.resolveTag('app:latest')).toBe(v1.digest);
        await store.putImage(v2, ['app:latest', 'app:2']);
        expect(await store.resolveTag('app:latest')).toBe(v2.digest);
        expect(await store.resolveTag('app:1')).toBe(v1.digest);
        expect((await store.getImage(v1.digest))?.tags).toEqual(['app:1']);
        expect((await store.getImage(v2.digest))?.tags).toEqual(['app:2', 'app:latest']);
        expect(await store.resolveTag('app:3')).toBeNull();
      });

      it('lists newest first, with tags', async () => {
        const old = makeImage('old', at(1));
        const mid = makeImage('mid', at(2));
        const young = makeImage('young', at(3));
        await store.putImage(mid, ['mid:1']);
        await store.putImage(young, []);
        await store.putImage(old, ['old:b', 'old:a']);
        expect(await store.listImages()).toEqual([
          { ...young, tags: [] },
          { ...mid, tags: ['mid:1'] },
          { ...old, tags: ['old:a', 'old:b'] },
        ]);
      });

      it('finds images by a digest hex prefix (short IDs)', async () => {
        const first = makeImage('first');
        await store.putImage(first, ['first:1']);
        // Find a second image whose digest shares the first hex digit, so a one-digit prefix matches both.
        let second = makeImage('second-0');
        for (let i = 1; second.digest[7] !== first.digest[7]; i++) second = makeImage(`second-${i}`);
        let unrelated = makeImage('unrelated-0');
        for (let i = 1; unrelated.digest[7] === first.digest[7]; i++) unrelated = makeImage(`unrelated-${i}`);
        await store.putImage(second, []);
        await store.putImage(unrelated, []);

        const hex = first.digest.slice('sha256:'.length);
        expect(await store.findImagesByDigestPrefix(hex.slice(0, 12))).toEqual([{ ...first, tags: ['first:1'] }]);
        expect(await store.findImagesByDigestPrefix(hex)).toEqual([{ ...first, tags: ['first:1'] }]);
        expect((await store.findImagesByDigestPrefix(hex.slice(0, 1))).map((i) => i.digest).sort()).toEqual([first.digest, second.digest].sort());
        const noMatch = hex.slice(0, 11) + (hex[11] === '0' ? '1' : '0');
        expect(await store.findImagesByDigestPrefix(noMatch)).toEqual([]);
        expect(await store.findImagesByDigestPrefix('not-hex%')).toEqual([]);
      });

      it('deletes an image with its tags and reports unknown digests', async () => {
        const image = makeImage('doomed');
        const kept = makeImage('kept');
        await store.putImage(image, ['doomed:1', 'doomed:latest']);
        await store.putImage(kept, ['kept:1']);
        expect(await store.deleteImage(image.digest)).toBe(true);
        expect(await store.getImage(image.digest)).toBeNull();
        expect(await store.resolveTag('doomed:1')).toBeNull();
        expect(await store.resolveTag('doomed:latest')).toBeNull();
        expect(await store.listImages()).toEqual([{ ...kept, tags: ['kept:1'] }]);
        expect(await store.deleteImage(image.digest)).toBe(false);
        // A deleted tag can point at another image afterwards.
        await store.putImage(kept, ['doomed:latest']);
        expect(await store.resolveTag('doomed:latest')).toBe(kept.digest);
      });

      it('refuses to delete an image in use by an agent with conflict, and keeps it whole', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        await expectSentinelError(store.deleteImage(agent.image_id), 'conflict', 'image is in use by 2 agent(s)');
        expect((await store.getImage(agent.image_id))?.tags).toEqual(['base:latest']);
        expect(await store.resolveTag('base:latest')).toBe(agent.image_id);

        await store.deleteAgent('a1');
        await expectSentinelError(store.deleteImage(agent.image_id), 'conflict', 'image is in use by 1 agent(s)');
        await store.deleteAgent('a2');
        expect(await store.deleteImage(agent.image_id)).toBe(true);
      });
    });

    describe('logs', () => {
      it('assigns consecutive seq numbers from 1, continuing across appends, and keeps fields', async () => {
        const agent = await seedAgent();
        expect(await store.appendLogs(agent.id, [])).toEqual([]);
        const first = await store.appendLogs(agent.id, [makeLog(agent.id, 1, 'info', 'one', { turn: 1, nested: { a: [1] } }), makeLog(agent.id, 2, 'debug', 'two')]);
        expect(first.map((l) => l.seq)).toEqual([1, 2]);
        expect(first[0]).toEqual({ agent_id: agent.id, seq: 1, timestamp: at(1), level: 'info', message: 'one', fields: { turn: 1, nested: { a: [1] } } });
        const second = await store.appendLogs(agent.id, [makeLog(agent.id, 3, 'warn', 'three'), makeLog(agent.id, 4, 'error', 'four'), makeLog(agent.id, 5, 'info', 'five')]);
        expect(second.map((l) => l.seq)).toEqual([3, 4, 5]);

        const all = await store.listLogs(agent.id);
        expect(all).toEqual([...first, ...second]);
        expect(all[0]?.fields).toEqual({ turn: 1, nested: { a: [1] } });
        expect(all[1]?.fields).toBeUndefined();
        expect(await store.listLogs('unknown')).toEqual([]);
      });

      it('numbers each agent independently', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        await store.appendLogs('a1', [makeLog('a1', 1, 'info', 'x'), makeLog('a1', 2, 'info', 'y')]);
        const other = await store.appendLogs('a2', [makeLog('a2', 1, 'info', 'z')]);
        expect(other.map((l) => [l.agent_id, l.seq])).toEqual([['a2', 1]]);
        expect((await store.listLogs('a1')).map((l) => l.message)).toEqual(['x', 'y']);
      });

      it('filters by since (inclusive), afterSeq, minimum level and tail, oldest first', async () => {
        const agent = await seedAgent();
        const levels = ['debug', 'info', 'warn', 'error', 'info', 'warn', 'debug', 'error'] as const;
        await store.appendLogs(agent.id, levels.map((level, i) => makeLog(agent.id, i * 10, level, `m${i + 1}`)));
        const seqs = async (query: Parameters<Store['listLogs']>[1]) => (await store.listLogs(agent.id, query)).map((l) => l.seq);

        expect(await seqs({})).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(await seqs({ since: at(50) })).toEqual([6, 7, 8]);
        expect(await seqs({ since: at(45) })).toEqual([6, 7, 8]);
        expect(await seqs({ since: at(1000) })).toEqual([]);
        expect(await seqs({ afterSeq: 6 })).toEqual([7, 8]);
        expect(await seqs({ afterSeq: 0 })).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(await seqs({ level: 'debug' })).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(await seqs({ level: 'info' })).toEqual([2, 3, 4, 5, 6, 8]);
        expect(await seqs({ level: 'warn' })).toEqual([3, 4, 6, 8]);
        expect(await seqs({ level: 'error' })).toEqual([4, 8]);
        expect(await seqs({ tail: 3 })).toEqual([6, 7, 8]);
        expect(await seqs({ tail: 100 })).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(await seqs({ tail: 0 })).toEqual([]);
        // tail counts matching lines only.
        expect(await seqs({ level: 'warn', tail: 2 })).toEqual([6, 8]);
        expect(await seqs({ since: at(20), level: 'info', tail: 3 })).toEqual([5, 6, 8]);
        expect(await seqs({ afterSeq: 2, since: at(0), level: 'error' })).toEqual([4, 8]);
      });

      it('refuses calendar dates that do not exist instead of rolling them over', async () => {
        const agent = await seedAgent();
        for (const since of ['2024-02-30T00:00:00Z', '2023-02-29T00:00:00Z', '2024-01-01T25:00:00Z', '2024-13-01T00:00:00Z']) {
          await expectSentinelError(store.listLogs(agent.id, { since }), 'invalid_request', 'since');
        }
        await expectSentinelError(store.appendLogs(agent.id, [{ ...makeLog(agent.id, 0, 'info', 'x'), timestamp: '2024-02-30T00:00:00Z' }]), 'invalid_request');
        expect(await store.listLogs(agent.id, { since: '2024-02-29T00:00:00Z' })).toEqual([]);
      });
    });

    describe('events', () => {
      it('assigns consecutive seq numbers from 1 and round-trips data', async () => {
        const agent = await seedAgent();
        expect(await store.appendEvents(agent.id, [])).toEqual([]);
        const first = await store.appendEvents(agent.id, [makeEvent(agent.id, 1), makeEvent(agent.id, 2), makeEvent(agent.id, 3)]);
        expect(first).toEqual([1, 2, 3].map((n) => ({ ...makeEvent(agent.id, n), seq: n })));
        const second = await store.appendEvents(agent.id, [makeEvent(agent.id, 4)]);
        expect(second.map((e) => e.seq)).toEqual([4]);
        expect(await store.listEvents(agent.id, 0)).toEqual([...first, ...second]);
      });

      it('numbers each agent independently', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        await store.appendEvents('a1', [makeEvent('a1', 1), makeEvent('a1', 2)]);
        const other = await store.appendEvents('a2', [makeEvent('a2', 1)]);
        expect(other.map((e) => [e.agent_id, e.seq])).toEqual([['a2', 1]]);
        expect((await store.appendEvents('a1', [makeEvent('a1', 3)])).map((e) => e.seq)).toEqual([3]);
      });

      it('gives concurrent appends distinct, gap-free seq numbers, each batch consecutive', async () => {
        const agent = await seedAgent();
        const batches = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.appendEvents(agent.id, [makeEvent(agent.id, i * 3), makeEvent(agent.id, i * 3 + 1), makeEvent(agent.id, i * 3 + 2)])),
        );
        for (const batch of batches) {
          const [a, b, c] = batch.map((e) => e.seq);
          expect([b, c]).toEqual([(a ?? 0) + 1, (a ?? 0) + 2]);
        }
        const all = batches.flat().map((e) => e.seq).sort((x, y) => x - y);
        expect(all).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      });

      it('lists after a seq, up to a limit that defaults to 1000', async () => {
        const agent = await seedAgent();
        await store.appendEvents(agent.id, Array.from({ length: 1005 }, (_, i) => makeEvent(agent.id, i)));
        const page = await store.listEvents(agent.id, 0);
        expect(page).toHaveLength(1000);
        expect(page[0]?.seq).toBe(1);
        expect(page[999]?.seq).toBe(1000);
        expect((await store.listEvents(agent.id, 1000)).map((e) => e.seq)).toEqual([1001, 1002, 1003, 1004, 1005]);
        expect((await store.listEvents(agent.id, 10, 3)).map((e) => e.seq)).toEqual([11, 12, 13]);
        expect(await store.listEvents(agent.id, 1005)).toEqual([]);
        expect(await store.listEvents('unknown', 0)).toEqual([]);
      });

      it('reports the first retained seq, 0 when none', async () => {
        const agent = await seedAgent();
        expect(await store.firstEventSeq(agent.id)).toBe(0);
        await store.appendEvents(agent.id, [makeEvent(agent.id, 1), makeEvent(agent.id, 2)]);
        expect(await store.firstEventSeq(agent.id)).toBe(1);
        expect(await store.firstEventSeq('unknown')).toBe(0);
      });

      it('reports the last assigned seq, 0 when none, pruned events included', async () => {
        const agent = await seedAgent();
        expect(await store.lastEventSeq(agent.id)).toBe(0);
        await store.appendEvents(agent.id, [makeEvent(agent.id, 1), makeEvent(agent.id, 2), makeEvent(agent.id, 3)]);
        expect(await store.lastEventSeq(agent.id)).toBe(3);
        await store.pruneEvents(agent.id, 0);
        expect(await store.listEvents(agent.id, 0)).toEqual([]);
        // The events stream anchors at it: after a prune it must not go back.
        expect(await store.lastEventSeq(agent.id)).toBe(3);
        expect(await store.lastEventSeq('unknown')).toBe(0);
        const [next] = await store.appendEvents(agent.id, [makeEvent(agent.id, 4)]);
        expect(await store.lastEventSeq(agent.id)).toBe(next?.seq);
      });
    });

    describe('event retention', () => {
      it('prunes all but the newest events, reporting how many went', async () => {
        const agent = await seedAgent();
        await store.appendEvents(agent.id, Array.from({ length: 10 }, (_, i) => makeEvent(agent.id, i + 1)));
        expect(await store.pruneEvents(agent.id, 3)).toBe(7);
        expect(await store.firstEventSeq(agent.id)).toBe(8);
        expect((await store.listEvents(agent.id, 0)).map((e) => e.seq)).toEqual([8, 9, 10]);
        expect((await store.listEvents(agent.id, 8)).map((e) => e.seq)).toEqual([9, 10]);
        // Nothing more to prune; a larger window deletes nothing either.
        expect(await store.pruneEvents(agent.id, 3)).toBe(0);
        expect(await store.pruneEvents(agent.id, 100)).toBe(0);
        expect(await store.pruneEvents('unknown', 0)).toBe(0);
      });

      it('never reuses a seq, even after every event was pruned', async () => {
        const agent = await seedAgent();
        await store.appendEvents(agent.id, [makeEvent(agent.id, 1), makeEvent(agent.id, 2), makeEvent(agent.id, 3)]);
        expect(await store.pruneEvents(agent.id, 1)).toBe(2);
        expect((await store.appendEvents(agent.id, [makeEvent(agent.id, 4)])).map((e) => e.seq)).toEqual([4]);
        expect(await store.pruneEvents(agent.id, 0)).toBe(2);
        expect(await store.listEvents(agent.id, 0)).toEqual([]);
        expect(await store.firstEventSeq(agent.id)).toBe(0);
        const next = await store.appendEvents(agent.id, [makeEvent(agent.id, 5), makeEvent(agent.id, 6)]);
        expect(next.map((e) => e.seq)).toEqual([5, 6]);
        expect(await store.firstEventSeq(agent.id)).toBe(5);
      });

      it('prunes one agent without touching another', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        for (const id of ['a1', 'a2']) await store.appendEvents(id, [1, 2, 3, 4].map((n) => makeEvent(id, n)));
        expect(await store.pruneEvents('a1', 1)).toBe(3);
        expect((await store.listEvents('a2', 0)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
        expect(await store.firstEventSeq('a2')).toBe(1);
      });

      it('rejects a negative or fractional keepLast with invalid_request and deletes nothing', async () => {
        const agent = await seedAgent();
        await store.appendEvents(agent.id, [makeEvent(agent.id, 1), makeEvent(agent.id, 2)]);
        await expectSentinelError(store.pruneEvents(agent.id, -1), 'invalid_request');
        await expectSentinelError(store.pruneEvents(agent.id, 0.5), 'invalid_request');
        expect(await store.listEvents(agent.id, 0)).toHaveLength(2);
      });

      it('starts numbering again from 1 for an agent deleted and created again under the same id', async () => {
        const agent = await seedAgent();
        await store.appendEvents(agent.id, [makeEvent(agent.id, 1), makeEvent(agent.id, 2)]);
        await store.pruneEvents(agent.id, 0);
        await store.deleteAgent(agent.id);
        await store.createAgent(agent);
        expect((await store.appendEvents(agent.id, [makeEvent(agent.id, 3)])).map((e) => e.seq)).toEqual([1]);
      });
    });

    describe('messages', () => {
      it('assigns consecutive seq from 1 and round-trips every field, optional ones only when set', async () => {
        const agent = await seedAgent();
        expect(await store.appendMessages(agent.id, [])).toEqual([]);
        const user = makeMessage(agent.id, 1, { message_id: 'msg-1' });
        const assistant = makeMessage(agent.id, 2, {
          content: '',
          message_id: 'resp-1',
          tool_calls: [{ id: 'call_1', name: 'calculator', arguments: { expression: '6*7', nested: { list: [1, null] } } }],
        });
        const tool = makeMessage(agent.id, 3, { role: 'tool', content: '{"result":42}', tool_call_id: 'call_1', tool_name: 'calculator' });
        const stored = await store.appendMessages(agent.id, [user, assistant, tool]);
        expect(stored).toEqual([
          { ...user, seq: 1 },
          { ...assistant, seq: 2 },
          { ...tool, seq: 3 },
        ]);
        const listed = await store.listMessages(agent.id);
        expect(listed).toEqual(stored);
        expect(Object.keys(listed[0] ?? {}).sort()).toEqual(['agent_id', 'content', 'created_at', 'message_id', 'role', 'seq']);
        expect(listed[1]?.tool_calls).toEqual([{ id: 'call_1', name: 'calculator', arguments: { expression: '6*7', nested: { list: [1, null] } } }]);
        const next = await store.appendMessages(agent.id, [makeMessage(agent.id, 4)]);
        expect(next.map((m) => m.seq)).toEqual([4]);
      });

      it('stores messages under the given agent and numbers each agent independently', async () => {
        const agent = await seedAgent();
        await store.createAgent(makeAgent('a2', 'alice', agent.image_id));
        await store.appendMessages('a1', [makeMessage('a1', 1), makeMessage('a1', 2)]);
        const other = await store.appendMessages('a2', [makeMessage('somebody-else', 1)]);
        expect(other.map((m) => [m.agent_id, m.seq])).toEqual([['a2', 1]]);
        expect((await store.listMessages('a1')).map((m) => m.content)).toEqual(['message 1', 'message 2']);
        expect(await store.listMessages('unknown')).toEqual([]);
      });

      it('lists the newest `limit` messages, oldest first', async () => {
        const agent = await seedAgent();
        await store.appendMessages(agent.id, Array.from({ length: 6 }, (_, i) => makeMessage(agent.id, i + 1)));
        const seqs = async (limit?: number) => (await store.listMessages(agent.id, limit === undefined ? {} : { limit })).map((m) => m.seq);
        expect(await seqs()).toEqual([1, 2, 3, 4, 5, 6]);
        expect(await seqs(2)).toEqual([5, 6]);
        expect(await seqs(100)).toEqual([1, 2, 3, 4, 5, 6]);
        expect(await seqs(0)).toEqual([]);
        await expectSentinelError(store.listMessages(agent.id, { limit: -1 }), 'invalid_request');
      });

      it('gives concurrent appends distinct, gap-free seq numbers, each batch consecutive', async () => {
        const agent = await seedAgent();
        const batches = await Promise.all(Array.from({ length: 10 }, (_, i) => store.appendMessages(agent.id, [makeMessage(agent.id, i), makeMessage(agent.id, i)])));
        for (const batch of batches) expect(batch[1]?.seq).toBe((batch[0]?.seq ?? 0) + 1);
        expect(batches.flat().map((m) => m.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      });

      it('rejects an unknown role with invalid_request and stores nothing of the batch', async () => {
        const agent = await seedAgent();
        const bad = { ...makeMessage(agent.id, 2), role: 'system' } as unknown as NewMessageRecord;
        await expectSentinelError(store.appendMessages(agent.id, [makeMessage(agent.id, 1), bad]), 'invalid_request');
        expect(await store.listMessages(agent.id)).toEqual([]);
      });

      it('reports the conversation size in messages and UTF-8 bytes', async () => {
        const agent = await seedAgent();
        expect(await store.conversationStats(agent.id)).toEqual({ messages: 0, bytes: 0 });
        // 'é' is 2 bytes and '😀' 4 in UTF-8: bytes, not characters.
        await store.appendMessages(agent.id, [makeMessage(agent.id, 1, { content: 'héllo' }), makeMessage(agent.id, 2, { content: '😀' }), makeMessage(agent.id, 3, { content: '' })]);
        expect(await store.conversationStats(agent.id)).toEqual({ messages: 3, bytes: 6 + 4 });
        expect(await store.conversationStats('unknown')).toEqual({ messages: 0, bytes: 0 });
      });

      it('deletes the conversation with the agent, and with its owner', async () => {
        const agent = await seedAgent();
        await store.createUser(makeUser('bob'));
        await store.createAgent(makeAgent('b1', 'bob', agent.image_id));
        for (const id of ['a1', 'b1']) await store.appendMessages(id, [makeMessage(id, 1), makeMessage(id, 2)]);
        expect(await store.deleteAgent('a1')).toBe(true);
        expect(await store.listMessages('a1')).toEqual([]);
        expect(await store.conversationStats('a1')).toEqual({ messages: 0, bytes: 0 });
        expect(await store.listMessages('b1')).toHaveLength(2);
        expect(await store.deleteUser('bob')).toBe(true);
        expect(await store.listMessages('b1')).toEqual([]);
      });
    });

    describe('repositories', () => {
      it('claims a repository once: the first claim wins and later claims get the stored record', async () => {
        const mine = { name: 'demo/helper', owner: 'alice', visibility: 'public' as const, created_at: at(1) };
        expect(await store.getRepository('demo/helper')).toBeNull();
        expect(await store.claimRepository(mine)).toEqual(mine);
        expect(await store.claimRepository({ name: 'demo/helper', owner: 'bob', visibility: 'private', created_at: at(2) })).toEqual(mine);
        expect(await store.getRepository('demo/helper')).toEqual(mine);
      });

      it('gives concurrent claims of one name a single winner', async () => {
        const claims = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.claimRepository({ name: 'race/one', owner: `user${i}`, visibility: 'public', created_at: at(i) })),
        );
        const owners = new Set(claims.map((c) => c.owner));
        expect(owners.size).toBe(1);
        expect((await store.getRepository('race/one'))?.owner).toBe(claims[0]?.owner);
      });

      it('lists sorted by name and updates visibility, reporting unknown names', async () => {
        await store.claimRepository({ name: 'zeta', owner: 'alice', visibility: 'public', created_at: at(1) });
        await store.claimRepository({ name: 'alpha/x', owner: 'bob', visibility: 'private', created_at: at(2) });
        expect((await store.listRepositories()).map((r) => r.name)).toEqual(['alpha/x', 'zeta']);
        expect(await store.updateRepository('zeta', { visibility: 'private' })).toEqual({ name: 'zeta', owner: 'alice', visibility: 'private', created_at: at(1) });
        expect(await store.updateRepository('zeta', {})).toMatchObject({ visibility: 'private' });
        expect((await store.getRepository('zeta'))?.visibility).toBe('private');
        expect(await store.updateRepository('missing', { visibility: 'public' })).toBeNull();
      });
    });

    describe('audit log', () => {
      it('numbers appended entries with increasing seq in call order and returns them as stored', async () => {
        const first = await store.appendAudit([makeAudit(1, { details: { role: 'user', nested: { list: [1, 'two', null], flag: true } } })]);
        const more = await store.appendAudit([makeAudit(2, { actor: null, action: 'auth.login_failed', target: 'user:nobody' }), makeAudit(3, { target: null, address: null, request_id: null })]);
        expect(first).toEqual([{ ...makeAudit(1), seq: expect.any(Number), details: { role: 'user', nested: { list: [1, 'two', null], flag: true } } }]);
        const seqs = [...first, ...more].map((entry) => entry.seq);
        expect(seqs[0]).toBeGreaterThan(0);
        expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
        expect(new Set(seqs).size).toBe(3);
        expect(more[0]).toMatchObject({ actor: null, action: 'auth.login_failed', details: {} });
        expect(more[1]).toMatchObject({ target: null, address: null, request_id: null });
        // What was returned is what a reader sees.
        expect(await store.listAudit()).toEqual([...first, ...more]);
        expect(await store.appendAudit([])).toEqual([]);
      });

      it('keeps the order and numbering of concurrent appends: every entry once, seq strictly increasing in list order', async () => {
        const batches = await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendAudit([makeAudit(i * 2), makeAudit(i * 2 + 1)])));
        for (const [a, b] of batches) expect((b?.seq ?? 0) - (a?.seq ?? 0)).toBe(1);
        const listed = await store.listAudit({ limit: 1000 });
        expect(listed).toHaveLength(40);
        expect(listed.map((entry) => entry.seq)).toEqual(batches.flat().map((entry) => entry.seq).sort((x, y) => x - y));
      });

      it('filters by actor and by action, pages by since with a limit, and stores canonical timestamps', async () => {
        const stored = await store.appendAudit([
          makeAudit(1, { actor: 'alice', action: 'auth.login' }),
          makeAudit(2, { actor: 'bob', action: 'auth.login' }),
          makeAudit(3, { actor: 'alice', action: 'auth.password_changed' }),
          makeAudit(4, { actor: null, action: 'auth.login_failed' }),
          makeAudit(5, { actor: 'alice', action: 'auth.login', at: '2025-01-01T01:00:00+01:00' }),
        ]);
        const seqOf = (i: number): number => stored[i]?.seq ?? -1;
        expect((await store.listAudit({ actor: 'alice' })).map((e) => e.seq)).toEqual([seqOf(0), seqOf(2), seqOf(4)]);
        expect((await store.listAudit({ action: 'auth.login' })).map((e) => e.seq)).toEqual([seqOf(0), seqOf(1), seqOf(4)]);
        expect((await store.listAudit({ actor: 'alice', action: 'auth.login' })).map((e) => e.seq)).toEqual([seqOf(0), seqOf(4)]);
        expect(await store.listAudit({ actor: 'nobody' })).toEqual([]);
        // Pages: since is exclusive, limit caps.
        const page1 = await store.listAudit({ limit: 2 });
        expect(page1.map((e) => e.seq)).toEqual([seqOf(0), seqOf(1)]);
        const page2 = await store.listAudit({ since: page1.at(-1)?.seq ?? 0, limit: 2 });
        expect(page2.map((e) => e.seq)).toEqual([seqOf(2), seqOf(3)]);
        expect((await store.listAudit({ since: seqOf(3), limit: 2 })).map((e) => e.seq)).toEqual([seqOf(4)]);
        expect(await store.listAudit({ since: seqOf(4) })).toEqual([]);
        expect((await store.listAudit({ since: seqOf(0), actor: 'alice', limit: 1 })).map((e) => e.seq)).toEqual([seqOf(2)]);
        expect(stored[4]?.at).toBe('2025-01-01T00:00:00.000Z');
        expect((await store.listAudit({ since: seqOf(3) }))[0]?.at).toBe('2025-01-01T00:00:00.000Z');
        await expectSentinelError(store.listAudit({ limit: -1 }), 'invalid_request', 'limit');
        await expectSentinelError(store.listAudit({ since: 1.5 }), 'invalid_request', 'since');
        await expectSentinelError(store.appendAudit([makeAudit(1, { at: 'yesterday' })]), 'invalid_request', 'timestamp');
      });

      it('caps a page at 1000 entries and defaults to 100', async () => {
        await store.appendAudit(Array.from({ length: 1001 }, (_, i) => makeAudit(i)));
        expect(await store.listAudit()).toHaveLength(100);
        expect(await store.listAudit({ limit: 5000 })).toHaveLength(1000);
      });

      it('keeps entries when the user they name is deleted', async () => {
        await store.createUser(makeUser('alice'));
        await store.appendAudit([makeAudit(1, { actor: 'alice', action: 'auth.login', target: 'user:alice' })]);
        expect(await store.deleteUser('alice')).toBe(true);
        expect(await store.listAudit({ actor: 'alice' })).toHaveLength(1);
      });
    });

    describe('revoked tokens', () => {
      it('lists the unexpired ones, keeps one row per jti, and prunes the expired', async () => {
        const now = 1_900_000_000_000;
        expect(await store.listRevokedTokens(now)).toEqual([]);
        await store.addRevokedToken({ jti: 'j-live', username: 'alice', expires_at_ms: now + 60_000 });
        await store.addRevokedToken({ jti: 'j-live', username: 'alice', expires_at_ms: now + 60_000 });
        await store.addRevokedToken({ jti: 'j-old', username: 'bob', expires_at_ms: now - 1 });
        await store.addRevokedToken({ jti: 'j-edge', username: 'bob', expires_at_ms: now });
        expect(await store.listRevokedTokens(now)).toEqual([{ jti: 'j-live', username: 'alice', expires_at_ms: now + 60_000 }]);
        expect((await store.listRevokedTokens(now - 10)).map((r) => r.jti).sort()).toEqual(['j-edge', 'j-live', 'j-old']);
        expect(await store.pruneRevokedTokens(now)).toBe(2);
        expect(await store.pruneRevokedTokens(now)).toBe(0);
        expect((await store.listRevokedTokens(0)).map((r) => r.jti)).toEqual(['j-live']);
      });
    });

    describe('api keys', () => {
      function makeKey(id: string, userId: string, overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
        return {
          id,
          user_id: userId,
          username: 'alice',
          name: `key ${id}`,
          prefix: 'sk_sentinel_AbCd1234',
          hash: createHash('sha256').update(id).digest('hex'),
          scopes: ['agents:read', 'agents:chat'],
          created_at: at(1),
          last_used_at: null,
          expires_at: null,
          revoked_at: null,
          ...overrides,
        };
      }

      it('round-trips every field, looked up by hash and by id; unknown ones are null', async () => {
        await store.createUser(makeUser('alice'));
        const key = makeKey('key_1', 'id-of-alice', { expires_at: at(100), scopes: ['agents:read', 'keys:write', 'admin'] });
        await store.createApiKey(key);
        expect(await store.getApiKeyByHash(key.hash)).toEqual(key);
        expect(await store.getApiKey('key_1')).toEqual(key);
        expect(await store.getApiKeyByHash(createHash('sha256').update('other').digest('hex'))).toBeNull();
        expect(await store.getApiKey('key_missing')).toBeNull();
      });

      it('refuses a duplicate id or hash (conflict) and an unknown user id (invalid_request)', async () => {
        await store.createUser(makeUser('alice'));
        await store.createApiKey(makeKey('key_1', 'id-of-alice'));
        await expectSentinelError(store.createApiKey(makeKey('key_1', 'id-of-alice', { hash: 'f'.repeat(64) })), 'conflict');
        await expectSentinelError(store.createApiKey(makeKey('key_2', 'id-of-alice', { hash: makeKey('key_1', '').hash })), 'conflict');
        await expectSentinelError(store.createApiKey(makeKey('key_3', 'id-of-nobody')), 'invalid_request');
      });

      it("lists a user's unrevoked keys oldest first, counts only active ones, and revokes once", async () => {
        await store.createUser(makeUser('alice'));
        await store.createUser(makeUser('bob'));
        await store.createApiKey(makeKey('key_b', 'id-of-alice', { created_at: at(2) }));
        await store.createApiKey(makeKey('key_a', 'id-of-alice', { created_at: at(1), expires_at: at(50) }));
        await store.createApiKey(makeKey('key_c', 'id-of-alice', { created_at: at(3) }));
        await store.createApiKey(makeKey('key_bob', 'id-of-bob', { username: 'bob' }));
        expect((await store.listApiKeys('id-of-alice')).map((k) => k.id)).toEqual(['key_a', 'key_b', 'key_c']);
        expect(await store.countActiveApiKeys('id-of-alice', at(10))).toBe(3);
        // key_a expired at 50.
        expect(await store.countActiveApiKeys('id-of-alice', at(60))).toBe(2);
        expect(await store.revokeApiKey('key_b', at(20))).toBe(true);
        expect(await store.revokeApiKey('key_b', at(21))).toBe(false);
        expect(await store.revokeApiKey('key_missing', at(21))).toBe(false);
        expect((await store.getApiKey('key_b'))?.revoked_at).toBe(at(20));
        expect((await store.listApiKeys('id-of-alice')).map((k) => k.id)).toEqual(['key_a', 'key_c']);
        expect(await store.countActiveApiKeys('id-of-alice', at(10))).toBe(2);
        expect((await store.listApiKeys('id-of-bob')).map((k) => k.id)).toEqual(['key_bob']);
        expect(await store.listApiKeys('id-of-nobody')).toEqual([]);
      });

      it('records uses in a batch, only ever moving last_used_at forward, ignoring unknown ids', async () => {
        await store.createUser(makeUser('alice'));
        await store.createApiKey(makeKey('key_1', 'id-of-alice'));
        await store.createApiKey(makeKey('key_2', 'id-of-alice'));
        await store.touchApiKeys([]);
        await store.touchApiKeys([
          { id: 'key_1', last_used_at: at(10) },
          { id: 'key_2', last_used_at: at(11) },
          { id: 'key_missing', last_used_at: at(12) },
        ]);
        expect((await store.getApiKey('key_1'))?.last_used_at).toBe(at(10));
        expect((await store.getApiKey('key_2'))?.last_used_at).toBe(at(11));
        await store.touchApiKeys([{ id: 'key_1', last_used_at: at(5) }, { id: 'key_2', last_used_at: at(30) }]);
        expect((await store.getApiKey('key_1'))?.last_used_at).toBe(at(10));
        expect((await store.getApiKey('key_2'))?.last_used_at).toBe(at(30));
      });

      it("deleting the user deletes the user's keys", async () => {
        await store.createUser(makeUser('alice'));
        const key = makeKey('key_1', 'id-of-alice');
        await store.createApiKey(key);
        expect(await store.deleteUser('alice')).toBe(true);
        expect(await store.getApiKeyByHash(key.hash)).toBeNull();
        expect(await store.getApiKey('key_1')).toBeNull();
      });
    });

    describe('runs', () => {
      it('creates a run and reads it back exactly, API fields only; refuses an unknown agent and a taken id', async () => {
        await seedAgent();
        const run = makeRun('run_1', 'a1', 5, { webhook: 'https://hooks.example.com/x', idempotency_key: 'k1', request_hash: 'ab'.repeat(32), instance_id: 'i-1' });
        const result = await store.createRun(run, runOptions(5));
        expect(result).toEqual({ created: true, run: storedRun(run) });
        expect(await store.getRun('run_1')).toEqual(storedRun(run));
        expect(await store.getRun('run_missing')).toBeNull();
        await expectSentinelError(store.createRun(makeRun('run_2', 'nope', 5), runOptions(5)), 'invalid_request', 'nope');
        await expectSentinelError(store.createRun(makeRun('run_1', 'a1', 6), runOptions(6)), 'conflict');
        await expectSentinelError(store.createRun(makeRun('run_3', 'a1', 6, { status: 'bogus' as RunRecord['status'] }), runOptions(6)), 'invalid_request');
        expect(await store.getRun('run_2')).toBeNull();
        expect(await store.getRun('run_3')).toBeNull();
      });

      it('lists newest first, paging with before cursors without a gap or a duplicate over 120 runs', async () => {
        await seedAgent('a1');
        await seedAgent('a2');
        const ids: string[] = [];
        for (let i = 0; i < 120; i++) {
          const id = `run_${String(i).padStart(3, '0')}`;
          ids.push(id);
          await createdRun(store, makeRun(id, 'a1', i));
          // Another agent's runs interleave; they never show up in a1's pages.
          if (i % 10 === 0) await createdRun(store, makeRun(`run_other_${i}`, 'a2', i));
        }
        const seen: string[] = [];
        let before: string | undefined;
        for (let page = 0; page < 10; page++) {
          const runs = await store.listRuns('a1', { limit: 25, ...(before === undefined ? {} : { before }) });
          seen.push(...runs.map((r) => r.id));
          if (runs.length < 25) break;
          before = runs.at(-1)?.id;
        }
        expect(seen).toEqual(ids.slice().reverse());
        expect(new Set(seen).size).toBe(120);
        expect((await store.listRuns('a2', { limit: 100 })).map((r) => r.id)).toEqual(Array.from({ length: 12 }, (_, i) => `run_other_${(11 - i) * 10}`));
        // A cursor that is no run of this agent matches nothing (it never restarts from the newest).
        expect(await store.listRuns('a1', { limit: 10, before: 'run_other_0' })).toEqual([]);
        expect(await store.listRuns('a1', { limit: 10, before: 'run_missing' })).toEqual([]);
        expect(await store.listRuns('a1', { limit: 10, before: 'run_000' })).toEqual([]);
        expect(await store.listRuns('nobody', { limit: 10 })).toEqual([]);
        expect(await store.listRuns('a1', { limit: 0 })).toEqual([]);
        await expectSentinelError(store.listRuns('a1', { limit: -1 }), 'invalid_request', 'limit');
      });

      it('filters by status, paging within the filter', async () => {
        await seedAgent();
        for (let i = 0; i < 10; i++) await createdRun(store, makeRun(`run_${i}`, 'a1', i));
        for (const i of [1, 4, 5, 8]) expect(await store.updateRun(`run_${i}`, { status: 'completed', ended_at: at(100 + i) })).not.toBeNull();
        const completed = await store.listRuns('a1', { status: 'completed', limit: 3 });
        expect(completed.map((r) => r.id)).toEqual(['run_8', 'run_5', 'run_4']);
        expect((await store.listRuns('a1', { status: 'completed', limit: 3, before: 'run_4' })).map((r) => r.id)).toEqual(['run_1']);
        expect((await store.listRuns('a1', { status: 'queued', limit: 100 })).map((r) => r.id)).toEqual(['run_9', 'run_7', 'run_6', 'run_3', 'run_2', 'run_0']);
        // The cursor may be a run outside the filter: the page starts below it.
        expect((await store.listRuns('a1', { status: 'completed', limit: 10, before: 'run_7' })).map((r) => r.id)).toEqual(['run_5', 'run_4', 'run_1']);
        expect(await store.listRuns('a1', { status: 'failed', limit: 10 })).toEqual([]);
      });

      it('returns the existing run for an idempotency key inside the window, per agent, and a new run once the window passed', async () => {
        await seedAgent('a1');
        await seedAgent('a2');
        const first = await createdRun(store, makeRun('run_1', 'a1', 0, { idempotency_key: 'key', request_hash: 'h1' }), 0);
        // One second before the window ends: the same run comes back, nothing is written.
        const again = await store.createRun(makeRun('run_2', 'a1', 86_399, { idempotency_key: 'key', request_hash: 'h2' }), runOptions(86_399));
        expect(again).toEqual({ created: false, run: first, requestHash: 'h1' });
        expect(await store.getRun('run_2')).toBeNull();
        // Keys are per agent; no key never collides.
        await createdRun(store, makeRun('run_3', 'a2', 10, { idempotency_key: 'key' }), 10);
        await createdRun(store, makeRun('run_4', 'a1', 11), 11);
        await createdRun(store, makeRun('run_5', 'a1', 12), 12);
        // At the end of the window the key is free again: a new run takes it from the old one.
        const later = await store.createRun(makeRun('run_6', 'a1', 86_400, { idempotency_key: 'key', request_hash: 'h6' }), runOptions(86_400));
        expect(later.created).toBe(true);
        expect(later.run.id).toBe('run_6');
        const third = await store.createRun(makeRun('run_7', 'a1', 86_500, { idempotency_key: 'key' }), runOptions(86_500));
        expect(third).toEqual({ created: false, run: later.run, requestHash: 'h6' });
        // The old run stays, only without its key.
        expect(await store.getRun('run_1')).toEqual(first);
        // A short window (the nowMs and window arguments decide, not the clock).
        const short = { idempotencyWindowMs: 1000, nowMs: Date.parse(at(86_502)) };
        expect((await store.createRun(makeRun('run_8', 'a1', 86_502, { idempotency_key: 'key' }), short)).created).toBe(true);
        await expectSentinelError(store.createRun(makeRun('run_9', 'a1', 1, { idempotency_key: 'x' }), { idempotencyWindowMs: -1, nowMs: 0 }), 'invalid_request', 'idempotencyWindowMs');
      });

      it('creates exactly one run for 10 concurrent creates with the same key', async () => {
        await seedAgent();
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.createRun(makeRun(`run_${i}`, 'a1', 1, { idempotency_key: 'same', request_hash: `h${i}` }), runOptions(1))),
        );
        const created = results.filter((r) => r.created);
        expect(created).toHaveLength(1);
        const winner = created[0]?.run;
        for (const result of results) expect(result.run).toEqual(winner);
        const winnerHash = `h${winner?.id.slice('run_'.length) ?? ''}`;
        for (const result of results) if (!result.created) expect(result.requestHash).toBe(winnerHash);
        expect((await store.listRuns('a1', { limit: 100 })).map((r) => r.id)).toEqual([winner?.id]);
      });

      it('takes a key back from an expired holder exactly once under 10 concurrent creates', async () => {
        await seedAgent();
        await createdRun(store, makeRun('run_old', 'a1', 0, { idempotency_key: 'same' }), 0);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.createRun(makeRun(`run_${i}`, 'a1', 90_000, { idempotency_key: 'same' }), runOptions(90_000))),
        );
        const created = results.filter((r) => r.created);
        expect(created).toHaveLength(1);
        for (const result of results) expect(result.run.id).toBe(created[0]?.run.id);
        expect((await store.listRuns('a1', { limit: 100 })).map((r) => r.id).sort()).toEqual([created[0]?.run.id, 'run_old'].sort());
      });

      it('updates only the given fields, clears nullable ones with null, and reports unknown runs', async () => {
        await seedAgent();
        const run = await createdRun(store, makeRun('run_1', 'a1', 0));
        const action: RequiredAction = {
          type: 'tool_approval',
          requests: [{ request_id: 'req_1', call_id: 'call_1', tool: 'http_fetch', parameters: { url: 'https://example.com' } }],
          calls: [{ id: 'call_1', name: 'http_fetch', arguments: { url: 'https://example.com' } }],
          decisions: {},
          expires_at: at(600),
        };
        const running = await store.updateRun('run_1', { status: 'running', started_at: at(1), instance_id: 'i-1' });
        expect(running).toEqual({ ...run, status: 'running', started_at: at(1) });
        const waiting = await store.updateRun('run_1', { status: 'requires_action', required_action: action, usage: { input_tokens: 3, output_tokens: 4, total_tokens: 7 }, last_seq: 9 });
        expect(waiting).toEqual({ ...run, status: 'requires_action', started_at: at(1), required_action: action, usage: { input_tokens: 3, output_tokens: 4, total_tokens: 7 }, last_seq: 9 });
        // last_seq never goes down; null clears required_action.
        const done = await store.updateRun('run_1', {
          status: 'completed',
          required_action: null,
          output: { content: 'all done', reason: 'stop' },
          ended_at: at(20),
          last_seq: 4,
        });
        expect(done).toEqual({ ...run, status: 'completed', started_at: at(1), usage: { input_tokens: 3, output_tokens: 4, total_tokens: 7 }, output: { content: 'all done', reason: 'stop' }, ended_at: at(20), last_seq: 9 });
        expect(await store.getRun('run_1')).toEqual(done);
        const failed = await store.updateRun('run_1', { status: 'failed', error: { code: 'interrupted', message: 'the server restarted' }, output: null });
        expect(failed?.error).toEqual({ code: 'interrupted', message: 'the server restarted' });
        expect(failed?.output).toBeNull();
        expect(await store.updateRun('run_1', {})).toEqual(failed);
        expect(await store.updateRun('run_missing', { status: 'cancelled' })).toBeNull();
        await expectSentinelError(store.updateRun('run_1', { status: 'bogus' as RunRecord['status'] }), 'invalid_request');
        await expectSentinelError(store.updateRun('run_1', { ended_at: 'yesterday' }), 'invalid_request', 'ended_at');
        expect(await store.getRun('run_1')).toEqual(failed);
      });

      it('applies a transition with fromStatus only from those statuses: of two concurrent ones exactly one wins', async () => {
        await seedAgent();
        await createdRun(store, makeRun('run_1', 'a1', 0));
        const [a, b] = await Promise.all([
          store.updateRun('run_1', { status: 'running', instance_id: 'i-a', started_at: at(1) }, { fromStatus: ['queued'] }),
          store.updateRun('run_1', { status: 'cancelled', ended_at: at(1) }, { fromStatus: ['queued'] }),
        ]);
        expect([a === null, b === null].sort()).toEqual([false, true]);
        const winner = a ?? b;
        expect(await store.getRun('run_1')).toEqual(winner);
        // A terminal run refuses a late transition and stays as it is.
        await store.updateRun('run_1', { status: 'completed', ended_at: at(2) }, { fromStatus: ['running'] });
        expect(await store.updateRun('run_1', { status: 'failed' }, { fromStatus: ['queued', 'running', 'requires_action'] })).toBeNull();
        expect((await store.getRun('run_1'))?.status).toBe(winner?.status === 'running' ? 'completed' : 'cancelled');
        expect(await store.updateRun('run_1', { status: 'failed' }, { fromStatus: [] })).toBeNull();
        expect(await store.updateRun('run_missing', { status: 'failed' }, { fromStatus: ['queued'] })).toBeNull();
      });

      it('gives 10 concurrent transitions from the same status exactly one winner', async () => {
        await seedAgent();
        await createdRun(store, makeRun('run_1', 'a1', 0));
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.updateRun('run_1', { status: 'running', instance_id: `i-${i}` }, { fromStatus: ['queued'] })));
        expect(results.filter((r) => r !== null)).toHaveLength(1);
      });

      it('journals frames as exact text, lists them after a seq up to a limit, and raises last_seq', async () => {
        await seedAgent();
        await createdRun(store, makeRun('run_1', 'a1', 0));
        await createdRun(store, makeRun('run_2', 'a1', 0));
        // Whitespace and key order are kept: the journal hands back the bytes that were sent.
        const frames = Array.from({ length: 30 }, (_, i) => ({ seq: i + 1, json: `{"type":"stream_chunk", "seq":${i + 1},"content":"é ${i}"}` }));
        await store.appendRunFrames('run_1', frames.slice(0, 10));
        await store.appendRunFrames('run_1', frames.slice(10));
        await store.appendRunFrames('run_2', [{ seq: 1, json: '{"other":true}' }]);
        await store.appendRunFrames('run_1', []);
        expect(await store.listRunFrames('run_1', 0)).toEqual(frames);
        expect(await store.listRunFrames('run_1', 25)).toEqual(frames.slice(25));
        expect(await store.listRunFrames('run_1', 5, 3)).toEqual(frames.slice(5, 8));
        expect(await store.listRunFrames('run_1', 30)).toEqual([]);
        expect(await store.listRunFrames('run_2', 0)).toEqual([{ seq: 1, json: '{"other":true}' }]);
        expect(await store.listRunFrames('run_missing', 0)).toEqual([]);
        expect((await store.getRun('run_1'))?.last_seq).toBe(30);
        expect((await store.getRun('run_2'))?.last_seq).toBe(1);
        // A later update with a lower last_seq does not lower it.
        expect((await store.updateRun('run_1', { last_seq: 3 }))?.last_seq).toBe(30);
      });

      it('refuses a taken seq with conflict, writing nothing of the batch, and drops frames of an unknown run', async () => {
        await seedAgent();
        await createdRun(store, makeRun('run_1', 'a1', 0));
        await store.appendRunFrames('run_1', [{ seq: 1, json: '{"n":1}' }, { seq: 2, json: '{"n":2}' }]);
        await expectSentinelError(store.appendRunFrames('run_1', [{ seq: 3, json: '{"n":3}' }, { seq: 2, json: '{"again":true}' }, { seq: 4, json: '{"n":4}' }]), 'conflict');
        expect(await store.listRunFrames('run_1', 0)).toEqual([{ seq: 1, json: '{"n":1}' }, { seq: 2, json: '{"n":2}' }]);
        expect((await store.getRun('run_1'))?.last_seq).toBe(2);
        await expectSentinelError(store.appendRunFrames('run_1', [{ seq: 0, json: '{}' }]), 'invalid_request', 'seq');
        await expectSentinelError(store.appendRunFrames('run_1', [{ seq: 1.5, json: '{}' }]), 'invalid_request', 'seq');
        await expect(store.appendRunFrames('run_missing', [{ seq: 1, json: '{}' }])).resolves.toBeUndefined();
        expect(await store.listRunFrames('run_missing', 0)).toEqual([]);
        await expectSentinelError(store.listRunFrames('run_1', -1), 'invalid_request', 'afterSeq');
      });

      it('stores a batch with gaps or out of order by seq, and refuses a seq inside a stored batch, a seq twice and a raw newline', async () => {
        await seedAgent();
        await createdRun(store, makeRun('run_1', 'a1', 0));
        const f = (seq: number) => ({ seq, json: `{"n":${seq}}` });
        // 3..5 and 8..9 (a gap) out of order, then 6 into the gap.
        await store.appendRunFrames('run_1', [f(4), f(3), f(9), f(5), f(8)]);
        await store.appendRunFrames('run_1', [f(6)]);
        expect(await store.listRunFrames('run_1', 0)).toEqual([f(3), f(4), f(5), f(6), f(8), f(9)]);
        expect(await store.listRunFrames('run_1', 4, 3)).toEqual([f(5), f(6), f(8)]);
        expect(await store.listRunFrames('run_1', 7)).toEqual([f(8), f(9)]);
        expect(await store.listRunFrames('run_1', 0, 0)).toEqual([]);
        // 4 lies inside the stored 3..5; 7 (free) must not be written with it.
        await expectSentinelError(store.appendRunFrames('run_1', [f(7), f(4)]), 'conflict');
        await expectSentinelError(store.appendRunFrames('run_1', [f(7), f(7)]), 'conflict');
        await expectSentinelError(store.appendRunFrames('run_1', [f(1), f(2), f(3), f(10)]), 'conflict');
        await expectSentinelError(store.appendRunFrames('run_1', [{ seq: 7, json: '{\n"n":7}' }]), 'invalid_request', 'newline');
        expect(await store.listRunFrames('run_1', 0)).toEqual([f(3), f(4), f(5), f(6), f(8), f(9)]);
        expect((await store.getRun('run_1'))?.last_seq).toBe(9);
        await store.appendRunFrames('run_1', [f(1), f(2), f(7), f(10)]);
        expect((await store.listRunFrames('run_1', 0)).map((frame) => frame.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      });

      it('finds runs by status, agent, instance and approval expiry, oldest first, bounded by limit', async () => {
        await seedAgent('a1');
        await seedAgent('a2');
        const action = (expiresAt: string): RequiredAction => ({ type: 'tool_approval', requests: [], calls: [], decisions: {}, expires_at: expiresAt });
        await createdRun(store, makeRun('run_1', 'a1', 1, { instance_id: 'i-1' }));
        await createdRun(store, makeRun('run_2', 'a1', 2, { instance_id: 'i-2' }));
        await createdRun(store, makeRun('run_3', 'a2', 3, { instance_id: 'i-1' }));
        await createdRun(store, makeRun('run_4', 'a2', 4));
        await createdRun(store, makeRun('run_5', 'a1', 5));
        await store.updateRun('run_1', { status: 'running' });
        await store.updateRun('run_3', { status: 'running' });
        await store.updateRun('run_2', { status: 'requires_action', required_action: action(at(100)) });
        // Another offset, same instant: compared as the instant, not as the text given.
        await store.updateRun('run_4', { status: 'requires_action', required_action: action('2025-01-01T01:00:50+01:00') });
        await store.updateRun('run_5', { status: 'completed', ended_at: at(6) });
        const ids = (runs: RunRecord[]) => runs.map((r) => r.id);
        expect(ids(await store.findRuns({ status: ['running'] }))).toEqual(['run_1', 'run_3']);
        expect(ids(await store.findRuns({ status: ['running', 'requires_action'] }))).toEqual(['run_1', 'run_2', 'run_3', 'run_4']);
        expect(ids(await store.findRuns({ status: ['running', 'queued'], instanceId: 'i-1' }))).toEqual(['run_1', 'run_3']);
        expect(ids(await store.findRuns({ status: ['running', 'requires_action'], agentId: 'a2' }))).toEqual(['run_3', 'run_4']);
        expect(ids(await store.findRuns({ status: ['requires_action'], expiresBefore: at(60) }))).toEqual(['run_4']);
        expect(ids(await store.findRuns({ status: ['requires_action'], expiresBefore: at(50) }))).toEqual([]);
        expect(ids(await store.findRuns({ status: ['requires_action'], expiresBefore: at(101) }))).toEqual(['run_2', 'run_4']);
        expect(ids(await store.findRuns({ status: ['running', 'requires_action'], limit: 2 }))).toEqual(['run_1', 'run_2']);
        expect(ids(await store.findRuns({ status: ['completed'] }))).toEqual(['run_5']);
        expect(await store.findRuns({ status: [] })).toEqual([]);
        expect((await store.getRun('run_4'))?.required_action?.expires_at).toBe(at(50));
        await expectSentinelError(store.findRuns({ status: ['running'], expiresBefore: 'soon' }), 'invalid_request', 'expiresBefore');
      });

      it('prunes the frames of runs that ended before an instant, keeping the runs and other frames', async () => {
        await seedAgent();
        for (const id of ['run_1', 'run_2', 'run_3']) {
          await createdRun(store, makeRun(id, 'a1', 0));
          await store.appendRunFrames(id, [{ seq: 1, json: '{"a":1}' }, { seq: 2, json: '{"a":2}' }]);
        }
        await store.updateRun('run_1', { status: 'completed', ended_at: at(10) });
        await store.updateRun('run_2', { status: 'failed', ended_at: at(30) });
        expect(await store.pruneRunFrames(at(20))).toBe(2);
        expect(await store.listRunFrames('run_1', 0)).toEqual([]);
        expect(await store.listRunFrames('run_2', 0)).toHaveLength(2);
        expect(await store.listRunFrames('run_3', 0)).toHaveLength(2);
        expect((await store.getRun('run_1'))?.last_seq).toBe(2);
        expect(await store.pruneRunFrames(at(20))).toBe(0);
        expect(await store.pruneRunFrames(at(31))).toBe(2);
        expect(await store.listRunFrames('run_3', 0)).toHaveLength(2);
        await expectSentinelError(store.pruneRunFrames('later'), 'invalid_request', 'endedBefore');
      });

      it('deleting an agent deletes its runs and their frames, and deleting a user those of their agents', async () => {
        await seedAgent('a1', 'alice');
        await seedAgent('a2', 'alice');
        await seedAgent('b1', 'bob');
        for (const [id, agent] of [['run_1', 'a1'], ['run_2', 'a2'], ['run_3', 'b1']] as const) {
          await createdRun(store, makeRun(id, agent, 0, { idempotency_key: 'k' }));
          await store.appendRunFrames(id, [{ seq: 1, json: '{}' }]);
        }
        expect(await store.deleteAgent('a1')).toBe(true);
        expect(await store.getRun('run_1')).toBeNull();
        expect(await store.listRunFrames('run_1', 0)).toEqual([]);
        expect(await store.listRuns('a1', { limit: 10 })).toEqual([]);
        expect(await store.getRun('run_2')).not.toBeNull();
        expect(await store.deleteUser('alice')).toBe(true);
        expect(await store.getRun('run_2')).toBeNull();
        expect(await store.listRunFrames('run_2', 0)).toEqual([]);
        expect(await store.getRun('run_3')).not.toBeNull();
        expect(await store.listRunFrames('run_3', 0)).toHaveLength(1);
        // A re-created agent of the same id starts with no runs, and the key is free again.
        await seedAgent('a1', 'alice');
        expect(await store.listRuns('a1', { limit: 10 })).toEqual([]);
        await createdRun(store, makeRun('run_1', 'a1', 1, { idempotency_key: 'k' }), 1);
      });
    });

    describe('meta', () => {
      it('gets null for unknown keys, and set overwrites', async () => {
        expect(await store.getMeta('token_issuer')).toBeNull();
        await store.setMeta('token_issuer', 'one');
        await store.setMeta('other', 'x');
        expect(await store.getMeta('token_issuer')).toBe('one');
        await store.setMeta('token_issuer', 'two');
        expect(await store.getMeta('token_issuer')).toBe('two');
        expect(await store.getMeta('other')).toBe('x');
        await store.setMeta('empty', '');
        expect(await store.getMeta('empty')).toBe('');
      });
    });
  });
}
