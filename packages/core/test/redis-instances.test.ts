/**
 * Two instances of the core in one process, as two `sentinel api` processes would be: one
 * shared Store, one shared Redis (a key prefix of this file's own), separate everything else
 * (runtime, chat sessions, event subscriptions, caches). Real SQLite file, real Redis; the
 * multi-process version of these stories is packages/cli/test/multi-instance.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, openSqliteStore, parseAgentDefinition, type FrameSink, type ModelProvider, type Outgoing, type Principal, type ProviderEvent, type ProviderRequest, type RequestOrigin, type SentinelApi, type Store, type StreamCloseReason } from '@sentinel/api-core';
import { followAgentLogs } from '../src/agents/log-follow.js';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix, withRedis } from '@sentinel/test-support/redis';

type Frame = Record<string, any>;

/** Every frame of every sink, in the order they were sent: the cross-instance timeline. */
const timeline: { sink: string; frame: Frame }[] = [];

class RecordingSink implements FrameSink {
  readonly frames: Frame[] = [];
  closed: { reason: StreamCloseReason; message: string } | undefined;
  constructor(readonly name: string) {}
  send(out: Outgoing): void {
    const frame = JSON.parse(out.json) as Frame;
    this.frames.push(frame);
    timeline.push({ sink: this.name, frame });
  }
  close(reason: StreamCloseReason, message: string): void {
    this.closed ??= { reason, message };
  }
  of(id: string): Frame[] {
    return this.frames.filter((f) => f.message_id === id);
  }
  terminal(id: string): Frame | undefined {
    return this.of(id).find((f) => f.type === 'stream_end' || f.type === 'response' || f.type === 'error');
  }
}

async function until<T>(fn: () => T | undefined | false | null, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Streams "partial ", waits for release() (or the abort), then "done"; records each request. */
class GateProvider implements ModelProvider {
  readonly name = 'gate';
  readonly requests: ProviderRequest[] = [];
  private waiters: Array<() => void> = [];
  get waiting(): number {
    return this.waiters.length;
  }
  release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    this.requests.push(req);
    yield { type: 'text', delta: 'partial ' };
    await new Promise<void>((resolve, reject) => {
      this.waiters.push(resolve);
      req.signal.addEventListener(
        'abort',
        () => {
          this.waiters = this.waiters.filter((w) => w !== resolve);
          reject(req.signal.reason as Error);
        },
        { once: true },
      );
    });
    yield { type: 'text', delta: 'done' };
    yield { type: 'finish', reason: 'stop' };
  }
}

const origin: RequestOrigin = { secure: false, host: 'localhost:8080' };
const alice: Principal = { username: 'alice', role: 'user' };
const admin: Principal = { username: 'admin', role: 'admin' };

