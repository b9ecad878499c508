/**
 * The chat protocol of `/v1/agents/{id}/chat` (docs/ARCHITECTURE.md#the-protocol) over real sockets, on every host
 * the library promises to work in: the standalone server, bare node:http, Express and Fastify,
 * each with the WebSocket transport attached to that host's own server.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { FrameClient, isTerminal, type Frame } from './ws-client.js';
import { bearer, longMessage, NO_CALCULATOR_IMAGE, startWsEnv, type WsEnv } from './ws-env.js';

const QUEUE_LIMIT = 3;

describe.each(HOSTS)('chat WebSocket on %s', (hostName) => {
  let env: WsEnv;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    env = await startWsEnv(hostName, { runtime: { queueLimit: QUEUE_LIMIT } });
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  /** A new agent of `image` and an open chat socket to it, past the welcome frame. */
  async function chat(image?: string): Promise<{ client: FrameClient; agentId: string }> {
    const agent = await env.createAgent(image === undefined ? {} : { image });
    const client = await FrameClient.connect(env.url(agent.id, 'chat'), bearer(env.adminToken));
    clients.push(client);
    await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
    return { client, agentId: agent.id };
  }

  function expectOneTerminalEach(client: FrameClient, messageIds: string[]): Map<string, Frame> {
    const terminals = new Map<string, Frame>();
    for (const id of messageIds) {
      const mine = client.framesFor(id).filter(isTerminal);
      expect(mine, `terminal frames of ${id}`).toHaveLength(1);
      terminals.set(id, mine[0] as Frame);
    }
    return terminals;
  }

  it('greets with connection_established carrying the agent id, name and status', async () => {
    const agent = await env.createAgent();
    const client = await FrameClient.connect(env.url(agent.id, 'chat'), bearer(env.adminToken));
    clients.push(client);
    const welcome = await client.waitFor(() => true, 'the first frame');
    expect(welcome).toMatchObject({
      type: 'event',
      event_type: 'connection_established',
      data: { agent_id: agent.id, agent_name: agent.name, status: 'running' },
    });
    expect(Date.parse(welcome.timestamp as string)).not.toBeNaN();
    expect(client.ws.protocol).toBe('');
  });

  it('sends every chunk frame as exactly the JSON of its fields, whatever the content needs escaped', async () => {
    const { client } = await chat();
    const text = 'quotes " and \\ backslash, a\nnew line, tab\t, unicode é 漢字 and 😀 </script>';
    client.send({ type: 'message', content: text, message_id: 'm.raw:1_x-y' });
    const end = await client.terminal('m.raw:1_x-y');
    const chunkTexts = client.texts.filter((t) => (JSON.parse(t) as Frame).type === 'stream_chunk');
    expect(chunkTexts.length).toBeGreaterThan(2);
    for (const raw of chunkTexts) {
      const frame = JSON.parse(raw) as Frame;
      expect(Object.keys(frame)).toEqual(['type', 'timestamp', 'run_id', 'seq', 'message_id', 'response_id', 'chunk_index', 'content']);
      expect(raw).toBe(JSON.stringify(frame));
    }
    expect(chunkTexts.map((t) => (JSON.parse(t) as Frame).content).join('')).toBe(end.content);
    expect(end.content).toBe(`Echo: ${text}`);
  });

  it('streams thinking, stream_start, in-order chunks from 0, then stream_end with the full content', async () => {
    const { client } = await chat();
    const text = 'the quick brown fox jumps over the lazy dog again and again';
    client.send({ type: 'message', content: text, message_id: 'm-stream' });
    const end = await client.terminal('m-stream');
    const frames = client.framesFor('m-stream');

    expect(frames.map((f) => f.type === 'event' ? `event:${f.event_type}` : f.type)).toEqual([
      'event:thinking',
      'stream_start',
      ...frames.filter((f) => f.type === 'stream_chunk').map(() => 'stream_chunk'),
      'stream_end',
    ]);
    const chunks = frames.filter((f) => f.type === 'stream_chunk');
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.map((c) => c.chunk_index)).toEqual(chunks.map((_, i) => i));
    const responseId = frames[1]?.response_id as string;
    expect(responseId).toMatch(/\S/);
    for (const frame of [...chunks, end]) expect(frame.response_id).toBe(responseId);
    expect(end).toMatchObject({ type: 'stream_end', content: `Echo: ${text}`, reason: 'stop' });
    expect(chunks.map((c) => c.content).join('')).toBe(end.content);
    expect(end.usage.input_tokens).toBeGreaterThan(0);
    expect(end.usage.output_tokens).toBe(Math.ceil(end.content.length / 4));
    expect(end.usage.total_tokens).toBe(end.usage.input_tokens + end.usage.output_tokens);
  });

  it('"stream": false answers with one response frame after thinking', async () => {
    const { client } = await chat();
    client.send({ type: 'message', content: 'all at once please', message_id: 'm-whole', stream: false });
    const response = await client.terminal('m-whole');
    expect(client.framesFor('m-whole').map((f) => f.type)).toEqual(['event', 'response']);
    expect(response).toMatchObject({ type: 'response', content: 'Echo: all at once please', reason: 'stop' });
    expect(response.response_id).toMatch(/\S/);
    expect(response.usage.total_tokens).toBe(response.usage.input_tokens + response.usage.output_tokens);
  });

  it('shows a tool the model calls as event tool_call then tool_result, then the answer using it', async () => {
    const { client } = await chat();
    client.send({ type: 'message', content: '/tool calculator {"expression":"6*7"}', message_id: 'm-tool' });
    const end = await client.terminal('m-tool');
    const frames = client.framesFor('m-tool');
    const callIndex = frames.findIndex((f) => f.type === 'event' && f.event_type === 'tool_call');
    const resultIndex = frames.findIndex((f) => f.type === 'tool_result');
    expect(callIndex).toBeGreaterThan(-1);
    expect(resultIndex).toBeGreaterThan(callIndex);
    const call = frames[callIndex] as Frame;
    const result = frames[resultIndex] as Frame;
    expect(call.data).toMatchObject({ tool: 'calculator', parameters: { expression: '6*7' } });
    expect(result).toMatchObject({ tool: 'calculator', status: 'success', call_id: call.data.call_id });
    expect(JSON.stringify(result.result)).toContain('42');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop' });
    expect(end.content).toContain('42');
  });

  it('tool_request runs an allowed tool and answers with the request_id', async () => {
    const { client } = await chat();
    client.send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '2^10' }, request_id: 'r-ok' });
    const result = await client.waitFor((f) => f.request_id === 'r-ok', 'the tool result');
    expect(result).toMatchObject({ type: 'tool_result', request_id: 'r-ok', tool: 'calculator', status: 'success' });
    expect(JSON.stringify(result.result)).toContain('1024');

    client.send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '1/0' }, request_id: 'r-bad' });
    const failed = await client.waitFor((f) => f.request_id === 'r-bad', 'the failed tool result');
    expect(failed).toMatchObject({ type: 'tool_result', request_id: 'r-bad', status: 'error' });
    expect(failed.error).toMatch(/\S/);
  });

  it('tool_request for a tool the image does not list gets error forbidden, and the socket stays usable', async () => {
    const { client } = await chat(NO_CALCULATOR_IMAGE);
    client.send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '1+1' }, request_id: 'r-refused' });
    const refused = await client.waitFor((f) => f.request_id === 'r-refused', 'the refusal');
    expect(refused).toMatchObject({ type: 'error', code: 'forbidden', request_id: 'r-refused' });
    expect(refused.error).toContain('calculator');

    client.send({ type: 'message', content: 'still there?', message_id: 'm-after-refusal' });
    expect(await client.terminal('m-after-refusal')).toMatchObject({ type: 'stream_end', reason: 'stop' });
  });

  it('bad JSON, an unknown type, a schema violation and a binary frame each get an error frame; the socket stays open', async () => {
    const { client } = await chat();
    const errorsBefore = (): Frame[] => client.frames.filter((f) => f.type === 'error');

    client.send('{"type": "message", "content": ');
    const malformed = await client.waitForCount((f) => f.type === 'error', 1, 'the malformed JSON error');
    expect(malformed[0]).toMatchObject({ code: 'invalid_request' });
    expect(malformed[0]?.error).toMatch(/JSON/i);

    client.send({ type: 'dance' });
    const unknown = (await client.waitForCount((f) => f.type === 'error', 2, 'the unknown type error'))[1] as Frame;
    expect(unknown).toMatchObject({ code: 'invalid_request' });
    expect(unknown.error).toContain('dance');

    client.send({ type: 'message', content: 42, message_id: 'm-schema' });
    const schema = (await client.waitForCount((f) => f.type === 'error', 3, 'the schema error'))[2] as Frame;
    expect(schema).toMatchObject({ code: 'invalid_request' });

    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    const binary = (await client.waitForCount((f) => f.type === 'error', 4, 'the binary frame error'))[3] as Frame;
    expect(binary).toMatchObject({ code: 'invalid_request' });
    expect(binary.error).toMatch(/binary/);

    expect(errorsBefore()).toHaveLength(4);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.send({ type: 'message', content: 'ping after errors', message_id: 'm-after-errors' });
    expect(await client.terminal('m-after-errors')).toMatchObject({ type: 'stream_end', content: 'Echo: ping after errors' });
  });

  it('a frame nested 10 000 deep gets an invalid_request error frame naming the field; the socket stays open', async () => {
    const { client } = await chat();
    const deepObject = '{"a":'.repeat(9_999) + '{"a":1}' + '}'.repeat(9_999);
    client.send(`{"type":"tool_request","tool":"calculator","request_id":"r-deep","parameters":${deepObject}}`);
    const deepTool = await client.waitFor((f) => f.request_id === 'r-deep', 'the deep tool_request error');
    expect(deepTool).toMatchObject({ type: 'error', code: 'invalid_request', request_id: 'r-deep', error: 'frame.parameters: nested deeper than 32 levels' });

    const deepArray = '['.repeat(10_000) + ']'.repeat(10_000);
    client.send(`{"type":"message","content":"hi","message_id":"m-deep","extra":${deepArray}}`);
    const deepMessage = await client.waitFor((f) => f.message_id === 'm-deep', 'the deep message error');
    expect(deepMessage).toMatchObject({ type: 'error', code: 'invalid_request', error: 'frame.extra: nested deeper than 32 levels' });

    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.send({ type: 'tool_request', tool: 'calculator', parameters: { expression: '6*7' }, request_id: 'r-after-deep' });
    expect(await client.waitFor((f) => f.request_id === 'r-after-deep', 'the tool result after')).toMatchObject({ type: 'tool_result', status: 'success' });
  });

  it('cancel ends the running turn with stream_end reason cancelled and its partial content', async () => {
    const { client } = await chat();
    const text = longMessage(300);
    client.send({ type: 'message', content: text, message_id: 'm-cancel' });
    await client.waitFor((f) => f.message_id === 'm-cancel' && f.type === 'stream_chunk', 'a first chunk');
    client.send({ type: 'cancel', message_id: 'm-cancel' });
    const end = await client.terminal('m-cancel');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'cancelled' });
    expect(`Echo: ${text}`.startsWith(end.content as string)).toBe(true);
    expect((end.content as string).length).toBeLessThan(`Echo: ${text}`.length);
    expectOneTerminalEach(client, ['m-cancel']);

    client.send({ type: 'cancel', message_id: 'never-sent' });
    expect(await client.waitFor((f) => f.message_id === 'never-sent', 'the unknown cancel error')).toMatchObject({ type: 'error', code: 'not_found' });
  });

  it('queues messages in order and refuses the ones past the queue with agent_busy', async () => {
    const { client } = await chat();
    const ids = Array.from({ length: QUEUE_LIMIT + 4 }, (_, i) => `m-busy-${i}`);
    client.send({ type: 'message', content: longMessage(40), message_id: ids[0] });
    for (const id of ids.slice(1)) client.send({ type: 'message', content: `short ${id}`, message_id: id });
    await client.waitForCount((f) => typeof f.message_id === 'string' && f.message_id.startsWith('m-busy-') && isTerminal(f), ids.length, 'every terminal frame');

    const terminals = expectOneTerminalEach(client, ids);
    const answered = ids.filter((id) => terminals.get(id)?.type === 'stream_end');
    const busy = ids.filter((id) => terminals.get(id)?.type === 'error');
    expect(answered).toEqual(ids.slice(0, QUEUE_LIMIT + 1));
    expect(busy).toEqual(ids.slice(QUEUE_LIMIT + 1));
    for (const id of busy) expect(terminals.get(id)).toMatchObject({ code: 'agent_busy' });
    // Answered in arrival order: each stream_start comes after the previous stream_end.
    const starts = answered.map((id) => client.frames.findIndex((f) => f.type === 'stream_start' && f.message_id === id));
    const ends = answered.map((id) => client.frames.findIndex((f) => f.type === 'stream_end' && f.message_id === id));
    for (let i = 1; i < answered.length; i++) expect(starts[i]).toBeGreaterThan(ends[i - 1] as number);
  });

  it('a burst of 200 messages at once gets exactly one terminal frame per message, and the server stays healthy', async () => {
    const { client } = await chat();
    const ids = Array.from({ length: 200 }, (_, i) => `burst-${i}`);
    // One write: the 200 frames reach the server back to back.
    for (const id of ids) client.send({ type: 'message', content: `hello ${id}`, message_id: id });
    await client.waitForCount((f) => typeof f.message_id === 'string' && f.message_id.startsWith('burst-') && isTerminal(f), ids.length, '200 terminal frames', 20_000);

    const terminals = expectOneTerminalEach(client, ids);
    const kinds = [...terminals.values()].map((f) => (f.type === 'error' ? f.code : f.type));
    expect(kinds.filter((k) => k === 'stream_end')).toHaveLength(QUEUE_LIMIT + 1);
    expect(kinds.filter((k) => k === 'agent_busy')).toHaveLength(200 - (QUEUE_LIMIT + 1));

    const health = await request(`${env.host.baseUrl}/v1/health`);
    expect(health.statusCode).toBe(200);
    expect(await health.body.json()).toEqual({ status: 'ok' });
    client.send({ type: 'message', content: 'after the burst', message_id: 'after-burst' });
    expect(await client.terminal('after-burst')).toMatchObject({ type: 'stream_end', content: 'Echo: after the burst', reason: 'stop' });
  });
});
