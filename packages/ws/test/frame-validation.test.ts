/**
 * The frame check every WebSocket spec runs under (test-support/frame-watch.ts, a vitest setup
 * file): a server that sends frames the AsyncAPI document does not describe is caught, with
 * the frame and ajv's errors, on raw `ws` sockets and FrameClient alike; real frames and
 * sockets to other paths pass. The misbehaving server here is a bare `ws` server on loopback.
 */
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { buildAsyncApiDocument } from '@sentinel/api-core';
import { compileFrameValidator } from '@sentinel/test-support/frame-validation';
import { takeFrameViolations } from '@sentinel/test-support/frame-watch';
import { FrameClient } from './ws-client.js';

const TIMESTAMP = '2026-01-01T00:00:00.000Z';

describe('frames checked against the AsyncAPI document', () => {
  let wss: WebSocketServer;
  let base: string;
  /** What the fake server sends to the next client, by path. */
  let script: Array<string | Buffer> = [];

  beforeAll(async () => {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    base = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    wss.on('connection', (ws) => {
      ws.on('error', () => undefined);
      for (const frame of script) ws.send(frame);
      ws.close(1000, 'done');
    });
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });

  /** Connects a raw `ws` client to `path`, lets it receive the script, and waits for the close. */
  async function receive(path: string, frames: Array<string | Buffer>): Promise<string[]> {
    script = frames;
    const ws = new WebSocket(`${base}${path}`);
    const received: string[] = [];
    ws.on('message', (data) => received.push(String(data)));
    await once(ws, 'close');
    return received;
  }

  it('lets frames the document describes through', async () => {
    const frames = [
      JSON.stringify({ type: 'event', event_type: 'connection_established', timestamp: TIMESTAMP, agent_id: 'a1' }),
      JSON.stringify({ type: 'stream_chunk', timestamp: TIMESTAMP, message_id: 'm1', response_id: 'r1', chunk_index: 0, content: 'hi' }),
    ];
    expect(await receive('/v1/agents/a1/chat', frames)).toEqual(frames);
    expect(await takeFrameViolations()).toEqual([]);
  });

  it('reports an unknown type, a frame off its channel, a bad field, non-JSON and binary frames', async () => {
    await receive('/v1/agents/a1/chat', [
      JSON.stringify({ type: 'surprise', timestamp: TIMESTAMP }),
      JSON.stringify({ type: 'stream_end', timestamp: TIMESTAMP, message_id: 'm1', response_id: 'r1', content: '', reason: 'stop' }),
      JSON.stringify({ type: 'error', timestamp: TIMESTAMP, error: 'x', code: 'not_a_code' }),
      'not json',
      Buffer.from([1, 2, 3]),
    ]);
    // stream_start is a chat frame: the events channel does not carry it.
    await receive('/v1/agents/a1/events?since=0', [JSON.stringify({ type: 'stream_start', timestamp: TIMESTAMP, message_id: 'm1', response_id: 'r1' })]);
    const violations = await takeFrameViolations();
    expect(violations).toHaveLength(6);
    expect(violations[0]).toMatch(/^frame on \/v1\/agents\/a1\/chat: \{"type":"surprise".*\n {2}no message for type "surprise" on channel chat/s);
    expect(violations[1]).toMatch(/does not match message "stream_end" of channel chat: .*must have required property 'usage'/);
    expect(violations[2]).toMatch(/does not match message "error" of channel chat: data\/code must be equal to one of the allowed values/);
    expect(violations[3]).toContain('not JSON: not json');
    expect(violations[4]).toContain('a binary frame');
    expect(violations[5]).toMatch(/^frame on \/v1\/agents\/a1\/events: .*\n {2}no message for type "stream_start" on channel events/s);
  });

  it('checks FrameClient sockets too', async () => {
    script = [JSON.stringify({ type: 'event', timestamp: TIMESTAMP })];
    const client = await FrameClient.connect(`${base}/v1/agents/a1/events`);
    await client.closed;
    expect(client.frames).toHaveLength(1);
    expect(await takeFrameViolations()).toEqual([expect.stringContaining("must have required property 'event_type'")]);
  });

  it('leaves sockets to paths that are not channels of the document alone', async () => {
    expect(await receive('/host-ws', ['anything', Buffer.from([0])])).toHaveLength(2);
    expect(await takeFrameViolations()).toEqual([]);
  });

  it('compiles from the document alone: one validator per channel and frame type', () => {
    const validator = compileFrameValidator(buildAsyncApiDocument());
    expect(validator.channelOf('ws://h/v1/agents/x%2Fy/chat')).toBe('chat');
    expect(validator.channelOf('ws://h/v1/agents/x/events?since=3')).toBe('events');
    expect(validator.channelOf('ws://h/v1/agents/x/logs')).toBeUndefined();
    expect(validator.check('ws://h/v1/agents/x/events', JSON.stringify({ type: 'error', timestamp: TIMESTAMP, error: 'read-only', code: 'invalid_request' }))).toBeUndefined();
    expect(validator.check('ws://h/v1/agents/x/events', JSON.stringify({ type: 'tool_result', timestamp: TIMESTAMP, tool: 't', status: 'success' }))).toContain('no message for type "tool_result" on channel events');
  });
});
