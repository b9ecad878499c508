/**
 * `client.events` against a real server on port 0: events replayed from `since`, a connection
 * cut (through a loopback proxy) and resumed from the last seq with no gap and no duplicate,
 * resync_required when the events after the cursor were pruned, break and abort, refusals.
 * The restart of a real server process is in events-restart.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, isSentinelApiError, type EventFrame, type SentinelApiError, type SentinelClient, type ServerFrame } from '@sentinel/api-client';
import { ADMIN_PASSWORD, createAgent, eventually, startLiveEnv, type LiveEnv } from './live-env.js';

const FAST_RECONNECT = { initialDelayMs: 20, maxDelayMs: 100 };

/** Pulls frames from `events` into `into` until `done` holds for one. */
async function until(events: AsyncIterator<EventFrame>, into: EventFrame[], done: (frame: EventFrame) => boolean): Promise<void> {
  for (;;) {
    const next = await events.next();
    if (next.done) throw new Error('the events ended early');
    into.push(next.value);
    if (done(next.value)) return;
  }
}

function processedFor(messageId: string): (frame: EventFrame) => boolean {
  return (frame) => frame.event_type === 'message_processed' && (frame.data as { message_id?: string } | undefined)?.message_id === messageId;
}

async function chatOnce(client: SentinelClient, agentId: string, content: string, messageId: string): Promise<ServerFrame[]> {
  const session = client.chat(agentId);
  const frames: ServerFrame[] = [];
  try {
    for await (const frame of session.send(content, { messageId })) frames.push(frame);
  } finally {
    session.close();
  }
  return frames;
}

function seqs(frames: EventFrame[]): number[] {
  return frames.filter((frame) => frame.seq !== undefined).map((frame) => frame.seq!);
}

async function failure(promise: Promise<unknown>): Promise<SentinelApiError> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelApiError(err)).toBe(true);
    return err as SentinelApiError;
  }
  throw new Error('expected a rejection');
}

describe('client.events', () => {
  let env: LiveEnv;
  let viaProxy: SentinelClient;
  let direct: SentinelClient;

  beforeAll(async () => {
    env = await startLiveEnv(1);
    viaProxy = createClient({ baseUrl: env.proxy.url });
    const { token } = await viaProxy.login('admin', ADMIN_PASSWORD);
    direct = createClient({ baseUrl: env.server.url, token });
  });

  afterAll(async () => {
    await env?.close();
  });

  it('replays from since, then resumes after a cut from the last seq it delivered: every event once, in order', async () => {
    const agentId = await createAgent(direct);
    await chatOnce(direct, agentId, 'before', 'm-before');
    const stored = await env.api.store.listEvents(agentId, 0, 1000);
    expect(stored.length).toBeGreaterThan(2);

    const events = viaProxy.events(agentId, { since: 0, reconnect: FAST_RECONNECT });
    const frames: EventFrame[] = [];
    try {
      await until(events, frames, processedFor('m-before'));
      expect(frames[0]).toMatchObject({ event_type: 'agent_status' });
      expect(frames[0]!.seq).toBeUndefined();

      // Cut, and keep the proxy shut while the agent produces more events: they must come on the replay.
      env.proxy.hold = true;
      env.proxy.cut();
      await chatOnce(direct, agentId, 'during', 'm-during');
      env.proxy.hold = false;
      await until(events, frames, processedFor('m-during'));
      await chatOnce(direct, agentId, 'after', 'm-after');
      await until(events, frames, processedFor('m-after'));

      const all = await env.api.store.listEvents(agentId, 0, 1000);
      expect(seqs(frames)).toEqual(all.map((event) => event.seq));
      expect(new Set(seqs(frames)).size).toBe(seqs(frames).length);
      // The reconnect's own snapshot came too (no seq: the state now, not a stored event).
      expect(frames.filter((frame) => frame.event_type === 'agent_status' && frame.seq === undefined).length).toBe(2);
    } finally {
      env.proxy.hold = false;
      await events.return();
    }
  });

  it('starts at since; break and the signal end it and close the socket', async () => {
    const agentId = await createAgent(direct);
    await chatOnce(direct, agentId, 'one', 'm-one');
    const all = await env.api.store.listEvents(agentId, 0, 1000);
    const middle = all[Math.floor(all.length / 2)]!.seq;

    const got: EventFrame[] = [];
    for await (const frame of direct.events(agentId, { since: middle })) {
      got.push(frame);
      if (frame.seq === all.at(-1)!.seq) break;
    }
    expect(seqs(got)).toEqual(all.filter((event) => event.seq > middle).map((event) => event.seq));
    const service = env.api.events as unknown as { subscriptionCount(agentId?: string): number };
    await eventually(() => service.subscriptionCount(agentId) === 0, 'the server to see the socket closed');

    // The signal ends the loop as a break does, even while it waits for the next frame.
    const controller = new AbortController();
    const seen: EventFrame[] = [];
    for await (const frame of direct.events(agentId, { signal: controller.signal })) {
      seen.push(frame);
      setTimeout(() => controller.abort(), 50);
    }
    expect(seen.map((frame) => frame.event_type)).toEqual(['agent_status']);
    await eventually(() => service.subscriptionCount(agentId) === 0, 'the aborted socket to close');
    const early = new AbortController();
    early.abort();
    expect(await direct.events(agentId, { signal: early.signal }).next()).toEqual({ value: undefined, done: true });
  });

  it('with auth: ticket, the events socket opens with a one-time ticket', async () => {
    const agentId = await createAgent(direct);
    await chatOnce(direct, agentId, 'ticketed', 'm-ticket');
    const frames: EventFrame[] = [];
    const events = direct.events(agentId, { since: 0, auth: 'ticket' });
    try {
      await until(events, frames, processedFor('m-ticket'));
    } finally {
      await events.return();
    }
    const all = await env.api.store.listEvents(agentId, 0, 1000);
    expect(seqs(frames)).toEqual(all.map((event) => event.seq));
  });

  it('an unknown agent is a 404, a bad since a 400, a server that is down a network_error', async () => {
    expect(await failure(direct.events('no-such-agent').next())).toMatchObject({ status: 404, code: 'not_found' });
    const agentId = await createAgent(direct);
    expect(await failure(direct.events(agentId, { since: -1 }).next())).toMatchObject({ status: 400 });
    expect(await failure(createClient({ baseUrl: 'http://127.0.0.1:1', token: 'x' }).events(agentId).next())).toMatchObject({ status: 0, code: 'network_error' });
  });
  it('hands over resync_required and goes on from the oldest event kept', async () => {
    const agentId = await createAgent(direct);
    for (let i = 0; i < 3; i++) await chatOnce(direct, agentId, `m${i}`, `m-${i}`);
    // What retention does every 100 events, at once: keep the newest 4.
    await env.api.store.pruneEvents(agentId, 4);
    const kept = await env.api.store.listEvents(agentId, 0, 1000);
    expect(kept.length).toBe(4);
    expect(kept[0]!.seq).toBeGreaterThan(2);
    const frames: EventFrame[] = [];
    const events = direct.events(agentId, { since: 1 });
    try {
      await until(events, frames, (frame) => frame.seq === kept.at(-1)!.seq);
    } finally {
      await events.return();
    }
    const resync = frames.find((frame) => frame.event_type === 'resync_required');
    expect(resync?.data).toMatchObject({ requested_since: 1, oldest_seq: kept[0]!.seq });
    expect(seqs(frames)).toEqual(kept.map((event) => event.seq));
  });
});
