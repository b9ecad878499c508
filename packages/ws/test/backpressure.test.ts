/**
 * What protects the server from its clients: a consumer that stops reading is closed with
 * 1008 while the server's queued bytes stay under the cap; a peer that stops answering pings
 * is terminated; an oversized message closes its socket with 1009. One host is enough here:
 * these are properties of the transport, not of where it is mounted.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentDefinition } from '@sentinel/api-core';
import { FrameClient } from './ws-client.js';
import { bearer, eventually, startWsEnv, type WsEnv } from './ws-env.js';

const QUEUE_CAP = 256 * 1024;
const HIGH_WATER_MARK = 64 * 1024;
const BIG_CONTENT = 'x'.repeat(64 * 1024);

describe('slow consumers', () => {
  let env: WsEnv;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    env = await startWsEnv('node:http', { ws: { sendQueueMaxBytes: QUEUE_CAP, highWaterMarkBytes: HIGH_WATER_MARK, closeTimeoutMs: 2_000 } });
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await env.close();
  });

  /**
   * Appends big events until the transport has closed `closesBefore + 1` slow consumers. Each
   * append yields to I/O first, so the socket gets every chance to drain: what fills up is the
   * client's side, not one synchronous burst.
   */
  async function floodUntilSlowClose(agentId: string, closesBefore: number): Promise<number> {
    let appended = 0;
    while (env.handle.stats.slowConsumerCloses === closesBefore) {
      if (appended >= 2_000) throw new Error('no slow-consumer close after 2000 events of 64 KiB');
      await new Promise((resolve) => setImmediate(resolve));
      await env.api.journal.event(agentId, 'flood', BIG_CONTENT, { n: appended++ });
    }
    return appended;
  }

  it('a client that stops reading is closed with 1008 and its queue never exceeds the cap', async () => {
    const agent = await env.createAgent();
    let raw: Socket | undefined;
    const client = await FrameClient.connect(env.url(agent.id, 'events'), {
      ...bearer(env.adminToken),
      // The real TCP socket under the ws client, so the test can stop reading from it.
      createConnection: (options) => {
        raw = connect(options as Parameters<typeof connect>[0]);
        sockets.push(raw);
        return raw;
      },
    });
    await client.waitFor((f) => f.event_type === 'agent_status', 'the snapshot');
    raw?.pause();

    const closesBefore = env.handle.stats.slowConsumerCloses;
    const appended = await floodUntilSlowClose(agent.id, closesBefore);
    const stats = env.handle.stats;
    expect(stats.slowConsumerCloses).toBe(closesBefore + 1);
    // The queue was used (the socket really backed up) and never grew past its cap.
    expect(stats.peakQueuedBytes).toBeGreaterThan(0);
    expect(stats.peakQueuedBytes).toBeLessThanOrEqual(QUEUE_CAP);
    expect(appended).toBeGreaterThan(QUEUE_CAP / BIG_CONTENT.length);

    // Reading again, the client finds what was sent before the cut, then the close frame.
    raw?.resume();
    expect(await client.closed).toEqual({ code: 1008, reason: 'consumer too slow' });
    const delivered = client.frames.filter((f) => f.event_type === 'flood').map((f) => f.data.n as number);
    expect(delivered).toEqual(delivered.map((_, i) => i));
    expect(delivered.length).toBeLessThan(appended);
    await eventually(() => env.handle.clients === 0, 'the socket to be gone');
    expect(env.handle.stats.queuedBytes).toBe(0);
  });

  it('a raw TCP client that completes the handshake and never reads is cut off, memory bounded', async () => {
    const agent = await env.createAgent();
    const { port } = new URL(env.host.baseUrl);
    const socket = connect(Number(port), '127.0.0.1');
    sockets.push(socket);
    await once(socket, 'connect');
    socket.write(
      `GET /v1/agents/${agent.id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${env.adminToken}\r\n\r\n`,
    );
    // Read only the handshake answer, then never again.
    const [head] = (await once(socket, 'data')) as [Buffer];
    socket.pause();
    expect(head.toString('latin1')).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    await eventually(() => env.handle.clients === 1, 'the server-side socket');

    const closesBefore = env.handle.stats.slowConsumerCloses;
    await floodUntilSlowClose(agent.id, closesBefore);
    expect(env.handle.stats.peakQueuedBytes).toBeLessThanOrEqual(QUEUE_CAP);
    // Destroyed after closeTimeoutMs, since it never answers the close frame.
    await eventually(() => env.handle.clients === 0, 'the server to drop the socket', 5_000);
  });
});

