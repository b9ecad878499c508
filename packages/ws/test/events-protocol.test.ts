/**
 * The events stream of `/v1/agents/{id}/events` over real sockets on every host: the
 * agent_status snapshot, live events with their seq, `?since=` replay that joins the live
 * stream with no gap and no duplicate, and resync_required past retention.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { FrameClient, type Frame } from './ws-client.js';
import { bearer, eventually, startWsEnv, type WsEnv } from './ws-env.js';

const RETENTION = 10;

describe.each(HOSTS)('events WebSocket on %s', (hostName) => {
  let env: WsEnv;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    env = await startWsEnv(hostName, { eventRetention: RETENTION });
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  async function connect(agentId: string, kind: 'chat' | 'events', query?: string): Promise<FrameClient> {
    const client = await FrameClient.connect(env.url(agentId, kind, query), bearer(env.adminToken));
    clients.push(client);
    return client;
  }

  const sequenced = (client: FrameClient): Frame[] => client.frames.filter((f) => typeof f.seq === 'number');

  it('starts with an agent_status snapshot (no seq) carrying status, memory and api_usage', async () => {
    const agent = await env.createAgent();
    const events = await connect(agent.id, 'events');
    const first = await events.waitFor(() => true, 'the snapshot');
    expect(first).toMatchObject({
      type: 'event',
      event_type: 'agent_status',
      agent_id: agent.id,
      data: { agent_id: agent.id, status: 'running', api_usage: { requests: 0, tokens: 0 } },
    });
    expect(typeof first.data.memory).toBe('string');
    expect(first.seq).toBeUndefined();
    expect(Date.parse(first.timestamp as string)).not.toBeNaN();
  });

  it('delivers the events of a chat turn on another socket live, in seq order, and counts usage', async () => {
    const agent = await env.createAgent();
    const events = await connect(agent.id, 'events');
    await events.waitFor((f) => f.event_type === 'agent_status', 'the snapshot');
    const chat = await connect(agent.id, 'chat');
    chat.send({ type: 'message', content: '/tool calculator {"expression":"2+2"}', message_id: 'm-live' });
    await chat.terminal('m-live');

    const processed = await events.waitFor((f) => f.event_type === 'message_processed', 'message_processed');
    const live = sequenced(events);
    const types = live.map((f) => f.event_type);
    expect(types).toContain('message_received');
    expect(types).toContain('tool_used');
    expect(types.indexOf('message_received')).toBeLessThan(types.indexOf('tool_used'));
    expect(types.indexOf('tool_used')).toBeLessThan(types.indexOf('message_processed'));
    for (const frame of live) expect(frame).toMatchObject({ type: 'event', agent_id: agent.id });
    const seqs = live.map((f) => f.seq as number);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1] as number);
    expect(processed.data).toMatchObject({ message_id: 'm-live', reason: 'stop' });
    expect(live.find((f) => f.event_type === 'tool_used')?.data).toMatchObject({ tool: 'calculator', status: 'success' });

    const later = await connect(agent.id, 'events');
    const snapshot = await later.waitFor((f) => f.event_type === 'agent_status', 'the second snapshot');
    expect(snapshot.data.api_usage.requests).toBe(1);
    expect(snapshot.data.api_usage.tokens).toBeGreaterThan(0);
  });

  it('?since= replays the durable log, then continues live with no gap and no duplicate', async () => {
    const agent = await env.createAgent();
    const appended: number[] = [];
    for (let i = 0; i < 6; i++) appended.push((await env.api.journal.event(agent.id, 'test_event', `before ${i}`, { i })).seq);
    const since = appended[1] as number;

    const events = await connect(agent.id, 'events', `since=${since}`);
    // Appended while the replay may still be running: the boundary must hold either way.
    const during = Promise.all(Array.from({ length: 20 }, (_, i) => env.api.journal.event(agent.id, 'test_event', `during ${i}`, { i })));
    const last = (await during).at(-1)?.seq as number;
    await events.waitFor((f) => f.seq === last, `seq ${last}`);
    for (let i = 0; i < 5; i++) await env.api.journal.event(agent.id, 'test_event', `after ${i}`, { i });
    await events.waitFor((f) => f.seq === last + 5, `seq ${last + 5}`);

    expect(events.frames[0]?.event_type).toBe('agent_status');
    const seqs = sequenced(events).map((f) => f.seq as number);
    const expected = Array.from({ length: last + 5 - since }, (_, i) => since + 1 + i);
    expect(seqs).toEqual(expected);
    expect(sequenced(events)[0]).toMatchObject({ event_type: 'test_event', content: 'before 2', data: { i: 2 } });
  });

  it('a since older than retention gets resync_required, then what is retained', async () => {
    const agent = await env.createAgent();
    // 100 appends reach the prune point; retention keeps the newest RETENTION events.
    let lastSeq = 0;
    for (let i = 0; i < 100; i++) lastSeq = (await env.api.journal.event(agent.id, 'test_event', `e${i}`, { i })).seq;
    // The prune runs in the background once seq 100 is written.
    await eventually(async () => ((await env.api.store.listEvents(agent.id, 0, 1))[0]?.seq ?? 0) > 3, 'the prune');
    const oldest = (await env.api.store.listEvents(agent.id, 0, 1))[0]?.seq as number;

    const events = await connect(agent.id, 'events', 'since=3');
    const resync = await events.waitFor((f) => f.event_type === 'resync_required', 'resync_required');
    expect(oldest).toBeGreaterThan(lastSeq - 2 * RETENTION);
    expect(resync.data).toEqual({ requested_since: 3, oldest_seq: oldest });
    await events.waitFor((f) => f.seq === lastSeq, `seq ${lastSeq}`);
    expect(sequenced(events).map((f) => f.seq)).toEqual(Array.from({ length: lastSeq - oldest + 1 }, (_, i) => oldest + i));
  });
});