describe('two instances on one Store and one Redis', () => {
  const prefix = uniquePrefix();
  const gate = new GateProvider();
  let dir: string;
  let store: Store;
  let a: SentinelApi;
  let b: SentinelApi;

  async function instance(name: string): Promise<SentinelApi> {
    const api = await createSentinelApi({
      dataDir: join(dir, name),
      store,
      tokenSecret: 'a-shared-secret-of-32-characters',
      adminPassword: 'admin-password-1',
      busUrl: busUrl(prefix, { turn_lease_ms: '3000' }),
      runtime: { echoChunkDelayMs: 2 },
    });
    api.providers.register(gate);
    return api;
  }

  async function openChat(api: SentinelApi, agentId: string, name: string) {
    const sink = new RecordingSink(name);
    const session = (await api.chat.prepare(alice, agentId)).open(sink);
    return { sink, send: (frame: Record<string, unknown>) => session.receive(JSON.stringify(frame)), session };
  }

  /** Resolves once Redis has B's subscription to the agent's channel (SUBSCRIBE is asynchronous). */
  async function subscribedOnB(agentId: string): Promise<void> {
    const channel = `${prefix}agent:${agentId}`;
    for (const deadline = Date.now() + 5000; ; ) {
      const [, count] = (await withRedis((client) => client.pubsub('NUMSUB', channel))) as [string, number];
      if (count >= 1) return;
      if (Date.now() > deadline) throw new Error(`no subscriber on ${channel}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async function agent(image = 'sentinel/echo'): Promise<string> {
    return (await a.agents.create(alice, { image }, origin)).id;
  }

  beforeAll(async () => {
    await assertRedisRunning();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-instances-'));
    store = await openSqliteStore({ path: join(dir, 'shared.db') });
    a = await instance('a');
    b = await instance('b');
    await a.users.create({ username: 'alice', password: 'alice-password' });
    await a.images.build(parseAgentDefinition({ name: 'test/gate', model: { provider: 'gate', name: 'm1' }, instructions: 'You wait.' }));
  });

  afterAll(async () => {
    gate.release();
    await Promise.all([a?.close(), b?.close()]);
    rmSync(dir, { recursive: true, force: true });
    await deletePrefix(prefix);
  });

  it('an agent created on A is listed and served on B', async () => {
    const id = await agent();
    expect((await b.agents.list(alice, origin)).map((x) => x.id)).toContain(id);
    const { sink, send } = await openChat(b, id, 'b');
    send({ type: 'message', content: 'hello from B', message_id: 'h-1' });
    expect(await until(() => sink.terminal('h-1'), 'stream_end')).toMatchObject({ type: 'stream_end', reason: 'stop' });
  });

  it('an events subscriber on B sees a chat turn driven on A, in seq order, without duplicates', async () => {
    const id = await agent();
    const events = new RecordingSink('events-b');
    (await b.events.prepare(alice, id, { since: 0 })).open(events);
    const { sink, send } = await openChat(a, id, 'a');
    for (const n of [1, 2, 3]) send({ type: 'message', content: `message number ${n}`, message_id: `e-${n}` });
    await until(() => sink.terminal('e-3'), 'the third answer');
    await until(() => events.frames.filter((f) => f.event_type === 'message_processed').length === 3, 'three message_processed events on B');
    const seqs = events.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    const stored = await store.listEvents(id, 0);
    expect(seqs).toEqual(stored.map((e) => e.seq));
    expect(events.frames.filter((f) => f.event_type === 'message_received').map((f) => f.data.message_id)).toEqual(['e-1', 'e-2', 'e-3']);
  });

  it('fills a gap from the Store when an event overtakes an earlier one, and drops the late duplicate', async () => {
    const id = await agent();
    const live = new RecordingSink('live');
    (await b.events.prepare(alice, id)).open(live);
    const replaying = new RecordingSink('replaying');
    (await b.events.prepare(alice, id, { since: 0 })).open(replaying);
    await until(() => live.frames.length > 0 && replaying.frames.some((f) => f.seq === 2), 'both subscribers started');
    // Published out of order on purpose: the subscription must be there to receive them.
    await subscribedOnB(id);
    const withSeq = (sink: RecordingSink) => sink.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number);
    const base = (await store.listEvents(id, 0)).at(-1)?.seq ?? 0;
    // Another "instance" wrote three events; their publishes reach B out of order.
    const written = await store.appendEvents(
      id,
      [1, 2, 3].map((n) => ({ agent_id: id, event_type: 'custom', timestamp: new Date().toISOString(), content: `custom ${n}`, data: { n } })),
    );
    const [first, second, third] = written;
    if (!first || !second || !third) throw new Error('events not written');
    // The live subscriber anchors on its first live event, so it gets its first one in order.
    a.bus.publish(id, { kind: 'event', event: first });
    await until(() => withSeq(live).includes(first.seq), 'the first event live');
    a.bus.publish(id, { kind: 'event', event: third });
    await until(() => withSeq(live).includes(third.seq) && withSeq(replaying).includes(third.seq), 'the third event');
    a.bus.publish(id, { kind: 'event', event: second });
    await new Promise((r) => setTimeout(r, 50));
    expect(withSeq(live)).toEqual([base + 1, base + 2, base + 3]);
    expect(withSeq(replaying)).toEqual(Array.from({ length: base + 3 }, (_, i) => i + 1));
    expect(live.frames.find((f) => f.seq === second.seq)).toMatchObject({ event_type: 'custom', data: { n: 2 } });
  });

  it('log followers on B get lines published out of order in seq order, filtered, without duplicates', async () => {
    const id = await agent();
    const all = (await followAgentLogs({ agents: b.agents, bus: b.bus, principal: alice, agentId: id }))[Symbol.asyncIterator]();
    const warnings = (await followAgentLogs({ agents: b.agents, bus: b.bus, principal: alice, agentId: id, query: { level: 'warn' } }))[Symbol.asyncIterator]();
    await subscribedOnB(id);
    const stored = await store.listLogs(id);
    const seen: number[] = [];
    for (let n = 0; n < stored.length; n++) seen.push(JSON.parse(((await all.next()).value as { json: string }).json).seq as number);
    expect(seen).toEqual(stored.map((line) => line.seq));
    const levels = ['info', 'warn', 'info', 'warn'] as const;
    const written = await store.appendLogs(
      id,
      levels.map((level, n) => ({ agent_id: id, timestamp: new Date().toISOString(), level, message: `line ${n}` })),
    );
    // The last one overtakes the others on the bus; the first comes late, after it was filled in.
    for (const index of [3, 1, 2, 0]) a.bus.publish(id, { kind: 'log', log: written[index] as (typeof written)[number] });
    const next = async (iterator: AsyncIterator<{ json: string }>) => JSON.parse(((await iterator.next()).value as { json: string }).json).message as string;
    expect([await next(all), await next(all), await next(all), await next(all)]).toEqual(['line 0', 'line 1', 'line 2', 'line 3']);
    expect([await next(warnings), await next(warnings)]).toEqual(['line 1', 'line 3']);
    // Nothing more: a duplicate would be waiting already.
    const more = await Promise.race([all.next().then(() => 'more'), new Promise((r) => setTimeout(() => r('none'), 100))]);
    expect(more).toBe('none');
    await all.return?.();
    await warnings.return?.();
  });

  it('answers concurrent messages to one agent through A and B one at a time, each with the other\'s turn in its history', async () => {
    const id = await agent('test/gate');
    const chatA = await openChat(a, id, 'a');
    const chatB = await openChat(b, id, 'b');
    const before = gate.requests.length;
    const start = timeline.length;
    chatA.send({ type: 'message', content: 'first, through A', message_id: 'c-a' });
    await until(() => gate.waiting === 1, 'the turn on A at the gate');
    chatB.send({ type: 'message', content: 'second, through B', message_id: 'c-b' });
    // B's turn waits for A's lock: it has not started.
    await new Promise((r) => setTimeout(r, 150));
    expect(chatB.sink.of('c-b')).toEqual([]);
    gate.release();
    await until(() => chatA.sink.terminal('c-a'), 'A answered');
    await until(() => gate.waiting === 1, 'the turn on B at the gate');
    gate.release();
    expect(await until(() => chatB.sink.terminal('c-b'), 'B answered')).toMatchObject({ reason: 'stop', content: 'partial done' });
    const marks = timeline
      .slice(start)
      .filter(({ frame }) => frame.type === 'stream_start' || frame.type === 'stream_end')
      .map(({ sink, frame }) => `${sink}:${frame.type}`);
    expect(marks).toEqual(['a:stream_start', 'a:stream_end', 'b:stream_start', 'b:stream_end']);
    // B's turn read a history that holds A's whole turn: the Store write came before the release.
    const second = gate.requests[before + 1];
    expect(second?.messages.map((m) => m.content)).toEqual(['You wait.', 'first, through A', 'partial done', 'second, through B']);
  });

  it('a cancel sent on A ends the turn running on B', async () => {
    const id = await agent('test/gate');
    const chatB = await openChat(b, id, 'b');
    const chatA = await openChat(a, id, 'a');
    chatB.send({ type: 'message', content: 'take your time', message_id: 'x-1' });
    await until(() => gate.waiting === 1, 'the turn on B at the gate');
    chatA.send({ type: 'cancel', message_id: 'x-1' });
    expect(chatA.sink.of('x-1')).toEqual([expect.objectContaining({ type: 'event', event_type: 'cancel_requested', message_id: 'x-1' })]);
    expect(await until(() => chatB.sink.terminal('x-1'), 'the cancelled end')).toMatchObject({ type: 'stream_end', reason: 'cancelled', content: 'partial ' });
  });

  it('stop on A ends B\'s running turn with "stopped" and B refuses new messages', async () => {
    const id = await agent('test/gate');
    const chatB = await openChat(b, id, 'b');
    chatB.send({ type: 'message', content: 'long one', message_id: 's-1' });
    chatB.send({ type: 'message', content: 'queued one', message_id: 's-2' });
    await until(() => gate.waiting === 1, 'the turn on B at the gate');
    const stopped = await a.agents.stop(alice, id, origin);
    expect(stopped.status).toBe('stopped');
    // By the time stop answered, nothing of the agent runs anywhere.
    expect(chatB.sink.terminal('s-1')).toMatchObject({ reason: 'stopped' });
    expect(chatB.sink.terminal('s-2')).toMatchObject({ reason: 'stopped' });
    chatB.send({ type: 'message', content: 'anyone?', message_id: 's-3' });
    expect(await until(() => chatB.sink.terminal('s-3'), 'the refusal')).toMatchObject({ type: 'error', code: 'conflict' });
  });

  it('delete on A ends B\'s turn with "deleted" and closes B\'s chat and events streams', async () => {
    const id = await agent('test/gate');
    const chatB = await openChat(b, id, 'b');
    const eventsB = new RecordingSink('events-b');
    (await b.events.prepare(alice, id)).open(eventsB);
    chatB.send({ type: 'message', content: 'still talking', message_id: 'd-1' });
    await until(() => gate.waiting === 1, 'the turn on B at the gate');
    await a.agents.delete(alice, id);
    expect(await until(() => chatB.sink.closed, 'the chat closed')).toMatchObject({ reason: 'agent_deleted' });
    expect(chatB.sink.terminal('d-1')).toMatchObject({ type: 'stream_end', reason: 'deleted' });
    expect(await until(() => eventsB.closed, 'the events stream closed')).toMatchObject({ reason: 'agent_deleted' });
    expect(await store.getAgent(id)).toBeNull();
    // Nothing of B's aborted turn outlived the agent.
    await new Promise((r) => setTimeout(r, 100));
    expect(await store.listMessages(id)).toEqual([]);
    await expect(b.chat.prepare(alice, id)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('a user deleted on A can no longer use a token B has already accepted', async () => {
    await a.users.create({ username: 'carol', password: 'carol-password' });
    const { token } = await b.authService.login({ username: 'carol', password: 'carol-password' }, '10.0.0.9');
    await expect(b.authService.authenticate(`Bearer ${token}`)).resolves.toMatchObject({ username: 'carol' });
    await a.users.delete('carol', admin);
    const deadline = Date.now() + 3000;
    let outcome: unknown;
    while (Date.now() < deadline) {
      outcome = await b.authService.authenticate(`Bearer ${token}`).catch((err: unknown) => err);
      if ((outcome as { code?: string }).code === 'unauthorized') break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(outcome).toMatchObject({ code: 'unauthorized' });
  });

  it('a password changed on A revokes the old token on B within 1 s; the new one works on B', async () => {
    await a.users.create({ username: 'frank', password: 'frank-password' });
    const { token: old } = await b.authService.login({ username: 'frank', password: 'frank-password' }, '10.0.0.10');
    // B has verified the token and cached the account: only the announcement can tell it.
    await expect(b.authService.authenticate(`Bearer ${old}`)).resolves.toMatchObject({ username: 'frank' });
    const frank = { username: 'frank', role: 'user' as const };
    await a.users.changePassword(frank, 'frank', { current_password: 'frank-password', new_password: 'frank-password-2' });
    const changedAt = Date.now();
    let outcome: unknown;
    while (Date.now() - changedAt < 1000) {
      outcome = await b.authService.authenticate(`Bearer ${old}`).catch((err: unknown) => err);
      if ((outcome as { code?: string }).code === 'unauthorized') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(outcome).toMatchObject({ code: 'unauthorized', message: 'token revoked' });
    expect(Date.now() - changedAt).toBeLessThan(1000);
    const { token: fresh } = await a.authService.login({ username: 'frank', password: 'frank-password-2' }, '10.0.0.10');
    await expect(b.authService.authenticate(`Bearer ${fresh}`)).resolves.toMatchObject(frank);
    // An admin reset on B revokes that one on A as well.
    await b.users.changePassword(admin, 'frank', { new_password: 'frank-password-3' });
    const resetAt = Date.now();
    while (Date.now() - resetAt < 1000) {
      outcome = await a.authService.authenticate(`Bearer ${fresh}`).catch((err: unknown) => err);
      if ((outcome as { code?: string }).code === 'unauthorized') break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(outcome).toMatchObject({ code: 'unauthorized', message: 'token revoked' });
  });

  it('a user deleted and created again on A: the old token is refused on B, the new account\'s works there', async () => {
    await a.users.create({ username: 'gina', password: 'gina-password' });
    const { token: old } = await b.authService.login({ username: 'gina', password: 'gina-password' }, '10.0.0.11');
    await expect(b.authService.authenticate(`Bearer ${old}`)).resolves.toMatchObject({ username: 'gina' });
    await a.users.delete('gina', admin);
    await a.users.create({ username: 'gina', password: 'gina-new-password' });
    const { token: fresh } = await a.authService.login({ username: 'gina', password: 'gina-new-password' }, '10.0.0.11');
    // However soon after: the new account's token is good on B, the old one never again.
    await expect(b.authService.authenticate(`Bearer ${fresh}`)).resolves.toMatchObject({ username: 'gina', role: 'user' });
    await expect(b.authService.authenticate(`Bearer ${old}`)).rejects.toMatchObject({ code: 'unauthorized', message: 'user no longer exists' });
  });

  it('counts failed logins across instances per (username, address) and per address, and never locks a clean address out', async () => {
    await a.users.create({ username: 'dave', password: 'dave-password' });
    // A storm of 50 wrong passwords from one address, spread over both instances.
    const outcomes: string[] = [];
    for (let n = 0; n < 50; n++) {
      const api = n % 2 === 0 ? a : b;
      const err = await api.authService.login({ username: 'dave', password: `wrong-password-${n}` }, '10.1.0.1').catch((e: unknown) => e);
      outcomes.push((err as { code: string }).code);
    }
    expect(outcomes.slice(0, 5)).toEqual(['unauthorized', 'unauthorized', 'unauthorized', 'unauthorized', 'unauthorized']);
    // 5 free failures, then the backoff (1 s, 2 s, …): at most a second try gets through while the storm lasts.
    expect(outcomes.filter((o) => o === 'unauthorized').length).toBeLessThanOrEqual(6);
    expect(outcomes.at(-1)).toBe('rate_limited');
    for (const api of [a, b]) {
      await expect(api.authService.login({ username: 'dave', password: 'dave-password' }, '10.1.0.1')).rejects.toMatchObject({ code: 'rate_limited' });
    }
    // The owner, from another address, on either instance, at once.
    for (const api of [a, b]) {
      const started = Date.now();
      await expect(api.authService.login({ username: 'dave', password: 'dave-password' }, '10.1.1.1')).resolves.toMatchObject({ username: 'dave' });
      expect(Date.now() - started).toBeLessThan(1000);
    }
    await expect(b.authService.login({ username: 'alice', password: 'alice-password' }, '10.1.1.1')).resolves.toMatchObject({ username: 'alice' });
  });

  it('reports the bus as ready through the wrapped bus', async () => {
    expect(a.bus.shared).toBe(true);
    await expect(a.bus.ping?.()).resolves.toBeUndefined();
  });
});
