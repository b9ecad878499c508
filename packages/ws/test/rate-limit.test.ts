/**
 * Chat frames under a rate limit, over real sockets on every host: `message` and `tool_request`
 * frames take a unit from the caller's `chat` bucket; the one past the burst gets an `error` frame
 * `rate_limited` with `retry_after`, is not processed, and the socket stays open and usable.
 * `cancel` frames are never limited. Another user has a bucket of their own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOSTS } from '@sentinel/test-support/hosts';
import { FrameClient, isTerminal } from './ws-client.js';
import { BOB, bearer, startWsEnv, type WsEnv } from './ws-env.js';

const CHAT_BURST = 3;

describe.each(HOSTS)('chat rate limit on %s', (hostName) => {
  let env: WsEnv;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    env = await startWsEnv(hostName, { rateLimits: { chat: CHAT_BURST } });
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env.close();
  });

  async function chat(token: string, owner?: Parameters<WsEnv['createAgent']>[0]): Promise<FrameClient> {
    const agent = await env.createAgent(owner);
    const client = await FrameClient.connect(env.url(agent.id, 'chat'), bearer(token));
    clients.push(client);
    await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
    return client;
  }

  it(`answers the frame past a burst of ${CHAT_BURST} with rate_limited, does not process it, and keeps the socket open`, async () => {
    const client = await chat(env.adminToken);
    for (let n = 0; n < CHAT_BURST - 1; n++) {
      client.send({ type: 'message', content: `hello ${n}`, message_id: `ok-${n}` });
      expect(isTerminal(await client.terminal(`ok-${n}`))).toBe(true);
      expect((await client.terminal(`ok-${n}`)).type).toBe('stream_end');
    }
    client.send({ type: 'tool_request', tool: 'current_time', request_id: 'tool-ok' });
    expect(await client.waitFor((f) => f.request_id === 'tool-ok', 'the tool result')).toMatchObject({ type: 'tool_result', status: 'success' });

    client.send({ type: 'message', content: 'one too many', message_id: 'over' });
    const refused = await client.waitFor((f) => f.message_id === 'over', 'the refusal');
    expect(refused).toMatchObject({ type: 'error', code: 'rate_limited', message_id: 'over' });
    expect(refused.retry_after).toBeGreaterThan(0);
    expect(refused.error).toMatch(/try again in \d+ s$/);
    client.send({ type: 'tool_request', tool: 'current_time', request_id: 'tool-over' });
    expect(await client.waitFor((f) => f.request_id === 'tool-over', 'the tool refusal')).toMatchObject({ type: 'error', code: 'rate_limited' });

    // Not limited, and proof the socket still answers: a cancel of nothing in progress.
    client.send({ type: 'cancel', message_id: 'nothing-running' });
    expect(await client.waitFor((f) => f.message_id === 'nothing-running', 'the cancel answer')).toMatchObject({ type: 'error', code: 'not_found' });
    // The refused message was never processed: no other frame ever names it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(client.framesFor('over')).toHaveLength(1);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });

  it("gives another user a bucket of their own (bob chats while admin's is empty)", async () => {
    const bob = await chat(env.bobToken, { owner: BOB });
    bob.send({ type: 'message', content: 'hello from bob', message_id: 'bob-1' });
    expect((await bob.terminal('bob-1')).type).toBe('stream_end');
    const admin = await chat(env.adminToken);
    admin.send({ type: 'message', content: 'still over', message_id: 'admin-over' });
    expect(await admin.waitFor((f) => f.message_id === 'admin-over', 'the refusal')).toMatchObject({ type: 'error', code: 'rate_limited' });
  });
});
