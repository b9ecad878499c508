/**
 * `client.chat` against a real server on port 0, through a loopback proxy the spec cuts: a turn
 * streamed chunk by chunk, a turn cut mid-answer (it fails with connection_lost, the server ran
 * it once, the session reconnects and the next message works), messages sent while the socket
 * is down go out once, cancel, abort signals, tool requests, refusals and a 4401 close.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backoffDelay, createClient, isSentinelApiError, type SentinelApiError, type SentinelClient, type ServerFrame } from '@sentinel/api-client';
import { ADMIN_PASSWORD, createAgent, eventually, longMessage, startLiveEnv, type LiveEnv } from './live-env.js';

async function collect(turn: AsyncIterable<ServerFrame>): Promise<ServerFrame[]> {
  const frames: ServerFrame[] = [];
  for await (const frame of turn) frames.push(frame);
  return frames;
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

const FAST_RECONNECT = { initialDelayMs: 20, maxDelayMs: 100 };

describe('client.chat', () => {
  let env: LiveEnv;
  let client: SentinelClient;

  beforeAll(async () => {
    env = await startLiveEnv(5);
    client = createClient({ baseUrl: env.proxy.url });
    await client.login('admin', ADMIN_PASSWORD);
  });

  afterAll(async () => {
    await env?.close();
  });

  /** How many times the agent received `messageId` (one `message_received` event per turn the server ran). */
  async function timesReceived(agentId: string, messageId: string): Promise<number> {
    const events = await env.api.store.listEvents(agentId, 0, 10_000);
    return events.filter((event) => event.event_type === 'message_received' && (event.data as { message_id?: string }).message_id === messageId).length;
  }

  async function processed(agentId: string, messageId: string): Promise<boolean> {
    const events = await env.api.store.listEvents(agentId, 0, 10_000);
    return events.some((event) => event.event_type === 'message_processed' && (event.data as { message_id?: string }).message_id === messageId);
  }

  it('streams a turn chunk by chunk and ends at its stream_end', async () => {
    const agentId = await createAgent(client);
    const seen: ServerFrame[] = [];
    const session = client.chat(agentId, { onFrame: (frame) => seen.push(frame) });
    try {
      await session.ready();
      const turn = session.send('Hi there, agent');
      expect(turn.messageId).toMatch(/^[0-9a-f-]{36}$/);
      const frames = await collect(turn);
      expect(frames.map((frame) => frame.type)).toEqual(['event', 'stream_start', ...frames.slice(2, -1).map(() => 'stream_chunk'), 'stream_end']);
      expect(frames.length).toBeGreaterThan(3);
      for (const frame of frames) expect((frame as { message_id?: string }).message_id).toBe(turn.messageId);
      const chunks = frames.filter((frame) => frame.type === 'stream_chunk').map((frame) => (frame as { content: string }).content);
      const end = frames.at(-1)!;
      expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Echo: Hi there, agent' });
      expect(chunks.join('')).toBe('Echo: Hi there, agent');
      expect(seen[0]).toMatchObject({ type: 'event', event_type: 'connection_established' });

      // stream: false and a caller's own message id.
      const whole = await collect(session.send('once', { messageId: 'mine-1', stream: false }));
      expect(whole.at(-1)).toMatchObject({ type: 'response', message_id: 'mine-1', content: 'Echo: once', reason: 'stop' });
      expect(session.connections).toBe(1);
    } finally {
      session.close();
    }
  });

  it('a turn cut mid-answer fails with connection_lost, is not run twice, and the session goes on after reconnecting', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { reconnect: FAST_RECONNECT });
    try {
      await session.ready();
      const turn = session.send(longMessage(300));
      const frames: ServerFrame[] = [];
      const cut = (async () => {
        for await (const frame of turn) {
          frames.push(frame);
          if (frames.filter((f) => f.type === 'stream_chunk').length === 3) env.proxy.cut();
        }
      })();
      const lost = await failure(cut);
      expect(lost).toMatchObject({ status: 0, code: 'connection_lost' });
      expect(frames.some((frame) => frame.type === 'stream_end')).toBe(false);

      // The server finishes the turn it was given (the socket's end does not stop a running turn), once.
      await eventually(() => processed(agentId, turn.messageId), 'the cut turn to finish on the server');
      await eventually(() => session.connections === 2, 'the session to reconnect');
      const next = await collect(session.send('after the cut'));
      expect(next.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Echo: after the cut' });
      expect(await timesReceived(agentId, turn.messageId)).toBe(1);
    } finally {
      session.close();
    }
  });

  it('messages sent while the socket is down go out once after the reconnect', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { reconnect: FAST_RECONNECT });
    try {
      await session.ready();
      env.proxy.hold = true;
      env.proxy.cut();
      await eventually(() => !session.connected, 'the socket to drop');
      const first = session.send('queued one');
      const second = session.send('queued two');
      // Several attempts fail while the proxy holds: the messages wait, nothing is sent.
      const before = env.proxy.accepted;
      await eventually(() => env.proxy.accepted >= before + 2, 'reconnect attempts');
      expect(session.connected).toBe(false);
      env.proxy.hold = false;
      const [a, b] = await Promise.all([collect(first), collect(second)]);
      expect(a.at(-1)).toMatchObject({ type: 'stream_end', content: 'Echo: queued one' });
      expect(b.at(-1)).toMatchObject({ type: 'stream_end', content: 'Echo: queued two' });
      expect(await timesReceived(agentId, first.messageId)).toBe(1);
      expect(await timesReceived(agentId, second.messageId)).toBe(1);
    } finally {
      env.proxy.hold = false;
      session.close();
    }
  });

  it('with auth: ticket, every connection (reconnects too) uses a fresh one-time ticket', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { auth: 'ticket', reconnect: FAST_RECONNECT });
    try {
      await session.ready();
      expect((await collect(session.send('by ticket'))).at(-1)).toMatchObject({ type: 'stream_end', content: 'Echo: by ticket' });
      env.proxy.cut();
      await eventually(() => session.connections === 2, 'the session to reconnect with a new ticket');
      expect((await collect(session.send('by another ticket'))).at(-1)).toMatchObject({ type: 'stream_end', content: 'Echo: by another ticket' });
    } finally {
      session.close();
    }
    // A ticket cannot be had without a credential: a 401 at once, no retry.
    const anonymous = createClient({ baseUrl: env.server.url }).chat(agentId, { auth: 'ticket' });
    expect(await failure(anonymous.ready())).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('cancel ends a running turn with reason cancelled; a message id in progress is refused', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId);
    try {
      await session.ready();
      const turn = session.send(longMessage(300), { messageId: 'to-cancel' });
      const again = await failure(collect(session.send('same id', { messageId: 'to-cancel' })));
      expect(again.code).toBe('conflict');
      const frames: ServerFrame[] = [];
      for await (const frame of turn) {
        frames.push(frame);
        if (frame.type === 'stream_chunk' && frames.filter((f) => f.type === 'stream_chunk').length === 1) session.cancel(turn.messageId);
      }
      expect(frames.at(-1)).toMatchObject({ type: 'stream_end', message_id: 'to-cancel', reason: 'cancelled' });
      const next = await collect(session.send('still here'));
      expect(next.at(-1)).toMatchObject({ type: 'stream_end', content: 'Echo: still here' });
    } finally {
      session.close();
    }
  });

  it("a send's abort signal cancels the turn on the server and fails its iterable with aborted", async () => {
    const agentId = await createAgent(client);
    const ends: ServerFrame[] = [];
    const session = client.chat(agentId, { onFrame: (frame) => frame.type === 'stream_end' && ends.push(frame) });
    try {
      await session.ready();
      const controller = new AbortController();
      const turn = session.send(longMessage(300), { signal: controller.signal });
      const aborted = failure(
        (async () => {
          for await (const frame of turn) if (frame.type === 'stream_chunk') controller.abort();
        })(),
      );
      expect(await aborted).toMatchObject({ code: 'aborted' });
      await eventually(() => ends.length === 1, 'the server to end the turn');
      expect(ends[0]).toMatchObject({ message_id: turn.messageId, reason: 'cancelled' });
    } finally {
      session.close();
    }
  });

  it("toolRequest resolves with the tool_result and rejects with the error frame's code", async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId);
    try {
      const result = await session.toolRequest('calculator', { expression: '6*7' });
      expect(result).toMatchObject({ type: 'tool_result', tool: 'calculator', status: 'success' });
      expect(JSON.stringify(result.result)).toContain('42');
      const refused = await failure(session.toolRequest('web_search', { query: 'x' }));
      expect(refused).toMatchObject({ status: 0, code: 'forbidden', docs: '/docs/errors#forbidden' });
      const controller = new AbortController();
      controller.abort();
      expect(await failure(session.toolRequest('calculator', { expression: '1+1' }, { signal: controller.signal }))).toMatchObject({ code: 'aborted' });
      // The same request id twice while the first is unanswered is refused here, before the server.
      const slow = session.toolRequest('calculator', { expression: '2+2' }, { requestId: 'r-twice' });
      expect(await failure(session.toolRequest('calculator', { expression: '3+3' }, { requestId: 'r-twice' }))).toMatchObject({ code: 'conflict' });
      expect(await slow).toMatchObject({ request_id: 'r-twice', status: 'success' });
    } finally {
      session.close();
    }
  });

  it("the session's signal closes it; close() fails what is open with session_closed", async () => {
    const agentId = await createAgent(client);
    const controller = new AbortController();
    const session = client.chat(agentId, { signal: controller.signal });
    await session.ready();
    const turn = session.send(longMessage(300));
    controller.abort();
    expect(await failure(collect(turn))).toMatchObject({ code: 'aborted' });
    expect(await session.closed()).toMatchObject({ code: 'aborted' });
    expect(await failure(collect(session.send('late')))).toMatchObject({ code: 'aborted' });

    const other = client.chat(agentId);
    await other.ready();
    const open = other.send(longMessage(300));
    other.close();
    expect(await failure(collect(open))).toMatchObject({ code: 'session_closed' });
  });

  it('an unknown agent is a 404 and a server that is down a network_error, without retrying', async () => {
    const unknown = client.chat('no-such-agent', { reconnect: FAST_RECONNECT });
    expect(await failure(unknown.ready())).toMatchObject({ status: 404, code: 'not_found' });
    const down = createClient({ baseUrl: 'http://127.0.0.1:1', token: 'x' }).chat('any');
    expect(await failure(down.ready())).toMatchObject({ status: 0, code: 'network_error' });
    const anonymous = createClient({ baseUrl: env.server.url }).chat('any');
    expect(await failure(anonymous.ready())).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('deleting the agent (a 1000 close) ends the session and its events iteration, with no reconnect', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { reconnect: FAST_RECONNECT });
    await session.ready();
    const events = client.events(agentId, { reconnect: FAST_RECONNECT });
    const first = await events.next();
    expect(first.value).toMatchObject({ event_type: 'agent_status' });
    const rest = (async () => {
      const seen: string[] = [];
      for await (const frame of events) seen.push(frame.event_type);
      return seen;
    })();
    await client.transport.request('DELETE', `/v1/agents/${agentId}`);
    expect(await session.closed()).toMatchObject({ code: 'connection_closed' });
    expect(session.connections).toBe(1);
    await rest;
    expect(await failure(collect(session.send('too late')))).toMatchObject({ code: 'connection_closed' });
  });

  it('a 4401 close (the token logged out) ends the session: no reconnect', async () => {
    const own = createClient({ baseUrl: env.proxy.url });
    await own.login('admin', ADMIN_PASSWORD);
    const agentId = await createAgent(own);
    const session = own.chat(agentId, { reconnect: FAST_RECONNECT });
    await session.ready();
    await own.logout();
    expect(await session.closed()).toMatchObject({ status: 401, code: 'unauthorized' });
    expect(session.connections).toBe(1);
  });
});

describe('backoffDelay', () => {
  it('doubles from the first wait up to the cap, with up to half of it random', () => {
    const options = { initialDelayMs: 100, maxDelayMs: 1000 };
    for (let i = 0; i < 200; i++) {
      const waits = [0, 1, 2, 3, 4, 10, 60].map((attempt) => backoffDelay(attempt, options));
      const ceilings = [100, 200, 400, 800, 1000, 1000, 1000];
      waits.forEach((wait, index) => {
        expect(wait).toBeGreaterThanOrEqual(ceilings[index]! / 2);
        expect(wait).toBeLessThanOrEqual(ceilings[index]!);
      });
    }
    const spread = new Set(Array.from({ length: 50 }, () => Math.round(backoffDelay(5))));
    expect(spread.size).toBeGreaterThan(10);
  });
});
