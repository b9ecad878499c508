/**
 * The events stream (AgentEventsService), event retention, the push iterable and log follow,
 * on the real core (createSentinelApi on a real SQLite file), observed through a recording
 * FrameSink: the core's own transport interface, not a socket stand-in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentEventsService, AgentJournal, createSentinelApi, isSentinelError, type FrameSink, type Outgoing, type Principal, type SentinelApi, type ServerFrame, type StreamCloseReason, type StreamItem } from '@sentinel/api-core';
import { followAgentLogs } from '../src/agents/log-follow.js';
import { createPushIterable } from '../src/contract/push-iterable.js';
import { eventFrame, formatBytes } from '../src/protocol/events.js';
import { createEventRetention, withEventRetention } from '../src/runtime/event-retention.js';

const origin = { secure: false, host: 'localhost:8080' };
const alice: Principal = { username: 'alice', role: 'user' };
const bob: Principal = { username: 'bob', role: 'user' };
const admin: Principal = { username: 'admin', role: 'admin' };

/** A recorded frame, read field by field without narrowing on `type` first. */
type RecordedOutgoing = Outgoing & { readonly frame: ServerFrame & Record<string, unknown> };

/** A FrameSink that records what the core sends, and lets a test wait for a condition. */
class RecordingSink implements FrameSink {
  readonly frames: RecordedOutgoing[] = [];
  closed: { reason: StreamCloseReason; message: string } | undefined;
  #waiters: (() => void)[] = [];

  send(out: Outgoing): void {
    if (this.closed) return;
    this.frames.push(out as RecordedOutgoing);
    this.#notify();
  }

  close(reason: StreamCloseReason, message: string): void {
    this.closed ??= { reason, message };
    this.#notify();
  }

  /** Event frames with a seq, as numbers. */
  seqs(): number[] {
    return this.frames.filter((f) => typeof f.frame.seq === 'number').map((f) => f.frame.seq as number);
  }

  types(): string[] {
    return this.frames.map((f) => String(f.frame.event_type ?? f.frame.type));
  }

