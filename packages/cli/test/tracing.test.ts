/**
 * OpenTelemetry traces from a real `sentinel api` process: the Node SDK registered from the
 * standard OTEL_* variables exports OTLP/HTTP (JSON) to a loopback receiver. One chat turn with
 * a tool call is one trace: the WebSocket upgrade → the message → the turn → the model calls
 * (GenAI attributes, token counts) and the tool call, and the loopback OpenAI-compatible fake
 * received the same trace id in `traceparent`. An incoming `traceparent` becomes the parent of a
 * request's span, the request log lines carry `trace_id`/`span_id` next to `request_id`, and the
 * spans still buffered at SIGTERM are flushed before the process exits.
 */
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { openAiErrorReply, openAiStream, openAiTextEvents, openAiToolCallEvents } from '@sentinel/test-support/fakes/openai-fake';
import { OtlpReceiver, type ReceivedSpan } from '@sentinel/test-support/otlp-receiver';
import { callJson, cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'tracing-admin-password';
const API_KEY = 'sk-tracing-SECRET-4c1e9a7b';

const scratch = useCliScratch('sentinel-cli-tracing-');

function otelEnv(receiver: OtlpReceiver, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return cleanEnv(scratch.dir, {
    SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD,
    OPENAI_API_KEY: API_KEY,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'sentinel-trace-test',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
    OTEL_TRACES_SAMPLER: 'always_on',
    // Export every 100 ms, so the test does not wait the SDK's default 5 s.
    OTEL_BSP_SCHEDULE_DELAY: '100',
    ...extra,
  });
}

function start(receiver: OtlpReceiver, args: string[] = [], extra: Record<string, string> = {}): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(scratch.dir, 'data'), ...args], otelEnv(receiver, extra));
}

