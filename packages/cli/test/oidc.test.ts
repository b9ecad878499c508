/**
 * `sentinel api --oidc-issuer … --oidc-audience …` as a real process against a real OpenID
 * provider on loopback: REST and WebSocket upgrades (header and subprotocol forms) with the
 * provider's access tokens, the admin claim from the environment, scopes on the sockets, and
 * the flags that only make sense together.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OIDC_AUDIENCE, startOidcProvider, type RunningOidcProvider } from '@sentinel/test-support/oidc-provider';
import { assertBuilt, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'correct-horse-battery';

let tmp: string;
let provider: RunningOidcProvider;
const sockets: WebSocket[] = [];

beforeAll(async () => {
  assertBuilt();
  provider = await startOidcProvider({
    clients: [{ clientId: 'build-bot' }, { clientId: 'ops-console', claims: { groups: ['sentinel-admins'] } }],
  });
});

afterAll(async () => {
  await provider?.close();
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-cli-oidc-'));
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.terminate();
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
});

function startApi(args: string[], env: Record<string, string> = {}): CliProcess {
  return runCli(
    ['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, 'data'), '--no-log-requests', ...args],
    cleanEnv(tmp, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD, ...env }),
  );
}

async function call(url: string, method: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await request(url, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
}

/** Opens a socket and resolves with its first frame, or rejects with the refused upgrade's status. */
function firstFrame(url: string, options: { token?: string; protocols?: string[] }): Promise<any> {
  const ws = new WebSocket(url, options.protocols ?? [], options.token === undefined ? {} : { headers: { authorization: `Bearer ${options.token}` } });
  sockets.push(ws);
  ws.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => resolve({ ws, frame: JSON.parse(String(data)) }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
    setTimeout(() => reject(new Error('no frame within 10 s')), 10_000);
  });
}

describe('sentinel api with OpenID Connect', () => {
  it('serves REST and WebSockets to the provider\'s tokens; the admin claim comes from the environment', async () => {
    const cli = startApi(['--oidc-issuer', provider.issuer, '--oidc-audience', OIDC_AUDIENCE], {
      SENTINEL_OIDC_ADMIN_CLAIM: 'groups',
      SENTINEL_OIDC_ADMIN_VALUE: 'sentinel-admins',
    });
    const url = await cli.url();
    await cli.waitFor(() => cli.stdout().includes('openid connect tokens accepted'), 'the OIDC start-up line');

    const botToken = await provider.token('build-bot');
    const me = await call(`${url}/v1/auth/me`, 'GET', botToken);
    expect(me).toMatchObject({ status: 200, body: { username: 'build-bot', role: 'user' } });
    const agent = await call(`${url}/v1/agents`, 'POST', botToken, { image: 'sentinel/echo:latest', name: 'oidc-bot' });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);

    // The chat socket with the token in the Authorization header, then in the browser's subprotocol form.
    const chat = await firstFrame(agent.body.endpoints.chat as string, { token: botToken });
    expect(chat.frame).toMatchObject({ event_type: 'connection_established', data: { agent_id: agent.body.id } });
    const answer = new Promise<any>((resolve) => {
      chat.ws.on('message', (data: unknown) => {
        const frame = JSON.parse(String(data));
        if (frame.type === 'stream_end') resolve(frame);
      });
    });
    chat.ws.send(JSON.stringify({ type: 'message', content: 'hello over oidc', message_id: 'o-1' }));
    expect(await answer).toMatchObject({ content: 'Echo: hello over oidc', reason: 'stop' });
    const browser = await firstFrame(agent.body.endpoints.events as string, { protocols: ['sentinel.v1', `bearer.${botToken}`] });
    expect(browser.frame).toMatchObject({ event_type: 'agent_status' });

    // A token with agents:read only may watch events but not chat.
    const readOnly = await provider.token('build-bot', { scope: 'agents:read' });
    await expect(firstFrame(agent.body.endpoints.events as string, { token: readOnly })).resolves.toMatchObject({ frame: { event_type: 'agent_status' } });
    await expect(firstFrame(agent.body.endpoints.chat as string, { token: readOnly })).rejects.toThrow('upgrade refused with 403');
    await expect(firstFrame(agent.body.endpoints.chat as string, { token: `${botToken.slice(0, -4)}AAAA` })).rejects.toThrow('upgrade refused with 401');

    expect((await call(`${url}/v1/users`, 'GET', botToken)).status).toBe(403);
    expect((await call(`${url}/v1/users`, 'GET', await provider.token('ops-console'))).status).toBe(200);
    // Nothing logged carries a token.
    expect(cli.stdout()).not.toContain(botToken.split('.')[2] ?? 'no-signature');
    expect(cli.stdout()).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
  });

  it('refuses flags that need each other, and an http:// issuer off loopback, before starting', async () => {
    const noAudience = startApi(['--oidc-issuer', provider.issuer]);
    expect((await noAudience.exited()).code).toBe(2);
    expect(noAudience.stderr()).toContain('--oidc-issuer needs --oidc-audience');

    const lonelyClaim = startApi(['--oidc-issuer', provider.issuer, '--oidc-audience', 'a', '--oidc-admin-claim', 'groups']);
    expect((await lonelyClaim.exited()).code).toBe(2);
    expect(lonelyClaim.stderr()).toContain('--oidc-admin-claim and --oidc-admin-value go together');

    const plainHttp = startApi(['--oidc-issuer', 'http://keycloak.example.com/realms/sentinel', '--oidc-audience', 'a']);
    expect((await plainHttp.exited()).code).not.toBe(0);
    expect(plainHttp.stderr()).toContain('OIDC issuer must be an https:// URL');
  });
});
