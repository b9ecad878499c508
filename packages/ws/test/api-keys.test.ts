/**
 * API keys on the WebSocket upgrade, on every host: in the Authorization header and in the
 * `bearer.<key>` subprotocol, chat needing `agents:chat` and events `agents:read` (refused 403
 * with the RFC 6750 challenge before any socket exists), and a revoked key refused at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { CLOSE_CREDENTIAL_REVOKED } from '@sentinel/api-ws';
import { FrameClient, refusal } from './ws-client.js';
import { ADMIN, bearer, startWsEnv, type WsEnv } from './ws-env.js';

describe.each(HOSTS)('API keys on the WebSocket upgrade on %s', (hostName) => {
  let env: WsEnv;
  let agentId: string;
  let chatKey: string;
  let readKey: string;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    env = await startWsEnv(hostName);
    agentId = (await env.createAgent()).id;
    chatKey = (await env.api.apiKeys.create(ADMIN, { name: 'chat only', scopes: ['agents:chat'] })).key;
    readKey = (await env.api.apiKeys.create(ADMIN, { name: 'read only', scopes: ['agents:read'] })).key;
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  it('chat with an agents:chat key, in the header and in the subprotocol; events refused with the challenge', async () => {
    const header = await FrameClient.connect(env.url(agentId, 'chat'), bearer(chatKey));
    clients.push(header);
    expect(await header.waitFor(() => true, 'the welcome frame')).toMatchObject({ event_type: 'connection_established' });
    header.send({ type: 'message', content: 'hello over a key', message_id: 'm-key' });
    const end = await header.terminal('m-key');
    expect(end.type).not.toBe('error');

    const offered = await FrameClient.connect(env.url(agentId, 'chat'), { protocols: ['sentinel.v1', `bearer.${chatKey}`] });
    clients.push(offered);
    expect(offered.ws.protocol).toBe('sentinel.v1');
    expect(await offered.waitFor(() => true, 'the welcome frame')).toMatchObject({ event_type: 'connection_established' });

    for (const options of [bearer(chatKey), { protocols: ['sentinel.v1', `bearer.${chatKey}`] }]) {
      const refused = await refusal(env.url(agentId, 'events'), options);
      expect(refused).toMatchObject({ status: 403, opened: false, body: { code: 'insufficient_scope' } });
      expect(refused.headers['www-authenticate']).toBe('Bearer error="insufficient_scope", scope="agents:read"');
    }
  });

  it('events with an agents:read key; chat refused with the challenge', async () => {
    const events = await FrameClient.connect(env.url(agentId, 'events'), bearer(readKey));
    clients.push(events);
    expect(events.ws.readyState).toBe(events.ws.OPEN);
    const refused = await refusal(env.url(agentId, 'chat'), { protocols: ['sentinel.v1', `bearer.${readKey}`] });
    expect(refused).toMatchObject({ status: 403, opened: false, body: { code: 'insufficient_scope' } });
    expect(refused.headers['www-authenticate']).toBe('Bearer error="insufficient_scope", scope="agents:chat"');
  });

  it('a revoked key closes the sockets it opened with 4401 and is refused 401 on the next upgrade', async () => {
    const created = await env.api.apiKeys.create(ADMIN, { name: 'short lived', scopes: ['agents:chat', 'agents:read'] });
    const other = await env.api.apiKeys.create(ADMIN, { name: 'stays', scopes: ['agents:read'] });
    const events = await FrameClient.connect(env.url(agentId, 'events'), bearer(created.key));
    const chat = await FrameClient.connect(env.url(agentId, 'chat'), { protocols: ['sentinel.v1', `bearer.${created.key}`] });
    const kept = await FrameClient.connect(env.url(agentId, 'events'), bearer(other.key));
    clients.push(events, chat, kept);
    await env.api.apiKeys.revoke(ADMIN, created.id);
    for (const client of [events, chat]) expect((await client.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
    // A socket of another key of the same user stays open.
    expect(kept.ws.readyState).toBe(kept.ws.OPEN);
    for (const kind of ['chat', 'events'] as const) {
      const refused = await refusal(env.url(agentId, kind), bearer(created.key));
      expect(refused).toMatchObject({ status: 401, opened: false, body: { code: 'unauthorized', error: 'invalid api key' } });
    }
  });
});
