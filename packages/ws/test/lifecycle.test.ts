/**
 * How sockets end, on every host: an agent deleted mid-stream, the api shutting down mid-turn,
 * the transport detached. Each gets its terminal frame first, then the close code of
 * docs/ARCHITECTURE.md#the-protocol (1000 deleted, 1001 shutdown), and the server stays healthy.
 */
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { FrameClient, isTerminal } from './ws-client.js';
import { ADMIN, bearer, eventually, longMessage, startWsEnv, type WsEnv } from './ws-env.js';

describe.each(HOSTS)('WebSocket lifecycle on %s', (hostName) => {
  let env: WsEnv | undefined;
  const clients: FrameClient[] = [];

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await env?.close();
    env = undefined;
  });

  async function open(current: WsEnv, agentId: string, kind: 'chat' | 'events'): Promise<FrameClient> {
    const client = await FrameClient.connect(current.url(agentId, kind), bearer(current.adminToken));
    clients.push(client);
    await client.waitFor((f) => f.event_type === 'connection_established' || f.event_type === 'agent_status', 'the first frame');
    return client;
  }

  it('deleting the agent mid-stream: stream_end "deleted", then close 1000 with a reason; the server stays healthy', async () => {
    const current = (env = await startWsEnv(hostName));
    const agent = await current.createAgent();
    const chat = await open(current, agent.id, 'chat');
    const events = await open(current, agent.id, 'events');
    chat.send({ type: 'message', content: longMessage(300), message_id: 'm-doomed' });
    await chat.waitFor((f) => f.type === 'stream_chunk', 'a first chunk');

    await current.api.agents.delete(ADMIN, agent.id);
    const end = await chat.terminal('m-doomed');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'deleted' });
    expect(chat.framesFor('m-doomed').filter(isTerminal)).toHaveLength(1);
    expect(await chat.closed).toEqual({ code: 1000, reason: 'agent deleted' });
    expect((await events.closed).code).toBe(1000);
    // The terminal frame came before the close.
    expect(chat.frames.at(-1)).toMatchObject({ type: 'stream_end', message_id: 'm-doomed' });

    await eventually(() => current.handle.clients === 0, 'both sockets gone');
    const health = await request(`${current.host.baseUrl}/v1/health`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    const other = await current.createAgent();
    const fresh = await open(current, other.id, 'chat');
    fresh.send({ type: 'message', content: 'still alive', message_id: 'm-fresh' });
    expect(await fresh.terminal('m-fresh')).toMatchObject({ type: 'stream_end', reason: 'stop' });
  });

  it('api.shutdown() mid-turn: stream_end "shutdown", then close 1001', async () => {
    const current = (env = await startWsEnv(hostName));
    const agent = await current.createAgent();
    const chat = await open(current, agent.id, 'chat');
    const events = await open(current, agent.id, 'events');
    chat.send({ type: 'message', content: longMessage(300), message_id: 'm-cut' });
    await chat.waitFor((f) => f.type === 'stream_chunk', 'a first chunk');

    await current.api.shutdown();
    expect(await chat.terminal('m-cut')).toMatchObject({ type: 'stream_end', reason: 'shutdown' });
    expect(await chat.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect((await events.closed).code).toBe(1001);
    await eventually(() => current.handle.clients === 0, 'both sockets gone');
  });

  it('closing the transport closes every socket with 1001; plain HTTP keeps working', async () => {
    const current = (env = await startWsEnv(hostName));
    const agent = await current.createAgent();
    const chat = await open(current, agent.id, 'chat');
    const events = await open(current, agent.id, 'events');
    expect(current.handle.clients).toBe(2);

    await current.handle.close();
    expect(await chat.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(await events.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect(current.handle.clients).toBe(0);
    // Idempotent, and plain HTTP on the same server is untouched.
    await current.handle.close();
    const health = await request(`${current.host.baseUrl}/v1/health`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
  });
});
