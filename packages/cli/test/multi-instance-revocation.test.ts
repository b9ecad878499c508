/**
 * Tickets and revocation across instances (issue 13): two `sentinel api` processes on one
 * PostgreSQL and one Redis. A ticket minted on A is consumed on B, then refused on A; a logout
 * on A is refused on B within a second and closes B's sockets with 4401; revoke-tokens and a
 * password change on one instance close the other's sockets with 4401.
 */
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInstances, type Instance, type Instances } from './instances.js';
import { callJson as call } from './spawn-cli.js';

const CLOSE_CREDENTIAL_REVOKED = 4401;

interface Opened {
  readonly ws: WebSocket;
  readonly closed: Promise<{ code: number; reason: string }>;
}

const sockets: WebSocket[] = [];

/** Opens a socket and waits for its first frame; rejects with the status when refused. */
function openSocket(url: string, token?: string): Promise<Opened> {
  const ws = new WebSocket(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  sockets.push(ws);
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  return new Promise((resolve, reject) => {
    ws.once('message', () => resolve({ ws, closed }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      reject(new Error(`upgrade refused with ${res.statusCode}`));
    });
  });
}

describe('tickets and revocation across two instances', () => {
  let instances: Instances;
  let a: Instance;
  let b: Instance;
  let adminToken: string;
  let agentId: string;

  const ticket = async (on: Instance, token: string, channel: 'chat' | 'events'): Promise<string> => {
    const minted = await call('POST', `${on.url}/v1/ws-tickets`, token, { agent_id: agentId, channel });
    expect(minted.status, JSON.stringify(minted.json)).toBe(201);
    return minted.json.ticket as string;
  };

  /** Polls until `probe` holds, within `ms`. */
  const within = async (ms: number, probe: () => Promise<boolean>, what: string): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  beforeAll(async () => {
    instances = await createInstances('sentinel-revocation-');
    [a, b] = await Promise.all([instances.start('a'), instances.start('b')]);
    adminToken = await instances.login(a);
    const created = await call('POST', `${a.url}/v1/users`, adminToken, { username: 'carol', password: 'carol-password-1' });
    expect(created.status).toBe(201);
    const agent = await call('POST', `${a.url}/v1/agents`, adminToken, { image: 'sentinel/echo:latest', name: 'tickets-across' });
    expect(agent.status).toBe(201);
    agentId = agent.json.id as string;
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets.splice(0)) socket.terminate();
    await instances?.close();
  });

  it('a ticket minted on A is consumed on B, then refused on A', async () => {
    const t = await ticket(a, adminToken, 'chat');
    const opened = await openSocket(`${b.ws}/v1/agents/${agentId}/chat?ticket=${t}`);
    expect(opened.ws.readyState).toBe(WebSocket.OPEN);
    await expect(openSocket(`${a.ws}/v1/agents/${agentId}/chat?ticket=${t}`)).rejects.toThrow('upgrade refused with 401');
    await expect(openSocket(`${b.ws}/v1/agents/${agentId}/chat?ticket=${t}`)).rejects.toThrow('upgrade refused with 401');
  });

  it('a logout on A: refused on B within 1 s, and B’s sockets (token and ticket) close with 4401', async () => {
    const token = await instances.login(b);
    const onB = await openSocket(`${b.ws}/v1/agents/${agentId}/events`, token);
    const ticketOnB = await openSocket(`${b.ws}/v1/agents/${agentId}/chat?ticket=${await ticket(a, token, 'chat')}`);
    expect((await call('GET', `${b.url}/v1/agents`, token)).status).toBe(200);
    const loggedOut = Date.now();
    expect((await call('POST', `${a.url}/v1/auth/logout`, token)).status).toBe(204);
    expect((await call('GET', `${a.url}/v1/agents`, token)).status).toBe(401);
    await within(1000, async () => (await call('GET', `${b.url}/v1/agents`, token)).status === 401, 'B refuses the logged-out token');
    for (const socket of [onB, ticketOnB]) expect((await socket.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
    expect(Date.now() - loggedOut).toBeLessThan(1000);
    // The admin's other token is untouched.
    expect((await call('GET', `${b.url}/v1/agents`, adminToken)).status).toBe(200);
  });

  it("revoke-tokens on A closes carol's sockets on B with 4401; a password change on B closes hers on A", async () => {
    const carolAgent = await call('POST', `${a.url}/v1/agents`, await instances.login(a, 'carol', 'carol-password-1'), { image: 'sentinel/echo:latest', name: 'carols' });
    expect(carolAgent.status).toBe(201);
    const id = carolAgent.json.id as string;

    const first = await instances.login(b, 'carol', 'carol-password-1');
    const onB = await openSocket(`${b.ws}/v1/agents/${id}/chat`, first);
    expect((await call('POST', `${a.url}/v1/users/carol/revoke-tokens`, adminToken)).status).toBe(204);
    expect((await onB.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
    await within(1000, async () => (await call('GET', `${b.url}/v1/agents`, first)).status === 401, 'B refuses the revoked token');

    const second = await instances.login(a, 'carol', 'carol-password-1');
    const onA = await openSocket(`${a.ws}/v1/agents/${id}/events`, second);
    const changed = await call('PUT', `${b.url}/v1/users/carol/password`, second, { current_password: 'carol-password-1', new_password: 'carol-password-2' });
    expect(changed.status).toBe(204);
    expect((await onA.closed).code).toBe(CLOSE_CREDENTIAL_REVOKED);
  });
});