  async until(condition: (sink: this) => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition(this)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.types())} closed=${JSON.stringify(this.closed)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  #notify(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSentinelError(err), `expected a SentinelError, got ${String(err)}`).toBe(true);
  return err as { code: string; message: string };
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('AgentEventsService', () => {
  let dir: string;
  let api: SentinelApi;
  let events: AgentEventsService;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-events-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: 'events-test-secret-0123456789', adminPassword: 'admin-password-1' });
    await api.users.create({ username: 'alice', password: 'alice-password' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    events = new AgentEventsService({ store: api.store, bus: api.bus, agents: api.agents, replayPageSize: 7 });
  });

  afterAll(async () => {
    events?.shutdown();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function newAgent(owner = alice): Promise<string> {
    return (await api.agents.create(owner, { image: 'sentinel/echo:latest' }, origin)).id;
  }

  async function appendEvents(agentId: string, count: number, label = 'e'): Promise<number[]> {
    const seqs: number[] = [];
    for (let i = 0; i < count; i++) seqs.push((await api.journal.event(agentId, 'message_processed', `${label}${i}`, { i })).seq);
    return seqs;
  }

  async function open(principal: Principal, agentId: string, since?: number): Promise<{ sink: RecordingSink; close(): void }> {
    const sink = new RecordingSink();
    const prepared = await events.prepare(principal, agentId, since === undefined ? {} : { since });
    const subscription = prepared.open(sink);
    return { sink, close: () => subscription.close() };
  }

  it('sends the agent_status snapshot first (no seq, memory and usage), then live events with their seq', async () => {
    const id = await newAgent();
    const record = await api.store.getAgent(id);
    await api.store.appendMessages(id, [
      { agent_id: id, role: 'user', content: 'x'.repeat(1000), created_at: new Date().toISOString() },
      { agent_id: id, role: 'assistant', content: 'y'.repeat(300), created_at: new Date().toISOString() },
    ]);
    await api.store.addAgentUsage(id, 3, 120, new Date().toISOString());
    const { sink, close } = await open(alice, id);
    await sink.until((s) => s.frames.length >= 1, 'the snapshot');

    const snapshot = sink.frames[0]?.frame;
    expect(snapshot).toMatchObject({
      type: 'event',
      event_type: 'agent_status',
      content: `Agent ${record?.name} is running`,
      agent_id: id,
      data: { agent_id: id, status: 'running', memory: '1.3 KiB', api_usage: { requests: 3, tokens: 120 } },
    });
    expect(snapshot).not.toHaveProperty('seq');
    expect(sink.frames[0]?.id).toBeUndefined();
    expect(Number.isNaN(Date.parse(String(snapshot?.timestamp)))).toBe(false);

    const [seq] = await appendEvents(id, 1, 'live');
    await sink.until((s) => s.seqs().includes(seq ?? -1), 'the live event');
    const live = sink.frames.at(-1);
    expect(live?.frame).toEqual({ type: 'event', event_type: 'message_processed', timestamp: expect.any(String), content: 'live0', data: { i: 0 }, seq, agent_id: id });
    expect(live?.id).toBe(String(seq));
    expect(JSON.parse(live?.json ?? '{}')).toEqual(live?.frame);
    // Without `since`, nothing stored before the subscription is replayed.
    expect(sink.seqs()).toEqual([seq]);
    close();
    expect(events.subscriptionCount(id)).toBe(0);
  });

  it('replays the stored events after `since`, then continues live', async () => {
    const id = await newAgent();
    // Creation wrote two agent_status events (created, running): seq 1 and 2.
    const stored = await appendEvents(id, 10);
    expect(stored).toEqual(range(3, 12));
    const { sink, close } = await open(alice, id, 5);
    await sink.until((s) => s.seqs().includes(12), 'the replay');
    expect(sink.types()[0]).toBe('agent_status');
    expect(sink.seqs()).toEqual(range(6, 12));
    expect(sink.frames.slice(1).map((f) => f.frame.content)).toEqual(range(3, 9).map((i) => `e${i}`));

    await appendEvents(id, 2, 'after');
    await sink.until((s) => s.seqs().includes(14), 'the live events');
    expect(sink.seqs()).toEqual(range(6, 14));

    // since=0 replays everything, including the creation events.
    const all = await open(alice, id, 0);
    await all.sink.until((s) => s.seqs().includes(14), 'the full replay');
    expect(all.sink.seqs()).toEqual(range(1, 14));
    expect(all.sink.frames[1]?.frame).toMatchObject({ event_type: 'agent_status', seq: 1, data: { status: 'created' } });
    close();
    all.close();
  });

  it('has no gap and no duplicate across the replay/live boundary while events are appended concurrently', async () => {
    const id = await newAgent();
    await appendEvents(id, 40, 'before');
    const total = 2 + 40 + 300;
    // Subscriptions start from inside the writer's loop, without waiting: their snapshot reads,
    // replay pages (7 events each) and go-live interleave with the appends at microtask
    // granularity, so events land in the Store and on the bus while the replay runs.
    const plan = new Map<number, number[]>([
      [0, [0, 0, 35]],
      [17, [10, 41]],
      [60, [0, 100]],
      [150, [120, 149]],
      [299, [250, 0]],
    ]);
    const opening: Promise<{ since: number; sink: RecordingSink; close(): void }>[] = [];
    for (let i = 0; i < 300; i++) {
      for (const since of plan.get(i) ?? []) opening.push(open(alice, id, since).then((o) => ({ since, ...o })));
      await api.journal.event(id, 'message_received', `during${i}`, { i });
      if (i % 50 === 49) await nextMacrotask();
    }
    const subscribers = await Promise.all(opening);
    expect(subscribers).toHaveLength(11);
    for (const { since, sink, close } of subscribers) {
      await sink.until((s) => s.seqs().includes(total), `seq ${total} for since=${since}`);
      expect(sink.types()[0]).toBe('agent_status');
      expect(sink.seqs(), `since=${since}`).toEqual(range(since + 1, total));
      close();
    }
    expect(events.subscriptionCount(id)).toBe(0);
  });

  it('paces a long replay in pages, each sent only once the sink is ready for more', async () => {
    const id = await newAgent();
    await appendEvents(id, 40); // seq 3..42: 6 pages of 7
    const sink = new RecordingSink();
    const sentAtReady: number[] = [];
    let release: (() => void) | undefined;
    const paced = Object.assign(sink, {
      whenReady: () => {
        sentAtReady.push(sink.seqs().length);
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    const subscription = (await events.prepare(alice, id, { since: 0 })).open(paced);
    await sink.until((s) => s.seqs().length === 7, 'the first page');
    // Nothing more until the sink says it is ready, even after several turns of the event loop.
    for (let i = 0; i < 5; i++) await nextMacrotask();
    expect(sink.seqs()).toEqual(range(1, 7));
    while (!sink.seqs().includes(42)) {
      const wake = release;
      release = undefined;
      wake?.();
      await nextMacrotask();
    }
    expect(sentAtReady.slice(0, 6)).toEqual([7, 14, 21, 28, 35, 42]);
    expect(sink.seqs()).toEqual(range(1, 42));
    // Live events held aside during the replay follow, then it is live.
    await appendEvents(id, 1);
    while (!sink.seqs().includes(43)) {
      release?.();
      await nextMacrotask();
    }
    expect(sink.seqs()).toEqual(range(1, 43));
    subscription.close();
    expect(events.subscriptionCount(id)).toBe(0);
  });

  it('sends resync_required when `since` is older than retention, then what is retained', async () => {
    const id = await newAgent();
    await appendEvents(id, 18); // seq 3..20
    expect(await api.store.pruneEvents(id, 5)).toBe(15); // keeps 16..20

    const stale = await open(alice, id, 3);
    await stale.sink.until((s) => s.seqs().includes(20), 'the retained events');
    expect(stale.sink.types().slice(0, 2)).toEqual(['agent_status', 'resync_required']);
    expect(stale.sink.frames[1]?.frame).toMatchObject({ type: 'event', agent_id: id, data: { requested_since: 3, oldest_seq: 16 } });
    expect(stale.sink.frames[1]?.frame).not.toHaveProperty('seq');
    expect(stale.sink.seqs()).toEqual(range(16, 20));

    // A cursor right before the oldest retained event lost nothing: no resync.
    const fresh = await open(alice, id, 15);
    await fresh.sink.until((s) => s.seqs().includes(20), 'the replay');
    expect(fresh.sink.types()).not.toContain('resync_required');
    expect(fresh.sink.seqs()).toEqual(range(16, 20));
    stale.close();
    fresh.close();
  });

  it("refuses another user's agent with not_found, an unknown agent too, and a bad since with invalid_request", async () => {
    const id = await newAgent();
    expect((await rejectionOf(events.prepare(bob, id))).code).toBe('not_found');
    expect((await rejectionOf(events.prepare(alice, 'no-such-agent'))).code).toBe('not_found');
    expect((await rejectionOf(events.prepare(alice, id, { since: -1 }))).code).toBe('invalid_request');
    expect((await rejectionOf(events.prepare(alice, id, { since: 1.5 }))).code).toBe('invalid_request');
    // Admins see every agent.
    const prepared = await events.prepare(admin, id);
    expect(prepared.agentId).toBe(id);
  });

  it('ends every subscription of a deleted agent with agent_deleted, after its last events', async () => {
    const id = await newAgent();
    const first = await open(alice, id);
    const second = await open(alice, id, 0);
    await second.sink.until((s) => s.seqs().includes(2), 'the replay');
    await first.sink.until((s) => s.frames.length >= 1, 'the snapshot');
    expect(events.subscriptionCount(id)).toBe(2);

    await api.agents.delete(alice, id);
    for (const { sink } of [first, second]) {
      await sink.until((s) => s.closed !== undefined, 'the close');
      expect(sink.closed).toEqual({ reason: 'agent_deleted', message: 'agent deleted' });
      // The stop announced before the delete arrived first.
      expect(sink.frames.at(-1)?.frame).toMatchObject({ event_type: 'agent_status', data: { status: 'stopped' } });
    }
    expect(events.subscriptionCount(id)).toBe(0);
  });

  it('wraps each live event in ONE Outgoing shared by 1,000 subscribers, serialized once', async () => {
    const id = await newAgent();
    const subscribers = await Promise.all(Array.from({ length: 1000 }, () => open(alice, id)));
    for (const { sink } of subscribers) await sink.until((s) => s.frames.length >= 1, 'the snapshot');
    expect(events.subscriptionCount(id)).toBe(1000);

    let serializations = 0;
    const counted = { toJSON: () => (serializations++, 'counted') };
    await api.journal.event(id, 'tool_used', 'shared', { probe: counted });
    const afterStoreWrite = serializations;
    const outs = new Set<Outgoing>();
    const texts = new Set<string>();
    for (const { sink } of subscribers) {
      await sink.until((s) => s.frames.length >= 2, 'the live event');
      const out = sink.frames[1] as Outgoing;
      outs.add(out);
      texts.add(out.json);
    }
    expect(outs.size).toBe(1);
    expect(texts.size).toBe(1);
    expect(serializations - afterStoreWrite).toBe(1);
    for (const { close } of subscribers) close();
    expect(events.subscriptionCount()).toBe(0);
  });

  it('closes the subscriptions with shutdown and refuses new ones after shutdown()', async () => {
    const local = new AgentEventsService({ store: api.store, bus: api.bus, agents: api.agents });
    const id = await newAgent();
    const sink = new RecordingSink();
    (await local.prepare(alice, id)).open(sink);
    await sink.until((s) => s.frames.length >= 1, 'the snapshot');
    local.shutdown();
    expect(sink.closed).toEqual({ reason: 'shutdown', message: 'server shutting down' });
    expect(local.subscriptionCount()).toBe(0);
    expect((await rejectionOf(local.prepare(alice, id))).code).toBe('unavailable');
  });

  it('builds event frames and human-readable sizes', () => {
    const record = { agent_id: 'a1', seq: 7, event_type: 'error', timestamp: '2025-01-01T00:00:00.000Z', content: 'boom', data: { code: 'x' } };
    expect(eventFrame(record)).toEqual({ type: 'event', event_type: 'error', timestamp: record.timestamp, content: 'boom', data: { code: 'x' }, seq: 7, agent_id: 'a1' });
    expect([0, 1023, 1024, 1300, 5 * 1024 * 1024, 3 * 1024 ** 3].map(formatBytes)).toEqual(['0 B', '1023 B', '1.0 KiB', '1.3 KiB', '5.0 MiB', '3.0 GiB']);
  });
});

describe('event retention', () => {
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-retention-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: 'events-test-secret-0123456789', adminPassword: 'admin-password-1' });
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prunes an agent to its newest keepLast events every `every` appends, through the wrapped bus', async () => {
    const id = (await api.agents.create(admin, { image: 'sentinel/echo:latest' }, origin)).id;
    const retention = createEventRetention({ store: api.store, keepLast: 25, every: 10 });
    const bus = withEventRetention(api.bus, retention);
    const journal = new AgentJournal({ store: api.store, bus });
    const seen: number[] = [];
    const unsubscribe = bus.subscribe(id, (m) => {
      if (m.kind === 'event') seen.push(m.event.seq);
    });
    for (let i = 0; i < 58; i++) await journal.event(id, 'message_processed', `m${i}`, {});
    // Seq 3..60 were written; the last prune ran at seq 60 and kept 36..60.
    await eventually(async () => (await api.store.firstEventSeq(id)) === 36, 'the prune at seq 60');
    expect((await api.store.listEvents(id, 0)).map((e) => e.seq)).toEqual(range(36, 60));
    // Subscribers of the wrapped bus still get every event.
    expect(seen).toEqual(range(3, 60));
    unsubscribe();
    expect(retention.keepLast).toBe(25);
  });

  it('rejects nonsensical settings at start-up', () => {
    expect(() => createEventRetention({ store: api.store, keepLast: 0 })).toThrow(RangeError);
    expect(() => createEventRetention({ store: api.store, every: 1.5 })).toThrow(RangeError);
  });
});

