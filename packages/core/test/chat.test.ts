import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildAgentImage,
  createSentinelApi,
  isSentinelError,
  parseAgentDefinition,
  silentLogger,
  SentinelError,
  type FrameSink,
  type ModelProvider,
  type Outgoing,
  type Principal,
  type ProviderEvent,
  type ProviderRequest,
  type RequestOrigin,
  type RouteContext,
  type SentinelApi,
  type StreamCloseReason,
} from '@sentinel/api-core';

// ---- harness -----------------------------------------------------------------------------------

type Frame = Record<string, any>;
type SinkEntry = { kind: 'frame'; frame: Frame } | { kind: 'close'; reason: StreamCloseReason; message: string };

/** The core's own FrameSink interface, recording what a transport would write. */
class RecordingSink implements FrameSink {
  readonly log: SinkEntry[] = [];
  send(out: Outgoing): void {
    // Through the JSON text, as a transport sends it.
    this.log.push({ kind: 'frame', frame: JSON.parse(out.json) as Frame });
  }
  close(reason: StreamCloseReason, message: string): void {
    this.log.push({ kind: 'close', reason, message });
  }
  get frames(): Frame[] {
    return this.log.flatMap((e) => (e.kind === 'frame' ? [e.frame] : []));
  }
  get closed(): { reason: StreamCloseReason; message: string } | undefined {
    const entry = this.log.find((e) => e.kind === 'close');
    return entry?.kind === 'close' ? { reason: entry.reason, message: entry.message } : undefined;
  }
  of(id: string): Frame[] {
    return this.frames.filter((f) => f.message_id === id || f.request_id === id);
  }
}

const TERMINAL = new Set(['stream_end', 'response', 'error']);
const terminals = (sink: RecordingSink, id: string) => sink.of(id).filter((f) => TERMINAL.has(f.type as string));

async function until<T>(fn: () => T | undefined | false | null, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A provider the test steers: streams "partial ", then waits for release() (or the abort), then "done". */
class GateProvider implements ModelProvider {
  readonly name = 'gate';
  open = false;
  private waiters: Array<() => void> = [];
  release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
  get waiting(): number {
    return this.waiters.length;
  }
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    yield { type: 'text', delta: 'partial ' };
    if (!this.open) {
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
    }
    yield { type: 'text', delta: 'done' };
    yield { type: 'usage', input_tokens: 10, output_tokens: 2 };
    yield { type: 'finish', reason: 'stop' };
  }
}

/** Records every request, answers like echo in one chunk. */
class RecorderProvider implements ModelProvider {
  readonly name = 'recorder';
  readonly requests: ProviderRequest[] = [];
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    this.requests.push(req);
    const last = req.messages.at(-1);
    yield { type: 'text', delta: `Recorded: ${last?.content ?? ''}` };
    yield { type: 'finish', reason: 'stop' };
  }
}

/** Fails: `upstream_error` for "upstream", an internal error with a secret for "crash", else answers. */
class FailingProvider implements ModelProvider {
  readonly name = 'failing';
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    const last = req.messages.at(-1)?.content ?? '';
    yield { type: 'text', delta: 'about to ' };
    if (last === 'upstream') throw new SentinelError('upstream_error', 'model service answered 503');
    if (last === 'crash') throw new Error('connection string postgres://admin:hunter2@db');
    yield { type: 'text', delta: 'answer' };
    yield { type: 'finish', reason: 'stop' };
  }
}

/** Streams one chunk, then hangs forever, ignoring its signal. */
class StubbornProvider implements ModelProvider {
  readonly name = 'stubborn';
  async *stream(): AsyncIterable<ProviderEvent> {
    yield { type: 'text', delta: 'stuck' };
    await new Promise(() => {});
  }
}

/** Calls the calculator on every round, never answering. */
class LoopingProvider implements ModelProvider {
  readonly name = 'looper';
  private n = 0;
  async *stream(): AsyncIterable<ProviderEvent> {
    this.n++;
    yield { type: 'tool_call', call: { id: `loop_${this.n}`, name: 'calculator', arguments: { expression: `${this.n}+1` } } };
    yield { type: 'usage', input_tokens: 1, output_tokens: 1 };
    yield { type: 'finish', reason: 'tool_calls' };
  }
}

