/**
 * Tickets, logout and revocation over real sockets on every host (issue 13 items 2 and 3): a
 * one-time ticket opens one socket once; a socket whose credential is logged out, revoked or
 * expired is closed with 4401; REST refuses the same credential with 401.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { CLOSE_CREDENTIAL_REVOKED } from '@sentinel/api-ws';
import { FrameClient, refusal } from './ws-client.js';
import { BOB, bearer, startWsEnv, type WsEnv } from './ws-env.js';

async function rest(env: WsEnv, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${env.host.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, json: text.length > 0 ? (JSON.parse(text) as unknown) : undefined };
}

async function login(env: WsEnv, username: string, password: string): Promise<string> {
  const response = await fetch(`${env.host.baseUrl}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { token: string }).token;
}

async function ticket(env: WsEnv, token: string, agentId: string, channel: 'chat' | 'events'): Promise<string> {
  const minted = await rest(env, 'POST', '/v1/ws-tickets', token, { agent_id: agentId, channel });
  expect(minted.status).toBe(201);
  const body = minted.json as { ticket: string; expires_at: string };
  expect(body.ticket).toMatch(/^wst_[A-Za-z0-9_-]{43}$/);
  expect(Date.parse(body.expires_at) - Date.now()).toBeGreaterThan(0);
  return body.ticket;
}

async function open(url: string, options: Parameters<typeof FrameClient.connect>[1] = {}): Promise<FrameClient> {
  const client = await FrameClient.connect(url, options);
  await client.waitFor(() => true, 'the first frame');
  return client;
}

describe.each(HOSTS)('WebSocket tickets and revocation on %s', (hostName) => {
  let env: WsEnv;
  let agentId: string;
  let bobsAgent: string;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    env = await startWsEnv(hostName, { wsTicketTtlMs: 1500 });
    agentId = (await env.createAgent()).id;
    bobsAgent = (await env.createAgent({ owner: BOB })).id;
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  it('a ticket opens its socket once; a replay is 401', async () => {
    for (const channel of ['chat', 'events'] as const) {
      const t = await ticket(env, env.adminToken, agentId, channel);
      const client = await open(env.url(agentId, channel, `ticket=${t}`));
      clients.push(client);
      const replay = await refusal(env.url(agentId, channel, `ticket=${t}`));
      expect(replay).toMatchObject({ status: 401, opened: false, body: { code: 'unauthorized' } });
    }
  });

  it('a ticket for another channel or another agent is 401 (and used up)', async () => {
    const forChat = await ticket(env, env.adminToken, agentId, 'chat');
    expect(await refusal(env.url(agentId, 'events', `ticket=${forChat}`))).toMatchObject({ status: 401, opened: false });
    expect(await refusal(env.url(agentId, 'chat', `ticket=${forChat}`))).toMatchObject({ status: 401, opened: false });

    const other = (await env.createAgent()).id;
    const forOther = await ticket(env, env.adminToken, other, 'events');
    expect(await refusal(env.url(agentId, 'events', `ticket=${forOther}`))).toMatchObject({ status: 401, opened: false });
    expect(await refusal(env.url(agentId, 'events', 'ticket=wst_not-a-ticket'))).toMatchObject({ status: 401, opened: false });
  });

  it("a ticket cannot be minted for another user's agent (404) or without agents:chat for chat", async () => {
    expect((await rest(env, 'POST', '/v1/ws-tickets', env.bobToken, { agent_id: agentId, channel: 'chat' })).status).toBe(404);
    expect((await rest(env, 'POST', '/v1/ws-tickets', env.bobToken, { agent_id: bobsAgent, channel: 'nope' })).status).toBe(400);
    const t = await ticket(env, env.bobToken, bobsAgent, 'chat');
    const client = await open(env.url(bobsAgent, 'chat', `ticket=${t}`));
    clients.push(client);
    expect(client.frames[0]).toMatchObject({ data: { agent_id: bobsAgent } });
  });

  it('a ticket expires (here after 1.5 s): 401', async () => {
    const t = await ticket(env, env.adminToken, agentId, 'events');
    await new Promise((resolve) => setTimeout(resolve, 1700));
    expect(await refusal(env.url(agentId, 'events', `ticket=${t}`))).toMatchObject({ status: 401, opened: false });
  });

  it('logout: REST 401 at once, and chat, events and ticket sockets opened with that token close with 4401', async () => {
    const token = await login(env, 'admin', 'admin-password-for-tests');
    const chat = await open(env.url(agentId, 'chat'), bearer(token));
    const events = await open(env.url(agentId, 'events'), bearer(token));
    const viaTicket = await open(env.url(agentId, 'events', `ticket=${await ticket(env, token, agentId, 'events')}`));
    const bystander = await open(env.url(agentId, 'events'), bearer(env.adminToken));
    clients.push(chat, events, viaTicket, bystander);

    expect((await rest(env, 'POST', '/v1/auth/logout', token)).status).toBe(204);
    expect((await rest(env, 'GET', '/v1/agents', token)).status).toBe(401);
    for (const client of [chat, events, viaTicket]) expect((await client.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
    // Another token of the same user is not logged out.
    expect((await rest(env, 'GET', '/v1/agents', env.adminToken)).status).toBe(200);
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);
    // A logged-out token cannot open sockets or mint tickets either.
    expect(await refusal(env.url(agentId, 'chat'), bearer(token))).toMatchObject({ status: 401, opened: false });
    expect((await rest(env, 'POST', '/v1/ws-tickets', token, { agent_id: agentId, channel: 'chat' })).status).toBe(401);
  });

  it('a ticket minted before its token was logged out is refused', async () => {
    const token = await login(env, 'admin', 'admin-password-for-tests');
    const t = await ticket(env, token, agentId, 'chat');
    expect((await rest(env, 'POST', '/v1/auth/logout', token)).status).toBe(204);
    expect(await refusal(env.url(agentId, 'chat', `ticket=${t}`))).toMatchObject({ status: 401, opened: false });
  });

  it("an admin's revoke-tokens closes every socket of that user with 4401; a new login works", async () => {
    const bobToken = (await env.api.authService.issueToken(BOB.username)).token;
    const chat = await open(env.url(bobsAgent, 'chat'), bearer(bobToken));
    const events = await open(env.url(bobsAgent, 'events', `ticket=${await ticket(env, bobToken, bobsAgent, 'events')}`));
    const adminSocket = await open(env.url(agentId, 'events'), bearer(env.adminToken));
    clients.push(chat, events, adminSocket);

    expect((await rest(env, 'POST', '/v1/users/bob/revoke-tokens', bobToken)).status).toBe(403);
    expect((await rest(env, 'POST', '/v1/users/bob/revoke-tokens', env.adminToken)).status).toBe(204);
    expect((await rest(env, 'POST', '/v1/users/nobody/revoke-tokens', env.adminToken)).status).toBe(404);
    for (const client of [chat, events]) expect((await client.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
    expect((await rest(env, 'GET', '/v1/agents', bobToken)).status).toBe(401);
    expect(adminSocket.ws.readyState).toBe(adminSocket.ws.OPEN);

    const fresh = await login(env, 'bob', 'bob-password-for-tests');
    const again = await open(env.url(bobsAgent, 'chat'), bearer(fresh));
    clients.push(again);
    env.bobToken = fresh;
  });

  it('a password change closes the old sockets with 4401', async () => {
    const old = await login(env, 'bob', 'bob-password-for-tests');
    const chat = await open(env.url(bobsAgent, 'chat'), bearer(old));
    clients.push(chat);
    const changed = await rest(env, 'PUT', '/v1/users/bob/password', old, { current_password: 'bob-password-for-tests', new_password: 'bob-password-changed' });
    expect(changed.status).toBe(204);
    expect((await chat.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
    await rest(env, 'PUT', '/v1/users/bob/password', env.adminToken, { new_password: 'bob-password-for-tests' });
    env.bobToken = await login(env, 'bob', 'bob-password-for-tests');
  });
});

describe.each(HOSTS)('a token expiring closes its sockets on %s', (hostName) => {
  let env: WsEnv;

  beforeAll(async () => {
    env = await startWsEnv(hostName, { tokenTtlSeconds: 2 });
  });

  afterAll(async () => {
    await env.close();
  });

  it('with 4401 at the expiry, on token and on ticket sockets', async () => {
    const agentId = (await env.createAgent()).id;
    const token = await login(env, 'admin', 'admin-password-for-tests');
    const started = Date.now();
    const chat = await open(env.url(agentId, 'chat'), bearer(token));
    const viaTicket = await open(env.url(agentId, 'events', `ticket=${await ticket(env, token, agentId, 'events')}`));
    for (const client of [chat, viaTicket]) {
      const closed = await client.closed;
      expect(closed.code).toBe(CLOSE_CREDENTIAL_REVOKED);
      expect(closed.reason).toMatch(/expired/);
    }
    expect(Date.now() - started).toBeLessThan(3500);
  });
});
