/**
 * Authentication and authorization happen on the upgrade request, before any socket exists
 * (docs/ARCHITECTURE.md#auth-and-tenancy): every refusal is seen by the client as an HTTP status on
 * 'unexpected-response', never as an 'open'. Paths that are not ours stay the host's.
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { FrameClient, refusal } from './ws-client.js';
import { BOB, bearer, expiredToken, startWsEnv, type WsEnv } from './ws-env.js';

describe.each(HOSTS)('WebSocket upgrade auth on %s', (hostName) => {
  let env: WsEnv;
  let agentId: string;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    env = await startWsEnv(hostName);
    agentId = (await env.createAgent()).id;
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  it('no token: 401 with WWW-Authenticate and an {error, code} body, no socket', async () => {
    for (const kind of ['chat', 'events'] as const) {
      const refused = await refusal(env.url(agentId, kind));
      expect(refused.opened).toBe(false);
      expect(refused.status).toBe(401);
      expect(refused.headers['www-authenticate']).toBe('Bearer');
      expect(refused.headers['content-type']).toMatch(/^application\/json/);
      expect(refused.headers.connection).toBe('close');
      expect(refused.body).toEqual({ error: 'authentication required', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    }
    expect(env.handle.clients).toBe(0);
  });

  it('a wrong token and an expired token: 401', async () => {
    const garbage = await refusal(env.url(agentId, 'chat'), bearer('not.a.token'));
    expect(garbage).toMatchObject({ status: 401, opened: false, body: { code: 'unauthorized' } });

    const otherSecret = env.adminToken.split('.').slice(0, 2).join('.') + '.c2lnbmVkLWVsc2V3aGVyZQ';
    expect(await refusal(env.url(agentId, 'chat'), bearer(otherSecret))).toMatchObject({ status: 401, body: { code: 'unauthorized' } });

    const expired = await refusal(env.url(agentId, 'events'), bearer(expiredToken({ username: 'admin', role: 'admin' })));
    expect(expired).toMatchObject({ status: 401, opened: false, body: { code: 'unauthorized' } });
    expect(expired.body.error).toMatch(/expired/);
  });

  it('a token in the subprotocol offer is accepted and only sentinel.v1 is selected', async () => {
    const client = await FrameClient.connect(env.url(agentId, 'chat'), { protocols: ['sentinel.v1', `bearer.${env.adminToken}`] });
    clients.push(client);
    expect(client.ws.protocol).toBe('sentinel.v1');
    expect(await client.waitFor(() => true, 'the welcome frame')).toMatchObject({ event_type: 'connection_established' });

    // Seen from the wire: the response names sentinel.v1 and never echoes the token.
    const raw = new WebSocket(env.url(agentId, 'events'), ['sentinel.v1', `bearer.${env.adminToken}`]);
    raw.on('error', () => undefined);
    const [response] = (await once(raw, 'upgrade')) as [IncomingMessage];
    expect(response.headers['sec-websocket-protocol']).toBe('sentinel.v1');
    raw.terminate();

    const badOffer = await refusal(env.url(agentId, 'chat'), { protocols: ['sentinel.v1', 'bearer.not-a-token'] });
    expect(badOffer).toMatchObject({ status: 401, opened: false });
  });

  it("another user's agent and an unknown agent: 404, whichever stream", async () => {
    for (const kind of ['chat', 'events'] as const) {
      const foreign = await refusal(env.url(agentId, kind), bearer(env.bobToken));
      expect(foreign).toMatchObject({ status: 404, opened: false, body: { code: 'not_found' } });
      const unknown = await refusal(env.url('no-such-agent', kind), bearer(env.adminToken));
      expect(unknown).toMatchObject({ status: 404, opened: false, body: { code: 'not_found' } });
    }
    // Bob's own agent is his to chat with.
    const bobs = await env.createAgent({ owner: BOB });
    const client = await FrameClient.connect(env.url(bobs.id, 'chat'), bearer(env.bobToken));
    clients.push(client);
    expect(await client.waitFor(() => true, 'the welcome frame')).toMatchObject({ data: { agent_id: bobs.id } });
  });

  it('a since that is not a non-negative integer: 400', async () => {
    for (const since of ['-1', 'abc', '1.5', '99999999999999999999']) {
      const refused = await refusal(env.url(agentId, 'events', `since=${since}`), bearer(env.adminToken));
      expect(refused, since).toMatchObject({ status: 400, opened: false, body: { code: 'invalid_request' } });
    }
  });

  it('an Upgrade that is not websocket on our path: 400 over the raw socket', async () => {
    const { port } = new URL(env.host.baseUrl);
    const socket = connect(Number(port), '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.write(`GET /v1/agents/${agentId}/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nAuthorization: Bearer ${env.adminToken}\r\n\r\n`);
    await once(socket, 'close');
    expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(text).toContain('"code":"invalid_request"');
  });

  it('a foreign path is refused 404 while ours is the only listener, and left to the host when it has its own', async () => {
    const alone = await refusal(`${env.wsBase}/host-ws`);
    expect(alone).toMatchObject({ status: 404, opened: false, body: { code: 'not_found' } });

    // The host's own WebSocket route: a second 'upgrade' listener with its own noServer wss.
    const hostWss = new WebSocketServer({ noServer: true });
    hostWss.on('connection', (ws) => {
      ws.on('error', () => undefined);
      ws.on('message', (data) => ws.send(`host echo: ${String(data)}`));
    });
    const hostUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      if (req.url !== '/host-ws') return;
      hostWss.handleUpgrade(req, socket, head, (ws) => hostWss.emit('connection', ws, req));
    };
    env.host.server.on('upgrade', hostUpgrade);
    try {
      const hostClient = new WebSocket(`${env.wsBase}/host-ws`);
      hostClient.on('error', () => undefined);
      await once(hostClient, 'open');
      hostClient.send('hi');
      const [reply] = await once(hostClient, 'message');
      expect(String(reply)).toBe('host echo: hi');
      hostClient.terminate();

      // Ours still works next to it.
      const ours = await FrameClient.connect(env.url(agentId, 'chat'), bearer(env.adminToken));
      clients.push(ours);
      expect(await ours.waitFor(() => true, 'the welcome frame')).toMatchObject({ event_type: 'connection_established' });
    } finally {
      env.host.server.off('upgrade', hostUpgrade);
      await new Promise<void>((resolve) => hostWss.close(() => resolve()));
    }
  });
});