const origin: RequestOrigin = { secure: false, host: 'localhost:8080' };
const alice: Principal = { username: 'alice', role: 'user' };
const bob: Principal = { username: 'bob', role: 'user' };

describe('AgentChatService (core chat protocol) on SQLite', () => {
  let dir: string;
  let api: SentinelApi;
  const gate = new GateProvider();
  const recorder = new RecorderProvider();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-chat-'));
    // A chat burst of 200 frames is about queueing, not limits (rate-limit.test.ts covers those).
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1', runtime: { echoChunkDelayMs: 1 }, rateLimits: { chat: 0 } });
    await api.users.create({ username: 'alice', password: 'alice-password' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    api.providers.register(gate).register(recorder).register(new FailingProvider()).register(new StubbornProvider()).register(new LoopingProvider());
    for (const provider of ['gate', 'recorder', 'failing', 'stubborn', 'looper']) {
      await api.images.build(
        parseAgentDefinition({ name: `test/${provider}`, model: { provider, name: 'm1' }, instructions: `You are the ${provider} agent.`, tools: ['calculator'] }),
      );
    }
  });

  afterAll(async () => {
    gate.open = true;
    gate.release();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function agent(image = 'sentinel/echo', owner: Principal = alice): Promise<string> {
    return (await api.agents.create(owner, { image }, origin)).id;
  }

  async function openChat(agentId: string, principal: Principal = alice) {
    const sink = new RecordingSink();
    const prepared = await api.chat.prepare(principal, agentId);
    const session = prepared.open(sink);
    return { sink, session, send: (frame: Record<string, unknown>) => session.receive(JSON.stringify(frame)) };
  }

  function routeCtx(principal: Principal): RouteContext {
    return { principal, requestId: 'test', signal: new AbortController().signal, log: silentLogger, origin, remoteAddress: '127.0.0.1' };
  }

  async function lifecycle(action: 'stop' | 'start', id: string, principal: Principal = alice) {
    const route = api.routes.find((r) => r.method === 'POST' && r.path === `/v1/agents/:id/${action}`);
    if (!route) throw new Error(`no ${action} route`);
    return api.invoke(route, { params: { id }, query: {} }, routeCtx(principal));
  }

  it('sends the welcome frame first', async () => {
    const id = await agent();
    const { sink } = await openChat(id);
    const record = await api.store.getAgent(id);
    expect(sink.frames).toHaveLength(1);
    expect(sink.frames[0]).toMatchObject({
      type: 'event',
      event_type: 'connection_established',
      data: { agent_id: id, agent_name: record?.name, status: 'running' },
    });
    expect(Date.parse(sink.frames[0]?.timestamp as string)).not.toBeNaN();
  });

  it('refuses another user\'s agent with not_found', async () => {
    const id = await agent();
    await expect(api.chat.prepare(bob, id)).rejects.toMatchObject({ code: 'not_found' });
    await expect(api.chat.prepare(alice, 'nope')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('streams: thinking, stream_start, chunks from index 0, stream_end with the full content; usage is counted', async () => {
    const id = await agent();
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'hello there, general kenobi', message_id: 'm-1' });
    const [end] = await until(() => terminals(sink, 'm-1').length > 0 && terminals(sink, 'm-1'), 'stream_end');
    const frames = sink.of('m-1');
    expect(frames.map((f) => f.type)).toEqual(['event', 'stream_start', ...Array(frames.length - 3).fill('stream_chunk'), 'stream_end']);
    expect(frames[0]).toMatchObject({ event_type: 'thinking' });
    const chunks = frames.filter((f) => f.type === 'stream_chunk');
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(chunks.map((c) => c.chunk_index)).toEqual(chunks.map((_, i) => i));
    const responseId = frames[1]?.response_id as string;
    expect(responseId).toMatch(/^resp_[0-9a-f]{16}$/);
    expect(frames.every((f) => f.type === 'event' || f.response_id === responseId)).toBe(true);
    expect(end).toMatchObject({ type: 'stream_end', content: 'Echo: hello there, general kenobi', reason: 'stop' });
    expect(chunks.map((c) => c.content).join('')).toBe(end?.content);
    const usage = end?.usage as { input_tokens: number; output_tokens: number; total_tokens: number };
    expect(usage.input_tokens).toBeGreaterThan(0);
    expect(usage.output_tokens).toBe(Math.ceil('Echo: hello there, general kenobi'.length / 4));
    expect(usage.total_tokens).toBe(usage.input_tokens + usage.output_tokens);
    // Stored before the terminal frame went out.
    const resource = await api.agents.get(alice, id, origin);
    expect(resource.api_usage).toEqual({ requests: 1, tokens: usage.total_tokens });
    const events = await api.store.listEvents(id, 0);
    const types = events.map((e) => e.event_type);
    expect(types.slice(-2)).toEqual(['message_received', 'message_processed']);
    expect(events.at(-1)?.data).toMatchObject({ message_id: 'm-1', reason: 'stop', usage });
  });

  it('answers with one response frame when stream is false, generating ids', async () => {
    const id = await agent();
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'no streaming please', stream: false });
    const response = await until(() => sink.frames.find((f) => f.type === 'response'), 'response');
    const messageId = response.message_id as string;
    expect(messageId).toMatch(/^msg_[0-9a-f]{16}$/);
    expect(sink.of(messageId).map((f) => f.type)).toEqual(['event', 'response']);
    expect(response).toMatchObject({ content: 'Echo: no streaming please', reason: 'stop', usage: { total_tokens: expect.any(Number) } });
    expect(response.response_id).toMatch(/^resp_/);
  });

  it('sends the whole history (with the image instructions first) on every turn', async () => {
    const id = await agent('test/recorder');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'first', message_id: 'h1' });
    await until(() => terminals(sink, 'h1').length > 0, 'h1');
    send({ type: 'message', content: 'second', message_id: 'h2' });
    await until(() => terminals(sink, 'h2').length > 0, 'h2');
    const last = recorder.requests.at(-1);
    expect(last?.model).toBe('m1');
    expect(last?.messages).toEqual([
      { role: 'system', content: 'You are the recorder agent.' },
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'Recorded: first' },
      { role: 'user', content: 'second' },
    ]);
    expect(last?.tools.map((t) => t.name)).toEqual(['calculator']);
    const stored = await api.store.listMessages(id);
    expect(stored.map((m) => [m.role, m.message_id])).toEqual([
      ['user', 'h1'],
      ['assistant', terminals(sink, 'h1')[0]?.response_id],
      ['user', 'h2'],
      ['assistant', terminals(sink, 'h2')[0]?.response_id],
    ]);
  });

  it('runs a tool the model calls: tool_call event, tool_result, then the final answer', async () => {
    const id = await agent();
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: '/tool calculator {"expression":"6*7"}', message_id: 't-1' });
    const [end] = await until(() => terminals(sink, 't-1').length > 0 && terminals(sink, 't-1'), 'stream_end');
    const frames = sink.of('t-1');
    const call = frames.find((f) => f.event_type === 'tool_call');
    const result = frames.find((f) => f.type === 'tool_result');
    expect(call?.data).toMatchObject({ tool: 'calculator', parameters: { expression: '6*7' }, call_id: expect.stringMatching(/^call_/) });
    expect(result).toMatchObject({ call_id: call?.data.call_id, tool: 'calculator', status: 'success', result: { expression: '6*7', result: 42 } });
    expect(frames.indexOf(call!)).toBeLessThan(frames.indexOf(result!));
    expect(frames.findIndex((f) => f.type === 'stream_chunk')).toBeGreaterThan(frames.indexOf(result!));
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Tool calculator returned: {"expression":"6*7","result":42}' });
    const used = (await api.store.listEvents(id, 0)).find((e) => e.event_type === 'tool_used');
    expect(used?.data).toMatchObject({ tool: 'calculator', status: 'success', message_id: 't-1', duration_ms: expect.any(Number) });
    // The call and its result are in the history, paired.
    const stored = await api.store.listMessages(id);
    expect(stored.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(stored[1]?.tool_calls?.[0]?.id).toBe(stored[2]?.tool_call_id);
  });

  it('refuses a model tool call the image does not list, and the turn goes on', async () => {
    const id = await agent();
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: '/tool web_search {"query":"news"}', message_id: 't-2' });
    const [end] = await until(() => terminals(sink, 't-2').length > 0 && terminals(sink, 't-2'), 'stream_end');
    const result = sink.of('t-2').find((f) => f.type === 'tool_result');
    expect(result).toMatchObject({ tool: 'web_search', status: 'error', error: 'tool web_search is not allowed for this agent' });
    expect(result).not.toHaveProperty('result');
    expect(end).toMatchObject({ reason: 'stop', content: 'Tool web_search returned: {"error":"tool web_search is not allowed for this agent"}' });
  });

  it('ends a model that keeps calling tools with reason tool_rounds', async () => {
    const id = await agent('test/looper');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'loop', message_id: 'loop' });
    const [end] = await until(() => terminals(sink, 'loop').length > 0 && terminals(sink, 'loop'), 'stream_end');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'tool_rounds', usage: { input_tokens: 5, output_tokens: 5 } });
    expect(sink.of('loop').filter((f) => f.event_type === 'tool_call')).toHaveLength(4);
    expect(sink.of('loop').filter((f) => f.type === 'tool_result' && f.status === 'success')).toHaveLength(4);
    const stored = await api.store.listMessages(id);
    // Four answered rounds; the fifth call was not run, so it is not stored.
    expect(stored.filter((m) => m.role === 'tool')).toHaveLength(4);
    expect(stored.filter((m) => m.tool_calls)).toHaveLength(4);
  });

  it('runs tool_requests directly: success, tool error, bad parameters, forbidden', async () => {
    const id = await agent();
    const { sink, send } = await openChat(id);
    send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '2^10' }, request_id: 'r-ok' });
    send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '1/0' }, request_id: 'r-err' });
    send({ type: 'tool_request', tool: 'calculator', parameters: { expr: 1 }, request_id: 'r-bad' });
    send({ type: 'tool_request', tool: 'web_search', parameters: { query: 'x' }, request_id: 'r-no' });
    // A fifth request while four run is refused: direct tool requests are bounded per session.
    send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '1' }, request_id: 'r-busy' });
    expect(sink.of('r-busy')).toEqual([expect.objectContaining({ type: 'error', code: 'agent_busy', error: 'too many tool requests in progress (at most 4)' })]);
    await until(() => sink.frames.length >= 6, 'five answers');
    send({ type: 'tool_request', tool: 'current_time', parameters: { timezone: 'Europe/Paris' } });
    await until(() => sink.frames.length >= 7, 'current_time answer');
    expect(sink.of('r-ok')).toEqual([
      expect.objectContaining({ type: 'tool_result', tool: 'calculator', status: 'success', result: { expression: '2^10', result: 1024 } }),
    ]);
    expect(sink.of('r-err')).toEqual([expect.objectContaining({ type: 'tool_result', status: 'error', error: 'division by zero' })]);
    expect(sink.of('r-bad')[0]).toMatchObject({ type: 'tool_result', status: 'error', error: expect.stringContaining('invalid parameters of tool calculator') });
    expect(sink.of('r-no')).toEqual([expect.objectContaining({ type: 'error', code: 'forbidden', error: 'tool web_search is not allowed for this agent' })]);
    const time = sink.frames.find((f) => f.tool === 'current_time');
    expect(time).toMatchObject({ status: 'success', request_id: expect.stringMatching(/^req_/), result: { timezone: 'Europe/Paris' } });
    const used = (await api.store.listEvents(id, 0)).filter((e) => e.event_type === 'tool_used');
    expect(used.map((e) => e.data.request_id)).toEqual(expect.arrayContaining(['r-ok', 'r-err', 'r-bad']));
  });

  it('answers bad frames with error frames and stays usable', async () => {
    const id = await agent();
    const { sink, session, send } = await openChat(id);
    session.receive('{not json');
    session.receive('[1,2]');
    send({ type: 'subscribe', message_id: 'x-1' });
    send({ type: 'message', message_id: 'x-2' });
    send({ type: 'message', content: 'a'.repeat(100_001), message_id: 'x-3' });
    send({ type: 'message', content: 'hi', message_id: 'bad id with spaces' });
    send({ type: 'cancel', message_id: 'never-sent' });
    send({ content: 'no type' });
    const errors = await until(() => sink.frames.filter((f) => f.type === 'error').length === 8 && sink.frames.filter((f) => f.type === 'error'), '8 errors');
    expect(errors.map((e) => [e.code, e.error])).toEqual([
      ['invalid_request', 'malformed JSON'],
      ['invalid_request', 'a frame must be a JSON object with a "type"'],
      ['invalid_request', 'unknown message type "subscribe"'],
      ['invalid_request', 'invalid "message" frame: /content: "content" is required'],
      ['invalid_request', 'invalid "message" frame: /content: must NOT have more than 100000 characters'],
      ['invalid_request', expect.stringContaining('/message_id: must match pattern')],
      ['not_found', 'no message "never-sent" in progress'],
      ['invalid_request', 'missing "type"'],
    ]);
    expect(errors[2]?.message_id).toBe('x-1');
    expect(errors[3]?.message_id).toBe('x-2');
    expect(errors[5]).not.toHaveProperty('message_id');
    expect(errors[6]?.message_id).toBe('never-sent');
    send({ type: 'message', content: 'still here', message_id: 'ok' });
    const [end] = await until(() => terminals(sink, 'ok').length > 0 && terminals(sink, 'ok'), 'answer');
    expect(end).toMatchObject({ type: 'stream_end', content: 'Echo: still here' });
    expect(sink.closed).toBeUndefined();
  });

  it('cancels the running turn: stream_end cancelled with the partial content, kept in the history', async () => {
    const id = await agent('test/gate');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'long task', message_id: 'c-1' });
    await until(() => sink.of('c-1').some((f) => f.type === 'stream_chunk'), 'first chunk');
    send({ type: 'cancel', message_id: 'c-1' });
    const [end] = await until(() => terminals(sink, 'c-1').length > 0 && terminals(sink, 'c-1'), 'stream_end');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'cancelled', content: 'partial ' });
    await sleep(30);
    expect(terminals(sink, 'c-1')).toHaveLength(1);
    const stored = await api.store.listMessages(id);
    expect(stored.map((m) => [m.role, m.content])).toEqual([
      ['user', 'long task'],
      ['assistant', 'partial '],
    ]);
    const processed = (await api.store.listEvents(id, 0)).find((e) => e.event_type === 'message_processed');
    expect(processed?.data).toMatchObject({ message_id: 'c-1', reason: 'cancelled' });
  });

  it('cancels a queued message before it starts, and the running one still finishes', async () => {
    const id = await agent('test/gate');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'one', message_id: 'q-1' });
    send({ type: 'message', content: 'two', message_id: 'q-2' });
    await until(() => gate.waiting > 0, 'first turn waiting');
    send({ type: 'cancel', message_id: 'q-2' });
    // The run's end is written before its terminal frame goes out.
    await until(() => terminals(sink, 'q-2').length > 0, 'q-2 cancelled');
    expect(sink.of('q-2')).toEqual([expect.objectContaining({ type: 'stream_end', reason: 'cancelled', content: '', usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 } })]);
    gate.release();
    const [end] = await until(() => terminals(sink, 'q-1').length > 0 && terminals(sink, 'q-1'), 'q-1 end');
    expect(end).toMatchObject({ reason: 'stop', content: 'partial done' });
    expect(terminals(sink, 'q-2')).toHaveLength(1);
    expect((await api.store.listMessages(id)).map((m) => m.content)).toEqual(['one', 'partial done']);
  });

  it('cancels promptly even when the provider ignores its signal', async () => {
    const id = await agent('test/stubborn');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'hang', message_id: 's-1' });
    await until(() => sink.of('s-1').some((f) => f.type === 'stream_chunk'), 'chunk');
    send({ type: 'cancel', message_id: 's-1' });
    const [end] = await until(() => terminals(sink, 's-1').length > 0 && terminals(sink, 's-1'), 'stream_end', 1000);
    expect(end).toMatchObject({ reason: 'cancelled', content: 'stuck' });
  });

  it('queues up to the limit, refuses past it with agent_busy, and answers every message exactly once', async () => {
    const id = await agent('test/gate');
    const { sink, send } = await openChat(id);
    for (let i = 0; i < 12; i++) send({ type: 'message', content: `n${i}`, message_id: `b-${i}` });
    // One running + 8 queued (queueLimit 8); 3 refused (once their runs were looked at).
    const busy = await until(() => {
      const errors = sink.frames.filter((f) => f.type === 'error');
      return errors.length === 3 && errors;
    }, 'three refusals');
    expect(busy.map((f) => [f.code, f.message_id])).toEqual([
      ['agent_busy', 'b-9'],
      ['agent_busy', 'b-10'],
      ['agent_busy', 'b-11'],
    ]);
    expect(busy[0]?.error).toBe('agent is busy: 8 messages are already waiting');
    expect(api.runtime.queuedCount(id)).toBe(8);
    gate.open = true;
    gate.release();
    await until(() => Array.from({ length: 12 }, (_, i) => terminals(sink, `b-${i}`).length).every((n) => n >= 1), 'all terminals');
    gate.open = false;
    await sleep(20);
    for (let i = 0; i < 12; i++) expect(terminals(sink, `b-${i}`)).toHaveLength(1);
    // FIFO: answers came in the order sent.
    const ends = sink.frames.filter((f) => f.type === 'stream_end').map((f) => f.message_id);
    expect(ends).toEqual(Array.from({ length: 9 }, (_, i) => `b-${i}`));
  });

  it('survives a burst of 200 messages: each gets exactly one terminal frame, and the agent still answers', async () => {
    const id = await agent();
    const { sink, session } = await openChat(id);
    const ids = Array.from({ length: 200 }, (_, i) => `burst-${i}`);
    for (const messageId of ids) session.receive(JSON.stringify({ type: 'message', content: `burst ${messageId}`, message_id: messageId }));
    await until(() => ids.every((m) => terminals(sink, m).length > 0), 'all 200 terminal frames', 15_000);
    await sleep(20);
    const counts = ids.map((m) => terminals(sink, m).length);
    expect(counts.every((n) => n === 1)).toBe(true);
    const ended = ids.filter((m) => terminals(sink, m)[0]?.type === 'stream_end');
    const refused = ids.filter((m) => terminals(sink, m)[0]?.code === 'agent_busy');
    // The first nine fill the turn and its queue (1 + 8). Each message waits for its run row
    // (it has a message_id), so the first turn may end, and free a place, before the last of
    // the burst arrives: a later one may be answered too.
    expect(ended.slice(0, 9)).toEqual(ids.slice(0, 9));
    expect(ended.length).toBeLessThan(200);
    expect(ended.length + refused.length).toBe(200);
    session.receive(JSON.stringify({ type: 'message', content: 'after the burst', message_id: 'after' }));
    const [end] = await until(() => terminals(sink, 'after').length > 0 && terminals(sink, 'after'), 'answer after burst');
    expect(end).toMatchObject({ type: 'stream_end', content: 'Echo: after the burst' });
  });

  it('refuses a message_id already in progress', async () => {
    const id = await agent('test/gate');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'one', message_id: 'dup' });
    send({ type: 'message', content: 'two', message_id: 'dup' });
    expect(sink.of('dup')).toEqual([expect.objectContaining({ type: 'error', code: 'conflict', error: 'message_id "dup" is already in progress' })]);
    await until(() => gate.waiting > 0, 'turn waiting');
    gate.release();
    await until(() => terminals(sink, 'dup').length === 2, 'dup end');
    expect(terminals(sink, 'dup')[1]).toMatchObject({ type: 'stream_end', reason: 'stop' });
  });

  it('stop ends the running turn (reason stopped) and refuses messages; start accepts them again', async () => {
    const id = await agent('test/gate');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'work', message_id: 'st-1' });
    await until(() => gate.waiting > 0, 'turn waiting');
    const stopped = await lifecycle('stop', id);
    expect(stopped).toMatchObject({ status: 200, body: { id, status: 'stopped' } });
    expect(terminals(sink, 'st-1')).toEqual([expect.objectContaining({ type: 'stream_end', reason: 'stopped', content: 'partial ' })]);
    send({ type: 'message', content: 'refused', message_id: 'st-2' });
    await until(() => sink.of('st-2').length > 0, 'st-2 refused');
    expect(sink.of('st-2')).toEqual([expect.objectContaining({ type: 'error', code: 'conflict', error: 'agent is stopped' })]);
    send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '1+1' }, request_id: 'st-r' });
    await until(() => sink.of('st-r').length > 0, 'tool refusal');
    expect(sink.of('st-r')[0]).toMatchObject({ type: 'error', code: 'conflict' });
    // Idempotent: a second stop changes nothing and journals nothing.
    const statusEvents = async () => (await api.store.listEvents(id, 0)).filter((e) => e.event_type === 'agent_status').map((e) => e.data.status);
    const before = await statusEvents();
    expect(await lifecycle('stop', id)).toMatchObject({ body: { status: 'stopped' } });
    expect(await statusEvents()).toEqual(before);
    expect(before.at(-1)).toBe('stopped');
    // Another user's agent is a 404.
    await expect(lifecycle('start', id, bob)).rejects.toMatchObject({ code: 'not_found' });

    expect(await lifecycle('start', id)).toMatchObject({ body: { status: 'running' } });
    expect(await lifecycle('start', id)).toMatchObject({ body: { status: 'running' } });
    expect((await statusEvents()).slice(-2)).toEqual(['stopped', 'running']);
    gate.open = true;
    send({ type: 'message', content: 'again', message_id: 'st-3' });
    const [end] = await until(() => terminals(sink, 'st-3').length > 0 && terminals(sink, 'st-3'), 'answer after start');
    gate.open = false;
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'partial done' });
    const logs = (await api.store.listLogs(id, {})).map((l) => l.message);
    expect(logs).toEqual(expect.arrayContaining(['agent stopped', 'agent started']));
  });

  it('delete mid-turn: stream_end deleted, then the session closes; the server stays healthy', async () => {
    const id = await agent('test/gate');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'work', message_id: 'd-1' });
    send({ type: 'message', content: 'queued', message_id: 'd-2' });
    await until(() => gate.waiting > 0, 'turn waiting');
    await api.agents.delete(alice, id);
    const tail = sink.log.slice(-3);
    expect(tail).toEqual([
      { kind: 'frame', frame: expect.objectContaining({ type: 'stream_end', message_id: 'd-2', reason: 'deleted' }) },
      { kind: 'frame', frame: expect.objectContaining({ type: 'stream_end', message_id: 'd-1', reason: 'deleted', content: 'partial ' }) },
      { kind: 'close', reason: 'agent_deleted', message: 'agent deleted' },
    ]);
    expect(await api.store.listMessages(id)).toEqual([]);
    expect(await api.store.getAgent(id)).toBeNull();
    // Healthy: another agent answers.
    const other = await agent();
    const chat = await openChat(other);
    chat.send({ type: 'message', content: 'alive?', message_id: 'alive' });
    await until(() => terminals(chat.sink, 'alive').length > 0, 'answer');
  });

  it('closes an idle session when its agent is deleted', async () => {
    const id = await agent();
    const { sink } = await openChat(id);
    await api.agents.delete(alice, id);
    expect(sink.closed).toEqual({ reason: 'agent_deleted', message: 'agent deleted' });
  });

  it('reports provider failures as error frames, journals them, and the agent stays usable', async () => {
    const id = await agent('test/failing');
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'upstream', message_id: 'f-1' });
    send({ type: 'message', content: 'crash', message_id: 'f-2' });
    send({ type: 'message', content: 'fine', message_id: 'f-3' });
    await until(() => ['f-1', 'f-2', 'f-3'].every((m) => terminals(sink, m).length > 0), 'three terminals');
    expect(terminals(sink, 'f-1')).toEqual([expect.objectContaining({ type: 'error', code: 'upstream_error', error: 'model service answered 503' })]);
    const crash = terminals(sink, 'f-2')[0];
    expect(crash).toMatchObject({ type: 'error', code: 'internal' });
    expect(JSON.stringify(sink.frames)).not.toContain('hunter2');
    expect(terminals(sink, 'f-3')).toEqual([expect.objectContaining({ type: 'stream_end', content: 'about to answer', reason: 'stop' })]);
    const errors = (await api.store.listEvents(id, 0)).filter((e) => e.event_type === 'error');
    expect(errors.map((e) => e.data.code)).toEqual(['upstream_error', 'internal']);
    expect(JSON.stringify(errors)).not.toContain('hunter2');
    const errorLogs = await api.store.listLogs(id, { level: 'error' });
    expect(errorLogs).toHaveLength(2);
    expect((await api.store.getAgent(id))?.status).toBe('running');
  });

  it('an image whose provider is not configured gets a clear upstream_error', async () => {
    // A build naming an unknown provider is refused now; an image pulled from elsewhere (stored
    // as the registry service stores it) can still name one, and must still fail cleanly.
    const def = parseAgentDefinition({ name: 'test/cloud', model: 'mistral/mistral-large-latest' });
    await expect(api.images.build(def)).rejects.toMatchObject({ code: 'invalid_request' });
    const built = buildAgentImage(def, '2026-01-01T00:00:00.000Z');
    await api.store.putImage(
      { digest: built.digest, manifest: built.manifest, config: built.config, config_digest: built.config_digest, size: built.size, created_at: '2026-01-01T00:00:00.000Z' },
      ['test/cloud:latest'],
    );
    const id = await agent('test/cloud');
    expect(await api.agents.get(alice, id, { secure: false, host: 'localhost' })).toMatchObject({ runnable: false, reason: expect.stringContaining('mistral') });
    const { sink, send } = await openChat(id);
    send({ type: 'message', content: 'hi', message_id: 'u-1' });
    const [err] = await until(() => terminals(sink, 'u-1').length > 0 && terminals(sink, 'u-1'), 'error');
    expect(err).toMatchObject({ type: 'error', code: 'upstream_error', error: 'model provider "mistral" is not configured on this server' });
  });

  it('detach sends nothing more; the runs go on (running and queued) into the history', async () => {
    const id = await agent('test/gate');
    const { sink, session, send } = await openChat(id);
    send({ type: 'message', content: 'running', message_id: 'dt-1' });
    send({ type: 'message', content: 'queued', message_id: 'dt-2' });
    await until(() => gate.waiting > 0 && api.runtime.queuedCount(id) === 1, 'turn waiting, one queued');
    const before = sink.log.length;
    session.detach();
    expect(api.runtime.queuedCount(id)).toBe(1);
    gate.open = true;
    gate.release();
    await until(() => !api.runtime.isBusy(id) && api.runtime.queuedCount(id) === 0, 'turns finished');
    gate.open = false;
    await sleep(20);
    expect(sink.log.length).toBe(before);
    expect((await api.store.listMessages(id)).map((m) => m.content)).toEqual(['running', 'partial done', 'queued', 'partial done']);
    const runs = (await api.runs.list(alice, id, {})).runs;
    expect(runs.map((r) => [r.message_id, r.status])).toEqual([['dt-2', 'completed'], ['dt-1', 'completed']]);
  });
});

