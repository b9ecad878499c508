/**
 * The events stream opened without `since` must not miss an event that arrives while it
 * subscribes. The window is provoked deterministically through the Store the api runs on (a
 * real SQLite store behind a Proxy that runs a hook inside the subscriber's start-up reads):
 *
 * - an event written by "another instance" (straight into the Store, its bus publish not seen
 *   here, as when it was published before this instance's Redis SUBSCRIBE took effect) while
 *   the stream reads its snapshot: it must come from the Store, before the next live event;
 * - an event journaled here (stored, then published) between joining the bus and reading the
 *   snapshot's seq: it must be delivered once.
 *
 * Both through the events WebSocket and through Server-Sent Events on the same host.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, openSqliteStore, type AgentEventsService, type SentinelApi, type Store } from '@sentinel/api-core';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { FrameClient, type Frame } from './ws-client.js';
import { bearer, eventually } from './ws-env.js';

const ORIGIN = { secure: false, host: 'localhost' };
const ADMIN = { username: 'admin', role: 'admin' } as const;

/** Runs once, inside the next start-up read `method` makes for the agent while a subscriber is starting. */
interface Hook {
  agentId: string;
  method: 'getAgent' | 'lastEventSeq';
  run: () => Promise<unknown>;
  fired: boolean;
}

let dir: string;
let inner: Store;
let api: SentinelApi;
let host: MountedApi;
let handle: WebSocketHandle;
let token: string;
let hook: Hook | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-events-race-'));
  inner = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (property !== 'getAgent' && property !== 'lastEventSeq') return (value as (...args: unknown[]) => unknown).bind(target);
      return async (agentId: string) => {
        const armed = hook;
        // Only the read of a starting subscriber: prepare() reads the agent too, before it joins.
        if (armed && !armed.fired && armed.method === property && armed.agentId === agentId && (api.events as AgentEventsService).subscriptionCount(agentId) > 0) {
          armed.fired = true;
          await armed.run();
        }
        return (value as (id: string) => Promise<unknown>).call(target, agentId);
      };
    },
  });
  api = await createSentinelApi({ dataDir: dir, store, tokenSecret: 'events-race-secret-0123456789abcdef', adminPassword: 'admin-password-for-tests' });
  host = await mountApi('node:http', api, { logRequests: false });
  handle = attachWebSocket(host.server, api);
  token = (await api.authService.issueToken(ADMIN.username)).token;
});

afterAll(async () => {
  await handle.close();
  await host.close();
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
async function newAgent(): Promise<string> {
  return (await api.agents.create(ADMIN, { image: 'sentinel/echo:latest', name: `race-${++counter}` }, ORIGIN)).id;
}

/** An event as another instance writes it: into the shared Store; its publish never reaches this instance. */
function storeOnly(agentId: string, content: string): Promise<unknown> {
  return inner.appendEvents(agentId, [{ agent_id: agentId, event_type: 'elsewhere', timestamp: new Date().toISOString(), content, data: {} }]);
}

/** The events of a stream after its snapshot, as [seq, content]. */
function seqs(frames: Frame[]): [number, string][] {
  return frames.filter((f) => f.type === 'event' && f.event_type !== 'agent_status').map((f) => [f.seq as number, f.content as string]);
}

/** A minimal SSE reader over node:http: the parsed `data:` of each complete event. */
async function openSse(agentId: string): Promise<{ frames: Frame[]; close(): void }> {
  const url = new URL(`${host.baseUrl}/v1/agents/${agentId}/events`);
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = httpRequest(url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` } }, resolve);
    req.on('error', reject);
    req.end();
  });
  expect(res.statusCode).toBe(200);
  const frames: Frame[] = [];
  let buffer = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6));
      if (data.length > 0) frames.push(JSON.parse(data.join('\n')) as Frame);
    }
  });
  res.on('error', () => undefined);
  return { frames, close: () => res.destroy() };
}

type Transport = 'websocket' | 'sse';

async function openStream(transport: Transport, agentId: string): Promise<{ frames: Frame[]; close(): void }> {
  if (transport === 'sse') return openSse(agentId);
  const client = await FrameClient.connect(`${host.baseUrl.replace(/^http/, 'ws')}/v1/agents/${agentId}/events`, bearer(token));
  return { frames: client.frames, close: () => client.close() };
}

describe.each<Transport>(['websocket', 'sse'])('events without since over %s', (transport) => {
  it('an event another instance stores while the stream takes its snapshot is delivered, in order, before the next live one', async () => {
    const agentId = await newAgent();
    const before = await inner.lastEventSeq(agentId);
    hook = { agentId, method: 'getAgent', run: () => storeOnly(agentId, 'during the snapshot'), fired: false };
    const stream = await openStream(transport, agentId);
    await eventually(() => stream.frames.some((f) => f.event_type === 'agent_status'), 'the snapshot');
    expect(hook.fired).toBe(true);
    const live = await api.journal.event(agentId, 'after', 'after the snapshot', {});
    await eventually(() => stream.frames.some((f) => f.seq === live.seq), 'the live event');
    expect(seqs(stream.frames)).toEqual([
      [before + 1, 'during the snapshot'],
      [live.seq, 'after the snapshot'],
    ]);
    stream.close();
  });

  it('an event journaled between joining the bus and reading the snapshot seq is delivered once', async () => {
    const agentId = await newAgent();
    let during = 0;
    hook = {
      agentId,
      method: 'lastEventSeq',
      run: async () => {
        during = (await api.journal.event(agentId, 'race', 'while subscribing', {})).seq;
      },
      fired: false,
    };
    const stream = await openStream(transport, agentId);
    await eventually(() => stream.frames.some((f) => f.event_type === 'agent_status'), 'the snapshot');
    expect(hook.fired).toBe(true);
    const live = await api.journal.event(agentId, 'after', 'after the snapshot', {});
    await eventually(() => stream.frames.some((f) => f.seq === live.seq), 'the live event');
    expect(seqs(stream.frames)).toEqual([
      [during, 'while subscribing'],
      [live.seq, 'after the snapshot'],
    ]);
    stream.close();
  });

  it('many opens racing with appends: every event after the snapshot arrives once, in seq order', async () => {
    const agentId = await newAgent();
    for (let round = 0; round < 20; round++) {
      hook = undefined;
      // Appends racing with the open, from here and from "another instance".
      const racing = Promise.all([api.journal.event(agentId, 'race', `r${round}a`, {}), storeOnly(agentId, `r${round}b`), api.journal.event(agentId, 'race', `r${round}c`, {})]);
      const stream = await openStream(transport, agentId);
      await racing;
      await eventually(() => stream.frames.some((f) => f.event_type === 'agent_status'), 'the snapshot');
      const last = await api.journal.event(agentId, 'after', `r${round} last`, {});
      await eventually(() => stream.frames.some((f) => f.seq === last.seq), `round ${round}: the last event`);
      const got = seqs(stream.frames).map(([seq]) => seq);
      // Consecutive from the first delivered up to the last: nothing skipped, nothing twice.
      const first = got[0] as number;
      expect(got).toEqual(Array.from({ length: last.seq - first + 1 }, (_, i) => first + i));
      stream.close();
    }
  });
});
