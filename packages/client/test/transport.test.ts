/**
 * The SDK's transport against a real server on port 0: login keeps the token, API errors arrive
 * as SentinelApiError with the server's status, code and docs link, a server that is down is a
 * `network_error`, and an aborted call is `aborted`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '@sentinel/api-client';
import { ADMIN_PASSWORD, rejection, startServer, type TestServer } from './server.js';

describe('the SDK transport', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('login keeps the token for later calls; a wrong password is a SentinelApiError with the server fields', async () => {
    const client = createClient({ baseUrl: server.url });
    const denied = await rejection(client.login('admin', 'wrong-password'));
    expect(denied).toMatchObject({ status: 401, code: 'unauthorized', message: 'invalid username or password', docs: '/docs/errors#unauthorized' });
    expect(denied.requestId).toMatch(/.+/);
    const me = await rejection(client.transport.request('GET', '/v1/auth/me'));
    expect(me).toMatchObject({ status: 401, code: 'unauthorized' });
    const result = await client.login('admin', ADMIN_PASSWORD);
    expect(result.username).toBe('admin');
    expect(client.transport.credential).toBe(result.token);
    expect(await client.transport.request('GET', '/v1/auth/me')).toMatchObject({ username: 'admin', role: 'admin' });
  });

  it('a server that is down is a network_error, an aborted call is aborted', async () => {
    const down = createClient({ baseUrl: 'http://127.0.0.1:1' });
    expect(await rejection(down.transport.request('GET', '/v1/health'))).toMatchObject({ status: 0, code: 'network_error' });
    const controller = new AbortController();
    controller.abort();
    const client = createClient({ baseUrl: server.url });
    expect(await rejection(client.transport.request('GET', '/v1/health', { signal: controller.signal }))).toMatchObject({ status: 0, code: 'aborted' });
  });
});