describe('createPushIterable', () => {
  it('delivers pushed items in order to a waiting or a late consumer, then ends', async () => {
    const stream = createPushIterable<number>();
    const iterator = stream.iterable[Symbol.asyncIterator]();
    const pending = iterator.next();
    expect(stream.push(1)).toBe(true);
    expect(await pending).toEqual({ value: 1, done: false });
    for (let i = 2; i <= 2000; i++) stream.push(i > 1000 ? -1 : i);
    // Past 1000 buffered items the stream fails instead of growing.
    const received: number[] = [];
    let failure: unknown;
    try {
      for (;;) {
        const r = await iterator.next();
        if (r.done) break;
        received.push(r.value);
      }
    } catch (err) {
      failure = err;
    }
    expect(received).toEqual(range(2, 1000).concat([-1]));
    expect(isSentinelError(failure) && failure.code).toBe('unavailable');
    expect(stream.push(5)).toBe(false);
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
  });

  it('ends after the buffered items, fails after them, and calls onReturn exactly once', async () => {
    let returns = 0;
    const ended = createPushIterable<string>({ onReturn: () => returns++ });
    ended.push('a');
    ended.push('b');
    ended.end();
    ended.end();
    expect(ended.push('c')).toBe(false);
    const got: string[] = [];
    for await (const item of ended.iterable) got.push(item);
    expect(got).toEqual(['a', 'b']);
    expect(returns).toBe(1);

    const failed = createPushIterable<string>({ onReturn: () => returns++ });
    failed.push('x');
    failed.fail(new Error('producer broke'));
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const item of failed.iterable) seen.push(item);
      })(),
    ).rejects.toThrow('producer broke');
    expect(seen).toEqual(['x']);
    expect(returns).toBe(2);
    expect(() => failed.iterable[Symbol.asyncIterator]()).toThrow(TypeError);
  });

  it('resolves drained() once the consumer took every buffered item, or the stream is over', async () => {
    const stream = createPushIterable<number>();
    await stream.drained();
    stream.push(1);
    stream.push(2);
    expect(stream.buffered).toBe(2);
    let drained = false;
    const waiting = stream.drained().then(() => (drained = true));
    const iterator = stream.iterable[Symbol.asyncIterator]();
    await iterator.next();
    await nextMacrotask();
    expect(drained).toBe(false);
    await iterator.next();
    await waiting;
    expect(stream.buffered).toBe(0);

    stream.push(3);
    const onReturn = stream.drained();
    await iterator.return?.();
    await onReturn;
  });

  it('stops at once on return() or abort, resolving a pending next() and dropping the buffer', async () => {
    let returns = 0;
    const stream = createPushIterable<number>({ onReturn: () => returns++ });
    const iterator = stream.iterable[Symbol.asyncIterator]();
    const pending = iterator.next();
    await iterator.return?.();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(stream.push(1)).toBe(false);
    expect(returns).toBe(1);

    const controller = new AbortController();
    const aborted = createPushIterable<number>({ signal: controller.signal, onReturn: () => returns++ });
    aborted.push(1);
    aborted.push(2);
    controller.abort();
    expect(await aborted.iterable[Symbol.asyncIterator]().next()).toEqual({ value: undefined, done: true });
    expect(returns).toBe(2);

    const already = createPushIterable<number>({ signal: AbortSignal.abort(), onReturn: () => returns++ });
    expect(already.push(1)).toBe(false);
    expect(returns).toBe(3);
  });
});