describe('shutdown mid-turn', () => {
  it('ends the turn with reason shutdown, keeps the partial answer, closes sessions, refuses new ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sentinel-chat-shutdown-'));
    const api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1' });
    try {
      const gate = new GateProvider();
      api.providers.register(gate);
      await api.users.create({ username: 'alice', password: 'alice-password' });
      await api.images.build(parseAgentDefinition({ name: 'test/gate', model: 'gate/m' }));
      const id = (await api.agents.create(alice, { image: 'test/gate' }, origin)).id;
      const sink = new RecordingSink();
      const session = (await api.chat.prepare(alice, id)).open(sink);
      session.receive(JSON.stringify({ type: 'message', content: 'work', message_id: 'sd-1', stream: false }));
      await until(() => gate.waiting > 0, 'turn waiting');
      const done = api.shutdown();
      expect(api.shutdown()).toBe(done);
      await done;
      expect(sink.log.slice(-2)).toEqual([
        { kind: 'frame', frame: expect.objectContaining({ type: 'response', message_id: 'sd-1', reason: 'shutdown', content: 'partial ' }) },
        { kind: 'close', reason: 'shutdown', message: 'server shutting down' },
      ]);
      expect((await api.store.listMessages(id)).map((m) => m.content)).toEqual(['work', 'partial ']);
      const refused = await api.chat.prepare(alice, id).catch((err: unknown) => err);
      expect(isSentinelError(refused) && refused.code).toBe('unavailable');
      const submit = api.runtime.submit(id, { messageId: 'late', content: 'x' }, {
        onStart() {}, onChunk() {}, onToolCall() {}, onToolResult() {}, onEnd() {}, onError() {},
      });
      expect(submit).toMatchObject({ accepted: false, error: { code: 'unavailable' } });
    } finally {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
