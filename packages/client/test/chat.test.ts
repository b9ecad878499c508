/**
 * `client.chat` against a real server on port 0, through a loopback proxy the spec cuts: a turn
 * streamed chunk by chunk, a turn cut mid-answer (twice) resumed on the next socket by its run
 * (every frame once, the whole answer, the server ran it once), `resume: false` and the bound
 * on resuming (connection_lost), messages sent while the socket is down go out once, cancel,
 * abort signals, tool requests, refusals and a 4401 close.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backoffDelay, createClient, type SentinelClient, type ServerFrame } from '@sentinel/api-client';
import { ADMIN_PASSWORD, createAgent, eventually, longMessage, startLiveEnv, type LiveEnv } from './live-env.js';
import { rejection } from './server.js';

async function collect(turn: AsyncIterable<ServerFrame>): Promise<ServerFrame[]> {
  const frames: ServerFrame[] = [];
  for await (const frame of turn) frames.push(frame);
  return frames;
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

  it('a turn cut mid-answer is resumed on the next socket: every frame once, in seq order, the whole answer, one turn on the server', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { reconnect: FAST_RECONNECT });
    try {
      await session.ready();
      const message = longMessage(300);
      const turn = session.send(message);
      const frames: ServerFrame[] = [];
      for await (const frame of turn) {
        frames.push(frame);
        // Cut twice: once mid-stream, and again right after the first resumed frame.
        const chunks = frames.filter((f) => f.type === 'stream_chunk').length;
        if (chunks === 3 || (session.connections === 2 && chunks === 8)) env.proxy.cut();
      }
      expect(session.connections).toBe(3);
      const end = frames.at(-1)!;
      expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: `Echo: ${message}` });
      // Each frame of the run exactly once, in order, all of the same run.
      const seqs = frames.map((frame) => frame.seq);
      expect(seqs).toEqual(Array.from({ length: frames.length }, (_, i) => i + 1));
      expect(new Set(frames.map((frame) => frame.run_id))).toEqual(new Set([turn.runId]));
      expect(turn.runId).toMatch(/^run_[0-9a-f]{24}$/);
      const chunks = frames.filter((frame) => frame.type === 'stream_chunk').map((frame) => (frame as { content: string }).content);
      expect(chunks.join('')).toBe(`Echo: ${message}`);
      await expect(turn.result).resolves.toMatchObject({ type: 'stream_end', content: `Echo: ${message}` });
      // The server ran the turn once: the resume replayed its journal, no second provider call.
      expect(await timesReceived(agentId, turn.messageId)).toBe(1);
      const run = await client.runs.get(agentId, turn.runId!);
      expect(run).toMatchObject({ status: 'completed', message_id: turn.messageId, output: { content: `Echo: ${message}`, reason: 'stop' } });
      expect(run.last_seq).toBe(frames.length);

      const next = await collect(session.send('after the cut'));
      expect(next.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Echo: after the cut' });
    } finally {
      session.close();
    }
  });

  it('a stream: false turn cut before its response is resumed and still ends with one response', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { reconnect: FAST_RECONNECT });
    try {
      await session.ready();
      const message = longMessage(120);
      const turn = session.send(message, { stream: false });
      let cut = false;
      const frames: ServerFrame[] = [];
      for await (const frame of turn) {
        frames.push(frame);
        // The thinking event comes first; the answer is still being made when the socket goes.
        if (!cut) {
          cut = true;
          env.proxy.cut();
        }
      }
      expect(session.connections).toBe(2);
      expect(frames.some((frame) => frame.type === 'stream_chunk' || frame.type === 'stream_start')).toBe(false);
      expect(frames.at(-1)).toMatchObject({ type: 'response', content: `Echo: ${message}`, reason: 'stop' });
      expect(await timesReceived(agentId, turn.messageId)).toBe(1);
    } finally {
      session.close();
    }
  });

  it('with resume: false a cut turn fails with connection_lost, is not run twice, and the session goes on', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId, { reconnect: FAST_RECONNECT, resume: false });
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
      const lost = await rejection(cut);
      expect(lost).toMatchObject({ status: 0, code: 'connection_lost' });
      expect(await rejection(turn.result)).toMatchObject({ code: 'connection_lost' });
      expect(frames.some((frame) => frame.type === 'stream_end')).toBe(false);

      // The run goes on without the socket (closing it cancels nothing), once.
      await eventually(() => processed(agentId, turn.messageId), 'the cut turn to finish on the server');
      expect((await client.runs.get(agentId, turn.runId!)).status).toBe('completed');
      await eventually(() => session.connections === 2, 'the session to reconnect');
      const next = await collect(session.send('after the cut'));
      expect(next.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Echo: after the cut' });
      expect(await timesReceived(agentId, turn.messageId)).toBe(1);
    } finally {
      session.close();
    }
  });

  it('resuming is bounded: a turn whose new sockets drop before any of its frames fails with connection_lost after maxAttempts', async () => {
    const agentId = await createAgent(client);
    let armed = false;
    // Every socket opened while armed is cut as soon as the server greets it, before the
    // resumed frames can come: drops in a row with no progress.
    const session = client.chat(agentId, {
      reconnect: FAST_RECONNECT,
      resume: { maxAttempts: 2 },
      onFrame: (frame) => {
        if (armed && frame.type === 'event' && frame.event_type === 'connection_established') env.proxy.cut();
      },
    });
    try {
      await session.ready();
      const turn = session.send(longMessage(300));
      const seen: ServerFrame[] = [];
      const read = (async () => {
        for await (const frame of turn) {
          seen.push(frame);
          if (seen.filter((f) => f.type === 'stream_chunk').length === 3) {
            armed = true;
            env.proxy.cut();
          }
        }
      })();
      expect(await rejection(read)).toMatchObject({ code: 'connection_lost' });
      // The first drop and two resumed sockets cut at once: three drops, the third gives up.
      expect(session.connections).toBe(3);
      armed = false;
      // The run was not lost with the turn: it finishes on the server.
      await eventually(() => processed(agentId, turn.messageId), 'the run to finish on the server');
      expect(await timesReceived(agentId, turn.messageId)).toBe(1);
    } finally {
      armed = false;
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
    expect(await rejection(anonymous.ready())).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('cancel ends a running turn with reason cancelled; a message id in progress is refused', async () => {
    const agentId = await createAgent(client);
    const session = client.chat(agentId);
    try {
      await session.ready();
      const turn = session.send(longMessage(300), { messageId: 'to-cancel' });
      const again = await rejection(collect(session.send('same id', { messageId: 'to-cancel' })));
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
      const aborted = rejection(
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
      const refused = await rejection(session.toolRequest('web_search', { query: 'x' }));
      expect(refused).toMatchObject({ status: 0, code: 'forbidden', docs: '/docs/errors#forbidden' });
      const controller = new AbortController();
      controller.abort();
      expect(await rejection(session.toolRequest('calculator', { expression: '1+1' }, { signal: controller.signal }))).toMatchObject({ code: 'aborted' });
      // The same request id twice while the first is unanswered is refused here, before the server.
      const slow = session.toolRequest('calculator', { expression: '2+2' }, { requestId: 'r-twice' });
      expect(await rejection(session.toolRequest('calculator', { expression: '3+3' }, { requestId: 'r-twice' }))).toMatchObject({ code: 'conflict' });
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
    expect(await rejection(collect(turn))).toMatchObject({ code: 'aborted' });
    expect(await session.closed()).toMatchObject({ code: 'aborted' });
    expect(await rejection(collect(session.send('late')))).toMatchObject({ code: 'aborted' });

    const other = client.chat(agentId);
    await other.ready();
    const open = other.send(longMessage(300));
    other.close();
    expect(await rejection(collect(open))).toMatchObject({ code: 'session_closed' });
  });

  it('an unknown agent is a 404 and a server that is down a network_error, without retrying', async () => {
    const unknown = client.chat('no-such-agent', { reconnect: FAST_RECONNECT });
    expect(await rejection(unknown.ready())).toMatchObject({ status: 404, code: 'not_found' });
    const down = createClient({ baseUrl: 'http://127.0.0.1:1', token: 'x' }).chat('any');
    expect(await rejection(down.ready())).toMatchObject({ status: 0, code: 'network_error' });
    const anonymous = createClient({ baseUrl: env.server.url }).chat('any');
    expect(await rejection(anonymous.ready())).toMatchObject({ status: 401, code: 'unauthorized' });
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
    expect(await rejection(collect(session.send('too late')))).toMatchObject({ code: 'connection_closed' });
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