describe('followAgentLogs', () => {
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-follow-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: 'events-test-secret-0123456789', adminPassword: 'admin-password-1' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function take(iterator: AsyncIterator<StreamItem>, count: number): Promise<{ seq: number; message: string; level: string }[]> {
    const lines: { seq: number; message: string; level: string }[] = [];
    while (lines.length < count) {
      const r = await iterator.next();
      if (r.done) break;
      const line = JSON.parse(r.value.json) as { seq: number; message: string; level: string };
      expect(r.value.id).toBe(String(line.seq));
      lines.push(line);
    }
    return lines;
  }

  it('sends the stored lines, then new ones with a level filter, and ends when the agent is deleted', async () => {
    const id = (await api.agents.create(admin, { image: 'sentinel/echo:latest' }, origin)).id;
    await api.journal.log(id, 'debug', 'quiet');
    await api.journal.log(id, 'warn', 'stored warning');
    const iterable = await followAgentLogs({ agents: api.agents, bus: api.bus, principal: admin, agentId: id, query: { level: 'info' } });
    const iterator = iterable[Symbol.asyncIterator]();
    const stored = await take(iterator, 3);
    expect(stored.map((l) => l.message)).toEqual([expect.stringMatching(/^agent created from image sentinel\/echo:latest /), 'agent started', 'stored warning']);

    await api.journal.log(id, 'debug', 'filtered out');
    await api.journal.log(id, 'error', 'live error');
    const [live] = await take(iterator, 1);
    expect(live).toMatchObject({ message: 'live error', level: 'error', seq: 6 });

    await api.agents.delete(admin, id);
    const rest = await take(iterator, 10);
    expect(rest.map((l) => l.message)).toEqual(['agent stopped']);
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
  });

  it("rejects another user's agent before streaming, and lets go of the bus when the client leaves", async () => {
    const id = (await api.agents.create(admin, { image: 'sentinel/echo:latest' }, origin)).id;
    const denied = await rejectionOf(followAgentLogs({ agents: api.agents, bus: api.bus, principal: bob, agentId: id }));
    expect(denied.code).toBe('not_found');

    const controller = new AbortController();
    const iterator = (await followAgentLogs({ agents: api.agents, bus: api.bus, principal: admin, agentId: id, query: { tail: 0 }, signal: controller.signal }))[Symbol.asyncIterator]();
    const pending = iterator.next();
    controller.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    // Lines written after the client left go nowhere (and nothing throws).
    await api.journal.log(id, 'info', 'nobody listens');
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
  });
});
