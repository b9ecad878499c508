/**
 * The WebSocket endpoints take the same agent references as the REST routes (the id, the name
 * or a unique id prefix, within what the caller may see), over real sockets on every host: the
 * session is the agent's, under its id, whatever reference opened it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { FrameClient, refusal } from './ws-client.js';
import { BOB, bearer, startWsEnv, type WsEnv } from './ws-env.js';

describe.each(HOSTS)('WebSocket agent references on %s', (hostName) => {
  let env: WsEnv;
  const clients: FrameClient[] = [];
  const origin = { secure: false, host: 'localhost' };

  beforeAll(async () => {
    env = await startWsEnv(hostName);
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  async function connect(ref: string, kind: 'chat' | 'events', token: string): Promise<FrameClient> {
    const client = await FrameClient.connect(env.url(ref, kind), bearer(token));
    clients.push(client);
    return client;
  }

  it('chat by name and by id prefix talks to the agent under its id', async () => {
    const agent = await env.api.agents.create(BOB, { image: 'sentinel/echo', name: 'ws helper' }, origin);
    for (const [ref, messageId] of [['ws helper', 'by-name'], [agent.id.slice(0, 10), 'by-prefix']] as const) {
      const chat = await connect(ref, 'chat', env.bobToken);
      const welcome = await chat.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
      expect(welcome.data).toMatchObject({ agent_id: agent.id, agent_name: 'ws helper', status: 'running' });
      chat.send({ type: 'message', content: 'hello there', message_id: messageId, stream: false });
      expect(await chat.terminal(messageId)).toMatchObject({ type: 'response', content: 'Echo: hello there', reason: 'stop' });
    }
    const stored = await env.api.store.listMessages(agent.id);
    expect(stored.filter((m) => m.role === 'user').map((m) => m.message_id)).toEqual(['by-name', 'by-prefix']);
  });

  it('events by name carry the agent id and deliver its live events', async () => {
    const agent = await env.api.agents.create(BOB, { image: 'sentinel/echo', name: 'watched' }, origin);
    const events = await connect('watched', 'events', env.bobToken);
    expect(await events.waitFor(() => true, 'the snapshot')).toMatchObject({ event_type: 'agent_status', agent_id: agent.id });
    const chat = await connect(agent.id, 'chat', env.bobToken);
    chat.send({ type: 'message', content: 'ping', message_id: 'ev-1' });
    await chat.terminal('ev-1');
    const processed = await events.waitFor((f) => f.event_type === 'message_processed', 'message_processed');
    expect(processed).toMatchObject({ agent_id: agent.id, data: { message_id: 'ev-1' } });
  });

  it('refuses at the upgrade: another user\'s agent by name is 404, an ambiguous prefix is 409 with the matches', async () => {
    await env.api.agents.create(BOB, { image: 'sentinel/echo', name: 'private-name' }, origin);
    await env.api.users.create({ username: 'dave', password: 'dave-password-1', role: 'user' });
    const dave = (await env.api.authService.issueToken('dave')).token;
    for (const kind of ['chat', 'events'] as const) {
      const refused = await refusal(env.url('private-name', kind), bearer(dave));
      expect(refused).toMatchObject({ status: 404, opened: false, body: { code: 'not_found' } });
    }

    // Two of bob's agents share a prefix: ids chosen through the Store, as the prefix is all that matters.
    const now = new Date().toISOString();
    const image = (await env.api.images.get('sentinel/echo:latest')).id;
    for (const id of ['feedface00000001', 'feedface00000002']) {
      await env.api.store.createAgent({
        id, name: `twin-${id.slice(-1)}`, owner: BOB.username, image: 'sentinel/echo:latest', image_id: image, status: 'running', model: 'echo/echo',
        parameters: {}, environment: {}, usage_requests: 0, usage_tokens: 0, created_at: now, updated_at: now,
      });
    }
    for (const kind of ['chat', 'events'] as const) {
      const ambiguous = await refusal(env.url('feedface', kind), bearer(env.bobToken));
      expect(ambiguous.status).toBe(409);
      expect(ambiguous.opened).toBe(false);
      expect(ambiguous.body.code).toBe('conflict');
      expect(ambiguous.body.details.matches.map((m: { id: string }) => m.id).sort()).toEqual(['feedface00000001', 'feedface00000002']);
    }
    const exact = await connect('feedface00000002', 'chat', env.bobToken);
    expect((await exact.waitFor((f) => f.event_type === 'connection_established', 'welcome')).data.agent_id).toBe('feedface00000002');
  });
});