describe('a slow chat reader', () => {
  let env: WsEnv;
  let upstream: Server;
  /** Chunks the fake model streamed in its last answer. */
  let produced: string[] = [];
  /** Set once the fake model has sent its done line. */
  let finished = false;
  const sockets: Socket[] = [];
  const FILLER = 'x'.repeat(1000);

  /**
   * A loopback model speaking Ollama's /api/chat NDJSON that streams one piece per line until
   * the transport has merged 100 chunks for the backed-up socket (so the backpressure is real,
   * whatever the kernel buffers absorb), then 300 more pieces, then the done line.
   */
  function startModel(): Promise<Server> {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        void (async () => {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          const line = (content: string, done = false) =>
            `${JSON.stringify({ model: 'slow', created_at: new Date().toISOString(), message: { role: 'assistant', content }, done, ...(done ? { done_reason: 'stop', prompt_eval_count: 1, eval_count: 1 } : {}) })}\n`;
          produced = [];
          finished = false;
          const mergedBefore = env.handle.stats.coalescedChunks;
          let extra = -1;
          for (let i = 0; i < 20_000 && extra !== 0; i++) {
            // Long pieces: the kernel's socket buffers (megabytes on loopback) fill in fewer lines.
            const piece = `${i}:${FILLER} `;
            produced.push(piece);
            if (!res.write(line(piece))) await once(res, 'drain');
            if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
            if (extra > 0) extra--;
            else if (extra < 0 && env.handle.stats.coalescedChunks - mergedBefore >= 100) extra = 300;
          }
          res.end(line('', true));
          finished = true;
        })();
      });
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
  }

  beforeAll(async () => {
    upstream = await startModel();
    env = await startWsEnv('node:http', {
      ws: { sendQueueMaxBytes: 4 * 1024 * 1024, highWaterMarkBytes: 16 * 1024 },
      providers: { env: {}, file: false, ollama: { host: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` } },
    });
    await env.api.images.build(parseAgentDefinition({ name: 'test/slow-model', tag: 'v1', model: { provider: 'ollama', name: 'slow' } }));
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await env.close();
    await new Promise((resolve) => upstream.close(resolve));
  });

  it('gets fewer, merged stream_chunk frames whose text is exactly stream_end.content, indexes increasing from 0', async () => {
    const agent = await env.createAgent({ image: 'test/slow-model:v1' });
    let raw: Socket | undefined;
    const client = await FrameClient.connect(env.url(agent.id, 'chat'), {
      ...bearer(env.adminToken),
      createConnection: (options) => {
        raw = connect(options as Parameters<typeof connect>[0]);
        sockets.push(raw);
        return raw;
      },
    });
    await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
    raw?.pause();
    client.send({ type: 'message', content: 'talk a lot', message_id: 'slow-1' });
    // The model finishes while the client is not reading: everything after the kernel buffers waits in the queue.
    await eventually(() => finished, 'the model to finish', 20_000);
    expect(env.handle.stats.coalescedChunks).toBeGreaterThanOrEqual(100);
    expect(env.handle.stats.slowConsumerCloses).toBe(0);
    raw?.resume();

    const end = await client.terminal('slow-1', 20_000);
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop' });
    const chunks = client.framesFor('slow-1').filter((f) => f.type === 'stream_chunk');
    const text = produced.join('');
    expect(end.content).toBe(text);
    // Nothing lost, nothing reordered: the chunks joined are the answer.
    expect(chunks.map((f) => f.content).join('')).toBe(text);
    // Fewer frames than the model's pieces: the backed-up ones were merged.
    expect(chunks.length).toBeLessThan(produced.length);
    expect(produced.length - chunks.length).toBeGreaterThanOrEqual(100);
    // A merged frame keeps its first chunk's index: indexes start at 0 and only increase (they may skip).
    const indexes = chunks.map((f) => f.chunk_index as number);
    expect(indexes[0]).toBe(0);
    for (let i = 1; i < indexes.length; i++) expect(indexes[i]).toBeGreaterThan(indexes[i - 1] as number);
    expect(indexes.at(-1)).toBeLessThan(produced.length);
    expect(indexes.some((index, i) => i > 0 && index > (indexes[i - 1] as number) + 1)).toBe(true);
    client.close();
  });
});

describe('heartbeat and limits', () => {
  let env: WsEnv;

  beforeAll(async () => {
    env = await startWsEnv('node:http', { ws: { pingIntervalMs: 100, maxPayload: 4 * 1024 } });
  });

  afterAll(async () => {
    await env.close();
  });

  it('a peer that does not answer pings is terminated; one that does stays', async () => {
    const agent = await env.createAgent();
    const silent = await FrameClient.connect(env.url(agent.id, 'events'), { ...bearer(env.adminToken), autoPong: false });
    const healthy = await FrameClient.connect(env.url(agent.id, 'events'), bearer(env.adminToken));
    let pings = 0;
    silent.ws.on('ping', () => pings++);

    const closed = await silent.closed;
    expect(closed.code).toBe(1006);
    expect(pings).toBeGreaterThanOrEqual(1);
    expect(env.handle.stats.heartbeatTerminations).toBeGreaterThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(healthy.ws.readyState).toBe(WebSocket.OPEN);
    healthy.close();
  });

  it('a message over maxPayload closes the socket with 1009; the server keeps serving', async () => {
    const agent = await env.createAgent();
    const client = await FrameClient.connect(env.url(agent.id, 'chat'), bearer(env.adminToken));
    await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
    client.send({ type: 'message', content: 'y'.repeat(8 * 1024) });
    expect((await client.closed).code).toBe(1009);

    const next = await FrameClient.connect(env.url(agent.id, 'chat'), bearer(env.adminToken));
    next.send({ type: 'message', content: 'small', message_id: 'm-small' });
    expect(await next.terminal('m-small')).toMatchObject({ type: 'stream_end', content: 'Echo: small' });
    next.close();
  });

  it('fans one event out to many sockets, every one in seq order', async () => {
    const agent = await env.createAgent();
    const subscribers = await Promise.all(Array.from({ length: 25 }, () => FrameClient.connect(env.url(agent.id, 'events'), bearer(env.adminToken))));
    await Promise.all(subscribers.map((s) => s.waitFor((f) => f.event_type === 'agent_status', 'the snapshot')));
    let last = 0;
    for (let i = 0; i < 40; i++) last = (await env.api.journal.event(agent.id, 'fan', `event ${i}`, { i })).seq;
    await Promise.all(subscribers.map((s) => s.waitFor((f) => f.seq === last, `seq ${last}`)));
    const expected = subscribers[0]?.frames.filter((f) => f.event_type === 'fan').map((f) => f.seq);
    expect(expected).toHaveLength(40);
    for (const s of subscribers) expect(s.frames.filter((f) => f.event_type === 'fan').map((f) => f.seq)).toEqual(expected);
    for (const s of subscribers) s.close();
  });
});

describe('permessage-deflate', () => {
  it('is off by default and negotiated only when the option is on', async () => {
    const plain = await startWsEnv('node:http');
    const compressed = await startWsEnv('node:http', { ws: { perMessageDeflate: true } });
    try {
      const agentA = await plain.createAgent();
      const a = await FrameClient.connect(plain.url(agentA.id, 'chat'), bearer(plain.adminToken));
      expect(a.ws.extensions).toBe('');
      a.close();

      const agentB = await compressed.createAgent();
      const b = await FrameClient.connect(compressed.url(agentB.id, 'chat'), bearer(compressed.adminToken));
      expect(b.ws.extensions).toContain('permessage-deflate');
      const text = 'compress me '.repeat(200).trim();
      b.send({ type: 'message', content: text, message_id: 'm-deflate' });
      expect(await b.terminal('m-deflate')).toMatchObject({ type: 'stream_end', content: `Echo: ${text}`, reason: 'stop' });
      b.close();
    } finally {
      await plain.close();
      await compressed.close();
    }
  });
});
