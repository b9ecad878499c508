/**
 * Several `sentinel api` processes behaving as one server: three built binaries on their own
 * ports, one fresh PostgreSQL database, one Redis (the shared one, under a key prefix of this
 * run's own, given as `?prefix=` in the bus URL), the same token secret. Real processes, real
 * HTTP and WebSocket clients; the last test kills one instance with SIGKILL mid-turn.
 */
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInstances, type Instance, type Instances } from './instances.js';
import { callJson as call } from './spawn-cli.js';

/** Short, so the test that kills a lock holder sees the lock expire soon. */
const TURN_LEASE_MS = 1500;

type Frame = Record<string, any>;

interface Socket {
  readonly name: string;
  readonly ws: WebSocket;
  readonly frames: Frame[];
  readonly closed: Promise<{ code: number; reason: string }>;
  send(frame: Record<string, unknown>): void;
  waitFor(predicate: (frame: Frame) => boolean, what: string, timeoutMs?: number): Promise<Frame>;
  terminal(messageId: string): Frame | undefined;
}

/** Frames of every socket in the order this process received them. */
const timeline: { socket: string; frame: Frame }[] = [];
const sockets: WebSocket[] = [];

function openSocket(name: string, url: string, token: string): Promise<Socket> {
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
  sockets.push(ws);
  const frames: Frame[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    frames.push(frame);
    timeline.push({ socket: name, frame });
    for (const waiter of [...waiters]) waiter();
  });
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const waitFor = (predicate: (frame: Frame) => boolean, what: string, timeoutMs = 15_000): Promise<Frame> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${name}: timed out waiting for ${what}; last frames ${JSON.stringify(frames.slice(-4))}`));
      }, timeoutMs);
      const check = (): void => {
        const found = frames.find(predicate);
        if (found === undefined) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(found);
      };
      waiters.add(check);
      check();
    });
  const socket: Socket = {
    name,
    ws,
    frames,
    closed,
    send: (frame) => ws.send(JSON.stringify(frame)),
    waitFor,
    terminal: (messageId) => frames.find((f) => f.message_id === messageId && (f.type === 'stream_end' || f.type === 'response' || f.type === 'error')),
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(socket));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`${name}: upgrade refused with ${res.statusCode}`)));
  });
}

/** A message the echo provider answers in about 100 chunks of 15 ms: long enough to act mid-turn. */
function longMessage(tag: string): string {
  return Array.from({ length: 200 }, (_, i) => `${tag}${i}`).join(' ');
}

describe('several sentinel api instances on one PostgreSQL and one Redis', () => {
  let instances: Instances;
  let a: Instance;
  let b: Instance;
  let c: Instance;
  let token: string;

  async function createAgent(on: Instance, name: string): Promise<string> {
    const created = await call('POST', `${on.url}/v1/agents`, token, { image: 'sentinel/echo:latest', name });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    return created.json.id as string;
  }

  const chat = (on: Instance, agentId: string) => openSocket(`${on.name}:chat`, `${on.ws}/v1/agents/${agentId}/chat`, token);
  const events = (on: Instance, agentId: string) => openSocket(`${on.name}:events`, `${on.ws}/v1/agents/${agentId}/events?since=0`, token);

  beforeAll(async () => {
    instances = await createInstances('sentinel-multi-', { bus: { turn_lease_ms: String(TURN_LEASE_MS) } });
    // All three at once: the first start migrates the fresh database under a lock, the others wait.
    [a, b, c] = await Promise.all([instances.start('a'), instances.start('b'), instances.start('c')]);
    token = await instances.login(b);
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets.splice(0)) socket.terminate();
    await instances?.close();
  });

  it('all three are ready, and an agent created on A is listed on B and C', async () => {
    for (const on of [a, b, c]) {
      expect(await call('GET', `${on.url}/v1/ready`, undefined)).toMatchObject({ status: 200, json: { status: 'ready', store: 'ok', bus: 'ok' } });
    }
    const id = await createAgent(a, 'listed-everywhere');
    for (const on of [b, c]) {
      const listed = await call('GET', `${on.url}/v1/agents`, token);
      expect(listed.json.agents.map((agent: any) => agent.id)).toContain(id);
    }
  });

  it('an events client on B sees a chat turn driven on A, in seq order, with no duplicates', async () => {
    const id = await createAgent(a, 'events-across');
    const follower = await events(b, id);
    const talker = await chat(a, id);
    for (const n of [1, 2]) talker.send({ type: 'message', content: `hello number ${n}`, message_id: `ev-${n}` });
    await talker.waitFor((f) => f.type === 'stream_end' && f.message_id === 'ev-2', 'the second answer');
    await follower.waitFor((f) => f.event_type === 'message_processed' && f.data?.message_id === 'ev-2', 'message_processed of ev-2 on B');
    const seqs = follower.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    const kinds = follower.frames.filter((f) => f.data?.message_id !== undefined).map((f) => `${f.event_type}:${f.data.message_id}`);
    expect(kinds).toEqual(['message_received:ev-1', 'message_processed:ev-1', 'message_received:ev-2', 'message_processed:ev-2']);
  });

  it('answers concurrent messages to one agent through A and B one at a time, each client in its order', async () => {
    const id = await createAgent(a, 'one-at-a-time');
    const [onA, onB] = await Promise.all([chat(a, id), chat(b, id)]);
    const from = timeline.length;
    onA.send({ type: 'message', content: longMessage('a1-'), message_id: 'a-1' });
    onB.send({ type: 'message', content: longMessage('b1-'), message_id: 'b-1' });
    onA.send({ type: 'message', content: 'second from A', message_id: 'a-2' });
    onB.send({ type: 'message', content: 'second from B', message_id: 'b-2' });
    await Promise.all([
      onA.waitFor((f) => f.type === 'stream_end' && f.message_id === 'a-2', 'a-2 answered', 30_000),
      onB.waitFor((f) => f.type === 'stream_end' && f.message_id === 'b-2', 'b-2 answered', 30_000),
    ]);
    const marks = timeline
      .slice(from)
      .filter(({ socket, frame }) => socket.endsWith(':chat') && (frame.type === 'stream_start' || frame.type === 'stream_end'))
      .map(({ frame }) => `${frame.type === 'stream_start' ? 'start' : 'end'}:${frame.message_id}`);
    // Never two turns at once: every start is followed by the end of the same message.
    expect(marks).toHaveLength(8);
    for (let i = 0; i < marks.length; i += 2) {
      const started = marks[i]?.split(':')[1];
      expect(marks[i + 1], `after ${marks[i]}`).toBe(`end:${started}`);
    }
    const order = marks.filter((m) => m.startsWith('start:')).map((m) => m.slice(6));
    expect(order.indexOf('a-1')).toBeLessThan(order.indexOf('a-2'));
    expect(order.indexOf('b-1')).toBeLessThan(order.indexOf('b-2'));
    for (const [socket, ids] of [
      [onA, ['a-1', 'a-2']],
      [onB, ['b-1', 'b-2']],
    ] as const) {
      for (const messageId of ids) expect(socket.terminal(messageId)).toMatchObject({ type: 'stream_end', reason: 'stop' });
    }
  });

  it('a cancel sent to A aborts the turn running on B', async () => {
    const id = await createAgent(a, 'cancel-across');
    const onB = await chat(b, id);
    const onA = await chat(a, id);
    onB.send({ type: 'message', content: longMessage('c-'), message_id: 'x-1' });
    await onB.waitFor((f) => f.type === 'stream_chunk' && f.message_id === 'x-1', 'the first chunk on B');
    onA.send({ type: 'cancel', message_id: 'x-1' });
    await onA.waitFor((f) => f.event_type === 'cancel_requested' && f.message_id === 'x-1', 'the cancel acknowledged on A');
    const end = await onB.waitFor((f) => f.type === 'stream_end' && f.message_id === 'x-1', 'the cancelled end on B');
    expect(end.reason).toBe('cancelled');
    expect(end.content.length).toBeLessThan(longMessage('c-').length);
  });

  it('deleting an agent on A closes its sockets on B with 1000', async () => {
    const id = await createAgent(a, 'delete-across');
    const onB = await chat(b, id);
    const follower = await events(c, id);
    onB.send({ type: 'message', content: longMessage('d-'), message_id: 'del-1' });
    await onB.waitFor((f) => f.type === 'stream_chunk' && f.message_id === 'del-1', 'the turn running on B');
    expect((await call('DELETE', `${a.url}/v1/agents/${id}`, token)).status).toBe(204);
    expect(await onB.closed).toMatchObject({ code: 1000 });
    expect(await follower.closed).toMatchObject({ code: 1000 });
    expect(onB.terminal('del-1')).toMatchObject({ type: 'stream_end', reason: 'deleted' });
    expect((await call('GET', `${b.url}/v1/agents/${id}`, token)).status).toBe(404);
  });

  it('a password changed on A: B refuses the old token within 1 s, and takes the new one', async () => {
    expect((await call('POST', `${a.url}/v1/users`, token, { username: 'hanna', password: 'hanna-password-1' })).status).toBe(201);
    const old = (await call('POST', `${b.url}/v1/auth/login`, undefined, { username: 'hanna', password: 'hanna-password-1' })).json.token as string;
    // B and C verify it and cache the account: only the announcement over Redis can tell them.
    for (const on of [b, c]) expect((await call('GET', `${on.url}/v1/agents`, old)).status).toBe(200);
    const changed = await call('PUT', `${a.url}/v1/users/hanna/password`, old, { current_password: 'hanna-password-1', new_password: 'hanna-password-2' });
    expect(changed.status).toBe(204);
    const changedAt = Date.now();
    let refused: { status: number; json: any } | undefined;
    while (Date.now() - changedAt < 1000) {
      const r = await call('GET', `${b.url}/v1/agents`, old);
      if (r.status === 401) {
        refused = r;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(refused?.json).toEqual({ error: 'token revoked', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    expect(Date.now() - changedAt).toBeLessThan(1000);
    expect((await call('GET', `${c.url}/v1/agents`, old)).status).toBe(401);
    const fresh = (await call('POST', `${a.url}/v1/auth/login`, undefined, { username: 'hanna', password: 'hanna-password-2' })).json.token as string;
    for (const on of [b, c]) expect((await call('GET', `${on.url}/v1/agents`, fresh)).status).toBe(200);
  });

  it('kill -9 of an instance mid-turn: its clients get a close, the lock expires, the others carry on, nothing acknowledged is lost', async () => {
    const id = await createAgent(a, 'survivor');
    const onC = await chat(c, id);
    onC.send({ type: 'message', content: 'answered before the crash', message_id: 'k-1' });
    await onC.waitFor((f) => f.type === 'stream_end' && f.message_id === 'k-1', 'k-1 answered');
    onC.send({ type: 'message', content: longMessage('k-'), message_id: 'k-2' });
    await onC.waitFor((f) => f.type === 'stream_chunk' && f.message_id === 'k-2', 'k-2 streaming');

    const onA = await chat(a, id);
    onA.send({ type: 'message', content: 'after the crash', message_id: 'k-3' });
    c.process.child.kill('SIGKILL');
    const killedAt = Date.now();
    expect((await onC.closed).code).toBe(1006);

    // A's message waited for the dead instance's lock to expire, then was answered.
    const answer = await onA.waitFor((f) => f.type === 'stream_end' && f.message_id === 'k-3', 'k-3 answered', 20_000);
    expect(answer).toMatchObject({ reason: 'stop', content: 'Echo: after the crash' });
    // It waited for the lease (renewed every lease/3 until the kill) to run out, and not much more.
    const waited = Date.now() - killedAt;
    expect(waited).toBeGreaterThan(TURN_LEASE_MS - TURN_LEASE_MS / 3 - 100);
    expect(waited).toBeLessThan(TURN_LEASE_MS + 5000);

    // What C acknowledged is in the Store: the answered turn, and the message whose turn died.
    const follower = await events(b, id);
    await follower.waitFor((f) => f.event_type === 'message_processed' && f.data?.message_id === 'k-3', 'the replay on B');
    const processed = follower.frames.filter((f) => f.event_type === 'message_processed').map((f) => f.data.message_id);
    expect(processed).toEqual(['k-1', 'k-3']);
    expect(follower.frames.filter((f) => f.event_type === 'message_received').map((f) => f.data.message_id)).toEqual(['k-1', 'k-2', 'k-3']);
    const agent = await call('GET', `${b.url}/v1/agents/${id}`, token);
    expect(agent.json.api_usage.requests).toBe(2);
    // The survivors still serve.
    for (const on of [a, b]) expect((await call('GET', `${on.url}/v1/ready`, undefined)).status).toBe(200);

    // The run C was answering is not left running: once C's heartbeat key expired, a survivor's
    // sweep ended it failed / interrupted, and a resume through A gets its terminal error frame.
    const runId = onC.frames.find((f) => f.message_id === 'k-2' && f.run_id !== undefined)!.run_id as string;
    onA.send({ type: 'resume', run_id: runId });
    const end = await onA.waitFor((f) => f.run_id === runId && (f.type === 'error' || f.type === 'stream_end'), 'the interrupted end of k-2', 40_000);
    expect(end).toMatchObject({ type: 'error', code: 'interrupted', message_id: 'k-2' });
  }, 90_000);
});
