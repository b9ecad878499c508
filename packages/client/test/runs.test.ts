/**
 * `client.runs` against a real server on port 0 (SQLite), through a loopback proxy the spec
 * cuts: a run created over REST and waited for, its SSE stream cut twice mid-answer and resumed
 * by the SDK with Last-Event-ID (every frame once, in seq order), `since`, the same
 * Idempotency-Key twice (one run, one turn on the server), listing page by page with a status
 * filter, cancelling, a tool call approved and one refused over REST, and the chat session's
 * `tool_approval_required` frames decided with `session.approve`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type RunFrame, type SentinelClient, type ServerFrame } from '@sentinel/api-client';
import { ADMIN_PASSWORD, createAgent, eventually, longMessage, startLiveEnv, type LiveEnv } from './live-env.js';
import { rejection } from './server.js';

const FAST = { initialDelayMs: 20, maxDelayMs: 100 };

describe('client.runs', () => {
  let env: LiveEnv;
  let client: SentinelClient;
  let approvalImage: string;

  beforeAll(async () => {
    env = await startLiveEnv(5);
    client = createClient({ baseUrl: env.proxy.url });
    await client.login('admin', ADMIN_PASSWORD);
    approvalImage = (
      await client.images.build({ name: 'demo/gated', tag: 'v1', model: { provider: 'echo', name: 'echo' }, tools: [{ name: 'calculator', approval: 'required' }] })
    ).id;
  });

  afterAll(async () => {
    await env?.close();
  });

  async function timesReceived(agentId: string, messageId: string): Promise<number> {
    const events = await env.api.store.listEvents(agentId, 0, 10_000);
    return events.filter((event) => event.event_type === 'message_received' && (event.data as { message_id?: string }).message_id === messageId).length;
  }

  async function gatedAgent(): Promise<string> {
    return (await client.agents.create({ image: approvalImage, name: `gated-${Math.random().toString(16).slice(2, 10)}` })).id;
  }

  it('creates a run, waits for it, and reads it back', async () => {
    const agentId = await createAgent(client);
    const run = await client.runs.create(agentId, { content: 'Hello, runs' });
    expect(run).toMatchObject({ agent_id: agentId, input: { content: 'Hello, runs' } });
    expect(run.id).toMatch(/^run_[0-9a-f]{24}$/);
    expect(['queued', 'running', 'completed']).toContain(run.status);
    const done = await client.runs.wait(agentId, run.id, { timeoutSeconds: 20 });
    expect(done).toMatchObject({ id: run.id, status: 'completed', output: { content: 'Echo: Hello, runs', reason: 'stop' }, error: null });
    expect(done.last_seq).toBeGreaterThan(2);
    expect(await client.runs.get(agentId, run.id)).toEqual(done);
    expect(await rejection(client.runs.get(agentId, 'run_000000000000000000000000'))).toMatchObject({ status: 404, code: 'not_found' });
  });

  it('streams a run over SSE and resumes by itself with Last-Event-ID after the connection is cut, twice', async () => {
    const agentId = await createAgent(client);
    const message = longMessage(300);
    const run = await client.runs.create(agentId, { content: message });
    const frames: RunFrame[] = [];
    let cuts = 0;
    for await (const frame of client.runs.stream(agentId, run.id, { reconnect: FAST })) {
      frames.push(frame);
      const chunks = frames.filter((f) => f.type === 'stream_chunk').length;
      if ((cuts === 0 && chunks === 3) || (cuts === 1 && chunks === 20)) {
        cuts += 1;
        env.proxy.cut();
      }
    }
    expect(cuts).toBe(2);
    expect(frames.map((frame) => frame.seq)).toEqual(Array.from({ length: frames.length }, (_, i) => i + 1));
    expect(frames.every((frame) => frame.run_id === run.id)).toBe(true);
    expect(frames.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop', content: `Echo: ${message}` });
    const text = frames.filter((frame) => frame.type === 'stream_chunk').map((frame) => (frame as { content: string }).content);
    expect(text.join('')).toBe(`Echo: ${message}`);

    // Streaming an ended run replays its journal; `since` starts after a seq.
    const replay: RunFrame[] = [];
    for await (const frame of client.runs.stream(agentId, run.id, { since: frames.length - 2 })) replay.push(frame);
    expect(replay.map((frame) => frame.seq)).toEqual([frames.length - 1, frames.length]);
    expect(await timesReceived(agentId, run.message_id)).toBe(1);
  });

  it('a stream whose reconnects are refused gives up with connection_lost after its attempts', async () => {
    const agentId = await createAgent(client);
    const run = await client.runs.create(agentId, { content: longMessage(300) });
    const frames: RunFrame[] = [];
    const read = (async () => {
      for await (const frame of client.runs.stream(agentId, run.id, { reconnect: { ...FAST, maxAttempts: 2 } })) {
        frames.push(frame);
        if (frames.length === 3) {
          env.proxy.hold = true;
          env.proxy.cut();
        }
      }
    })();
    try {
      expect(await rejection(read)).toMatchObject({ code: 'connection_lost' });
      // Frames already on the wire when the cut came are still delivered; the terminal one never came.
      expect(frames.length).toBeGreaterThanOrEqual(3);
      expect(frames.map((frame) => frame.seq)).toEqual(Array.from({ length: frames.length }, (_, i) => i + 1));
      expect(frames.some((frame) => frame.type === 'stream_end')).toBe(false);
    } finally {
      env.proxy.hold = false;
    }
    // The run went on without a reader.
    expect((await client.runs.wait(agentId, run.id, { timeoutSeconds: 20 })).status).toBe('completed');
  });

  it('the same Idempotency-Key twice is one run and one turn; with another body it is idempotency_conflict', async () => {
    const agentId = await createAgent(client);
    const key = `key-${Date.now()}`;
    const first = await client.runs.create(agentId, { content: 'only once' }, { idempotencyKey: key });
    const second = await client.runs.create(agentId, { content: 'only once' }, { idempotencyKey: key });
    expect(second.id).toBe(first.id);
    expect(await rejection(client.runs.create(agentId, { content: 'something else' }, { idempotencyKey: key }))).toMatchObject({ status: 409, code: 'idempotency_conflict' });
    await client.runs.wait(agentId, first.id, { timeoutSeconds: 20 });
    expect(await timesReceived(agentId, first.message_id)).toBe(1);
  });

  it('lists runs newest first, page by page, and by status', async () => {
    const agentId = await createAgent(client);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const run = await client.runs.create(agentId, { content: `number ${i}` });
      await client.runs.wait(agentId, run.id, { timeoutSeconds: 20 });
      made.push(run.id);
    }
    const page = await client.runs.page(agentId, { limit: 2 });
    expect(page.runs.map((run) => run.id)).toEqual([made[4], made[3]]);
    expect(page.next).toBe(made[3]);
    const all: string[] = [];
    for await (const run of client.runs.list(agentId, { limit: 2 })) all.push(run.id);
    expect(all).toEqual([...made].reverse());
    const completed: string[] = [];
    for await (const run of client.runs.list(agentId, { status: 'completed' })) completed.push(run.id);
    expect(completed).toHaveLength(5);
    for await (const run of client.runs.list(agentId, { status: 'failed' })) throw new Error(`no run failed, yet ${run.id} is listed`);
  });

  it('cancels a running run (partial output kept); cancelling it again returns it unchanged', async () => {
    const agentId = await createAgent(client);
    const run = await client.runs.create(agentId, { content: longMessage(400) });
    for await (const frame of client.runs.stream(agentId, run.id)) if (frame.type === 'stream_chunk') break;
    const cancelled = await client.runs.cancel(agentId, run.id);
    const ended = cancelled.status === 'cancelled' ? cancelled : await client.runs.wait(agentId, run.id, { timeoutSeconds: 20 });
    expect(ended.status).toBe('cancelled');
    expect(ended.output?.reason).toBe('cancelled');
    expect(ended.output?.content.startsWith('Echo: word0')).toBe(true);
    expect(await client.runs.cancel(agentId, run.id)).toEqual(ended);
  });

  it('a gated tool call waits in requires_action; approve runs it, a refusal goes back to the model', async () => {
    const agentId = await gatedAgent();
    const run = await client.runs.create(agentId, { content: '/tool calculator {"expression":"6*7"}' });
    const waiting = await client.runs.wait(agentId, run.id, { timeoutSeconds: 20 });
    expect(waiting.status).toBe('requires_action');
    const request = waiting.required_action!.requests[0]!;
    expect(request).toMatchObject({ tool: 'calculator', parameters: { expression: '6*7' } });
    await client.runs.approve(agentId, run.id, { request_id: request.request_id, approve: true });
    const approved = await client.runs.wait(agentId, run.id, { timeoutSeconds: 20 });
    expect(approved.status).toBe('completed');
    expect(approved.output?.content).toContain('42');

    const second = await client.runs.create(agentId, { content: '/tool calculator {"expression":"1+1"}' });
    const pending = await client.runs.wait(agentId, second.id, { timeoutSeconds: 20 });
    const refused = pending.required_action!.requests[0]!;
    await client.runs.approve(agentId, second.id, { request_id: refused.request_id, approve: false, reason: 'not today' });
    const denied = await client.runs.wait(agentId, second.id, { timeoutSeconds: 20 });
    expect(denied.status).toBe('completed');
    expect(denied.output?.content).toContain('not today');
    expect(denied.output?.content).not.toContain('"result":2}');
    // The stream of the run holds the request and the decision, in order.
    const types: string[] = [];
    for await (const frame of client.runs.stream(agentId, second.id)) types.push(frame.type === 'event' ? `event:${frame.event_type}` : frame.type);
    expect(types).toContain('tool_approval_required');
    expect(types.indexOf('tool_approval_required')).toBeLessThan(types.indexOf('event:tool_approval'));
    expect(types.at(-1)).toBe('stream_end');
  });

  it('a chat session surfaces tool_approval_required and decides it with session.approve; the answer goes on in the same turn', async () => {
    const agentId = await gatedAgent();
    const session = client.chat(agentId, { reconnect: FAST });
    try {
      await session.ready();
      const collect = async (content: string, approve: boolean, reason?: string): Promise<ServerFrame[]> => {
        const frames: ServerFrame[] = [];
        for await (const frame of session.send(content)) {
          frames.push(frame);
          if (frame.type === 'tool_approval_required') {
            expect(session.pendingApprovals().map((p) => p.request_id)).toEqual([frame.request_id]);
            await session.approve(frame.request_id, approve, reason);
          }
        }
        return frames;
      };
      const yes = await collect('/tool calculator {"expression":"6*7"}', true);
      const asked = yes.find((frame) => frame.type === 'tool_approval_required');
      expect(asked).toMatchObject({ tool: 'calculator', parameters: { expression: '6*7' } });
      expect(yes.find((frame) => frame.type === 'tool_result')).toMatchObject({ tool: 'calculator', status: 'success' });
      expect(yes.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop' });
      expect((yes.at(-1) as { content: string }).content).toContain('42');
      expect(session.pendingApprovals()).toEqual([]);

      const no = await collect('/tool calculator {"expression":"2+2"}', false, 'no maths now');
      expect(no.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop' });
      expect((no.at(-1) as { content: string }).content).toContain('no maths now');

      // Deciding a request nobody waits for is the server's error, as a rejection.
      expect(await rejection(session.approve('apr_0000000000000000', true))).toMatchObject({ status: 0 });
    } finally {
      session.close();
    }
  });

  it('a session cut while its turn waits for approval resumes the run, and the decision sent after the reconnect finishes it', async () => {
    const agentId = await gatedAgent();
    const session = client.chat(agentId, { reconnect: FAST });
    try {
      await session.ready();
      const turn = session.send('/tool calculator {"expression":"5*5"}');
      const frames: ServerFrame[] = [];
      for await (const frame of turn) {
        frames.push(frame);
        if (frame.type === 'tool_approval_required') {
          env.proxy.cut();
          await eventually(() => session.connections === 2, 'the session to reconnect');
          await session.approve(frame.request_id, true);
        }
      }
      expect(frames.filter((frame) => frame.type === 'tool_approval_required')).toHaveLength(1);
      expect(frames.map((frame) => frame.seq)).toEqual(Array.from({ length: frames.length }, (_, i) => i + 1));
      expect((frames.at(-1) as { content: string }).content).toContain('25');
      expect(await timesReceived(agentId, turn.messageId)).toBe(1);
    } finally {
      session.close();
    }
  });
});
