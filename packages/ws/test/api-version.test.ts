/**
 * `Sentinel-Api-Version` (docs/VERSIONING.md) on every response the api gives, on every host:
 * a success, an error, a 404 for an unknown /v1 path, a preflight, a streamed response, the
 * WebSocket 101 and a refused upgrade. The value comes from core's apiVersionHeader(), so a
 * bump of the minor version reaches every transport at once.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiVersionHeader } from '@sentinel/api-core';
import { HOSTS } from '@sentinel/test-support/hosts';
import { refusal } from './ws-client.js';
import { bearer, startWsEnv, type WsEnv } from './ws-env.js';

/** Opens a WebSocket and resolves with the headers of its 101, then closes it. */
function upgradeHeaders(url: string, options: { headers: Record<string, string> }): Promise<IncomingHttpHeaders> {
  const ws = new WebSocket(url, [], options);
  ws.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    ws.once('upgrade', (res: IncomingMessage) => {
      resolve(res.headers);
      ws.once('open', () => ws.close());
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ws.terminate();
      reject(new Error(`upgrade refused with ${res.statusCode}`));
    });
  });
}

describe.each(HOSTS)('Sentinel-Api-Version on %s', (hostName) => {
  let env: WsEnv;
  let agentId: string;
  const expected = apiVersionHeader();

  beforeAll(async () => {
    env = await startWsEnv(hostName);
    agentId = (await env.createAgent()).id;
  });

  afterAll(async () => {
    await env.close();
  });

  it('is major.minor with major 1, the /v1 of the paths', () => {
    expect(expected).toMatch(/^1\.\d+$/);
  });

  it('comes on a success, an error, an unknown path and a preflight', async () => {
    const base = env.host.baseUrl;
    const ok = await request(`${base}/v1/health`);
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['sentinel-api-version']).toBe(expected);
    await ok.body.dump();

    const denied = await request(`${base}/v1/agents`);
    expect(denied.statusCode).toBe(401);
    expect(denied.headers['sentinel-api-version']).toBe(expected);
    expect(await denied.body.json()).toEqual({ error: 'authentication required', code: 'unauthorized', docs: '/docs/errors#unauthorized' });

    const unknown = await request(`${base}/v1/no-such-route`);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['sentinel-api-version']).toBe(expected);
    expect(await unknown.body.json()).toMatchObject({ code: 'not_found', docs: '/docs/errors#not_found' });

    const preflight = await request(`${base}/v1/agents`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['sentinel-api-version']).toBe(expected);
    // A browser app may read it: CORS exposes it, with the deprecation headers.
    expect(String(preflight.headers['access-control-expose-headers']).split(', ')).toEqual(expect.arrayContaining(['Sentinel-Api-Version', 'Deprecation', 'Sunset', 'Link']));
    await preflight.body.dump();
  });

  it('comes on a streamed response', async () => {
    const controller = new AbortController();
    const res = await request(`${env.host.baseUrl}/v1/agents/${agentId}/events`, {
      headers: { authorization: `Bearer ${env.adminToken}`, accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(res.headers['sentinel-api-version']).toBe(expected);
    controller.abort();
    await res.body.dump().catch(() => undefined);
  });

  it('comes on the WebSocket 101 and on a refused upgrade', async () => {
    const headers = await upgradeHeaders(env.url(agentId, 'events'), bearer(env.adminToken));
    expect(headers['sentinel-api-version']).toBe(expected);

    const refused = await refusal(env.url(agentId, 'chat'));
    expect(refused.status).toBe(401);
    expect(refused.headers['sentinel-api-version']).toBe(expected);
    expect(refused.body).toEqual({ error: 'authentication required', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
  });
});