function only(spans: ReceivedSpan[], predicate: (span: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.filter(predicate);
  expect(found, `${what}: ${spans.map((s) => s.name).join(', ')}`).toHaveLength(1);
  return found[0]!;
}

describe('sentinel api exports OpenTelemetry traces over OTLP/HTTP', () => {
  let receiver: OtlpReceiver;
  let fake: FakeProviderServer;

  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
    fake = await FakeProviderServer.start();
  });

  afterAll(async () => {
    await receiver?.close();
    await fake?.close();
  });

  it('links the upgrade, the turn, the model calls and the tool call in one trace, and sends its traceparent to the provider', async () => {
    const cli = start(receiver, ['--openai-base-url', `${fake.url}/v1`]);
    const url = await cli.url();
    const login = await callJson('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD });
    const token = login.json.token as string;
    const image = await callJson('POST', `${url}/v1/images`, token, {
      name: 'trace/gpt',
      tag: 'v1',
      model: { provider: 'openai', name: 'gpt-trace-model' },
      instructions: 'Use the calculator.',
      tools: ['calculator'],
    });
    expect(image.status).toBe(201);
    const agent = await callJson('POST', `${url}/v1/agents`, token, { image: 'trace/gpt:v1', name: 'traced' });
    expect(agent.status).toBe(201);

    fake.reply(
      openAiStream(openAiToolCallEvents([{ id: 'call_trace_1', name: 'calculator', argumentChunks: ['{"expression": "6*7"}'] }], { usage: { prompt_tokens: 40, completion_tokens: 12 } })),
      openAiStream(openAiTextEvents(['6*7 is ', '42.'], { usage: { prompt_tokens: 70, completion_tokens: 6 } })),
    );
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/agents/${agent.json.id}/chat`, { headers: { authorization: `Bearer ${token}` } });
    const frames: any[] = [];
    const ended = new Promise<any>((resolve, reject) => {
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data));
        frames.push(frame);
        if (frame.type === 'stream_end' || frame.type === 'error') resolve(frame);
      });
      ws.on('error', reject);
    });
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    ws.send(JSON.stringify({ type: 'message', content: 'What is 6*7?', message_id: 'm1' }));
    const end = await ended;
    expect(end).toMatchObject({ type: 'stream_end', content: '6*7 is 42.', reason: 'stop', usage: { input_tokens: 110, output_tokens: 18 } });
    ws.close();

    await receiver.waitFor((spans) => spans.some((s) => s.name === 'sentinel.turn') && spans.filter((s) => s.name === 'chat gpt-trace-model').length === 2, 'the turn and both model calls');
    const upgrade = only(receiver.spans, (s) => s.name === 'GET /v1/agents/:id/chat', 'the upgrade span');
    expect(upgrade).toMatchObject({ kind: 'SERVER', parentSpanId: '', scope: '@sentinel/api-core' });
    expect(upgrade.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.route': '/v1/agents/:id/chat', 'http.response.status_code': 101 });
    expect(upgrade.resource).toMatchObject({ 'service.name': 'sentinel-trace-test', 'deployment.environment.name': 'test' });

    const trace = receiver.trace(upgrade.traceId);
    const message = only(trace, (s) => s.name === 'ws.message chat', 'the message span');
    expect(message.parentSpanId).toBe(upgrade.spanId);
    const turn = only(trace, (s) => s.name === 'sentinel.turn', 'the turn span');
    expect(turn.parentSpanId).toBe(message.spanId);
    expect(turn.attributes).toMatchObject({ 'sentinel.agent.id': agent.json.id, 'sentinel.message.id': 'm1', 'sentinel.turn.reason': 'stop', 'gen_ai.usage.input_tokens': 110, 'gen_ai.usage.output_tokens': 18 });

    const calls = trace.filter((s) => s.name === 'chat gpt-trace-model').sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    expect(calls).toHaveLength(2);
    for (const call of calls) {
      expect(call.kind).toBe('CLIENT');
      expect(call.parentSpanId).toBe(turn.spanId);
      expect(call.attributes).toMatchObject({ 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-trace-model' });
      // Content capture is off by default: no prompt or completion text.
      expect(Object.keys(call.attributes).filter((key) => key.includes('messages'))).toEqual([]);
    }
    expect(calls[0]!.attributes).toMatchObject({ 'gen_ai.usage.input_tokens': 40, 'gen_ai.usage.output_tokens': 12, 'gen_ai.response.finish_reasons': ['tool_calls'] });
    expect(calls[1]!.attributes).toMatchObject({ 'gen_ai.usage.input_tokens': 70, 'gen_ai.usage.output_tokens': 6, 'gen_ai.response.finish_reasons': ['stop'] });

    const tool = only(trace, (s) => s.name === 'execute_tool calculator', 'the tool span');
    expect(tool.parentSpanId).toBe(turn.spanId);
    expect(tool.attributes).toMatchObject({ 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'calculator', 'gen_ai.tool.call.id': 'call_trace_1' });
    expect(tool.attributes['gen_ai.tool.call.arguments']).toBeUndefined();
    expect(tool.startNs > calls[0]!.endNs || tool.startNs >= calls[0]!.startNs).toBe(true);

    // Store operations of the turn are children inside the same trace.
    const storeSpans = trace.filter((s) => s.attributes['db.system.name'] === 'sqlite');
    expect(storeSpans.map((s) => s.name)).toEqual(expect.arrayContaining(['getAgent', 'listMessages']));
    expect(storeSpans.every((s) => s.kind === 'CLIENT')).toBe(true);
    // The bus publishes of the journal too.
    expect(trace.some((s) => s.kind === 'PRODUCER' && s.attributes['messaging.system'] === 'sentinel')).toBe(true);

    // The provider saw the trace: each request's traceparent names its own model-call span.
    const providerRequests = fake.requests.slice(-2);
    expect(providerRequests).toHaveLength(2);
    for (const [index, recorded] of providerRequests.entries()) {
      expect(recorded.headers.traceparent).toBe(`00-${upgrade.traceId}-${calls[index]!.spanId}-01`);
    }
    await cli.stop('SIGTERM');
  });

  it('makes an incoming traceparent the parent of the request span, and its log line carries trace_id, span_id and request_id', async () => {
    const cli = start(receiver);
    const url = await cli.url();
    const login = await callJson('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    const res = await fetch(`${url}/v1/agents?limit=5`, {
      headers: { authorization: `Bearer ${login.json.token}`, traceparent: `00-${traceId}-${parentId}-01`, 'x-request-id': 'trace-req-1' },
    });
    expect(res.status).toBe(200);
    await res.text();

    await receiver.waitFor((spans) => spans.some((s) => s.traceId === traceId && s.kind === 'SERVER'), 'the request span of the incoming trace');
    const span = only(receiver.trace(traceId), (s) => s.kind === 'SERVER', 'the request span');
    expect(span).toMatchObject({ name: 'GET /v1/agents', parentSpanId: parentId });
    expect(span.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.route': '/v1/agents', 'url.path': '/v1/agents', 'http.response.status_code': 200 });
    // The route's store read is a child of it.
    expect(receiver.trace(traceId).some((s) => s.parentSpanId === span.spanId && s.attributes['db.system.name'] === 'sqlite')).toBe(true);

    await cli.waitFor(() => cli.jsonLines().some((line) => line.msg === 'request' && line.request_id === 'trace-req-1'), 'the request line');
    const line = cli.jsonLines().find((l) => l.msg === 'request' && l.request_id === 'trace-req-1')!;
    expect(line).toMatchObject({ trace_id: traceId, span_id: span.spanId, path: '/v1/agents', status: 200 });
    // Every request line has a request id; the login's has its own trace.
    const requests = cli.jsonLines().filter((l) => l.msg === 'request');
    expect(requests.length).toBeGreaterThanOrEqual(2);
    for (const request of requests) {
      expect(typeof request.request_id).toBe('string');
      expect(request.trace_id).toMatch(/^[0-9a-f]{32}$/);
    }
    await cli.stop('SIGTERM');
  });

  it('records prompts, answers and tool arguments only with --otel-capture-content', async () => {
    const cli = start(receiver, ['--openai-base-url', `${fake.url}/v1`, '--otel-capture-content']);
    const url = await cli.url();
    const token = (await callJson('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    expect((await callJson('POST', `${url}/v1/images`, token, { name: 'trace/capture', tag: 'v1', model: { provider: 'openai', name: 'gpt-capture' }, tools: ['calculator'] })).status).toBe(201);
    const agent = await callJson('POST', `${url}/v1/agents`, token, { image: 'trace/capture:v1', name: 'captured' });
    fake.reply(
      openAiStream(openAiToolCallEvents([{ id: 'call_capture', name: 'calculator', argumentChunks: ['{"expression": "2+3"}'] }])),
      openAiStream(openAiTextEvents(['It is ', 'five.'])),
    );
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/agents/${agent.json.id}/chat`, { headers: { authorization: `Bearer ${token}` } });
    const ended = new Promise<any>((resolve) => ws.on('message', (data) => {
      const frame = JSON.parse(String(data));
      if (frame.type === 'stream_end' || frame.type === 'error') resolve(frame);
    }));
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    ws.send(JSON.stringify({ type: 'message', content: 'Add two and three, please', message_id: 'cap1' }));
    expect(await ended).toMatchObject({ type: 'stream_end', content: 'It is five.' });
    ws.close();

    await receiver.waitFor((spans) => spans.filter((s) => s.name === 'chat gpt-capture').length === 2 && spans.some((s) => s.name === 'execute_tool calculator' && s.attributes['gen_ai.tool.call.id'] === 'call_capture'), 'the captured calls');
    const calls = receiver.spans.filter((s) => s.name === 'chat gpt-capture').sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    expect(String(calls[0]!.attributes['gen_ai.input.messages'])).toContain('Add two and three, please');
    expect(JSON.parse(String(calls[1]!.attributes['gen_ai.output.messages']))).toEqual([{ role: 'assistant', parts: [{ type: 'text', content: 'It is five.' }] }]);
    const tool = receiver.spans.find((s) => s.attributes['gen_ai.tool.call.id'] === 'call_capture')!;
    expect(JSON.parse(String(tool.attributes['gen_ai.tool.call.arguments']))).toEqual({ expression: '2+3' });
    expect(tool.attributes['gen_ai.tool.call.result']).toBeDefined();
    // The API key never reaches a span, captured or not.
    expect(JSON.stringify(receiver.spans.map((s) => s.attributes))).not.toContain(API_KEY);
    await cli.stop('SIGTERM');
  });

  it('marks a failed model call and its turn as errors, with the error code and without the key', async () => {
    const cli = start(receiver, ['--openai-base-url', `${fake.url}/v1`]);
    const url = await cli.url();
    const token = (await callJson('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    expect((await callJson('POST', `${url}/v1/images`, token, { name: 'trace/denied', tag: 'v1', model: { provider: 'openai', name: 'gpt-denied' } })).status).toBe(201);
    const agent = await callJson('POST', `${url}/v1/agents`, token, { image: 'trace/denied:v1', name: 'denied' });
    fake.reply(openAiErrorReply(401, `Incorrect API key provided: ${API_KEY}`, { code: 'invalid_api_key' }));
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/agents/${agent.json.id}/chat`, { headers: { authorization: `Bearer ${token}` } });
    const failed = new Promise<any>((resolve) => ws.on('message', (data) => {
      const frame = JSON.parse(String(data));
      if (frame.type === 'error' || frame.type === 'stream_end') resolve(frame);
    }));
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    ws.send(JSON.stringify({ type: 'message', content: 'hello', message_id: 'denied1' }));
    expect(await failed).toMatchObject({ type: 'error', code: 'upstream_error', message_id: 'denied1' });
    ws.close();

    await receiver.waitFor((spans) => spans.some((s) => s.name === 'chat gpt-denied') && spans.some((s) => s.attributes['sentinel.message.id'] === 'denied1'), 'the failed call and its turn');
    const call = receiver.spans.find((s) => s.name === 'chat gpt-denied')!;
    expect(call.statusCode).toBe(2);
    expect(call.attributes['error.type']).toBe('upstream_error');
    const turn = receiver.spans.find((s) => s.attributes['sentinel.message.id'] === 'denied1')!;
    expect(call.parentSpanId).toBe(turn.spanId);
    expect(turn.statusCode).toBe(2);
    expect(turn.attributes['error.type']).toBe('upstream_error');
    expect(JSON.stringify(receiver.spans.map((s) => [s.name, s.attributes, s.resource]))).not.toContain(API_KEY);
    await cli.stop('SIGTERM');
  });

  it('flushes the spans still buffered when it is stopped', async () => {
    // An export interval far beyond the test: only the shutdown's flush can deliver the span.
    const cli = start(receiver, [], { OTEL_BSP_SCHEDULE_DELAY: '600000' });
    const url = await cli.url();
    const traceId = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const res = await fetch(`${url}/v1/health`, { headers: { traceparent: `00-${traceId}-1111111111111111-01` } });
    expect(res.status).toBe(200);
    await res.text();
    expect(receiver.trace(traceId)).toEqual([]);
    expect(await cli.stop('SIGTERM')).toMatchObject({ code: 0 });
    const health = only(receiver.trace(traceId), (s) => s.kind === 'SERVER', 'the health span');
    expect(health).toMatchObject({ name: 'GET /v1/health', parentSpanId: '1111111111111111' });
    expect(receiver.refused).toBe(0);
  });
});
