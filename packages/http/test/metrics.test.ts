/**
 * `GET /metrics` in every host, and the separate metrics listener (`listenMetrics`, what
 * `sentinel api --metrics-port` starts): loopback by default, no auth, nothing but /metrics.
 * The series themselves are proven in packages/ws/test/metrics.test.ts and core's metrics.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listenMetrics, METRICS_PATH } from '@sentinel/api-http';
import { HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { parseExposition, valueOf } from '@sentinel/test-support/prometheus';

let dir: string;
let api: SentinelApi;
let adminToken: string;
let userToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-http-metrics-'));
  api = await createSentinelApi({ dataDir: dir, tokenSecret: 'http-metrics-secret-0123456789', adminPassword: 'admin-password-for-tests' });
  await api.users.create({ username: 'carol', password: 'carol-password-for-tests', role: 'user' });
  adminToken = (await api.authService.issueToken('admin')).token;
  userToken = (await api.authService.issueToken('carol')).token;
});

afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.each(HOSTS)('GET /metrics on %s', (hostName) => {
  let host: MountedApi;
  beforeAll(async () => {
    host = await mountApi(hostName, api, { logRequests: false });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('answers admins the exposition (counting this host’s requests by route template), users 403, anonymous 401', async () => {
    const read = () => fetch(`${host.baseUrl}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
    const first = await read();
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('no-store');
    const before = valueOf(parseExposition(await first.text()), 'http_server_request_duration_seconds', { route: '/v1/images', status: '200' });
    const images = await fetch(`${host.baseUrl}/v1/images`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(images.status).toBe(200);
    await images.arrayBuffer();
    const after = parseExposition(await (await read()).text());
    expect(valueOf(after, 'http_server_request_duration_seconds', { method: 'GET', route: '/v1/images', status: '200' }) - before).toBe(1);

    const user = await fetch(`${host.baseUrl}/metrics`, { headers: { authorization: `Bearer ${userToken}` } });
    expect(user.status).toBe(403);
    expect(await user.json()).toMatchObject({ code: 'insufficient_scope' });
    const anonymous = await fetch(`${host.baseUrl}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer');
    await anonymous.arrayBuffer();
    const head = await fetch(`${host.baseUrl}/metrics`, { method: 'HEAD', headers: { authorization: `Bearer ${adminToken}` } });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBeGreaterThan(0);
  });
});

describe('metrics: false on the listener', () => {
  it('leaves /metrics to the host (404 standalone), records nothing', async () => {
    const host = await mountApi('standalone', api, { logRequests: false, metrics: false });
    try {
      const response = await fetch(`${host.baseUrl}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
      expect(response.status).toBe(404);
      await response.arrayBuffer();
    } finally {
      await host.close();
    }
  });
});

describe('listenMetrics (the --metrics-port listener)', () => {
  it('binds 127.0.0.1 by default and serves /metrics without auth, nothing else', async () => {
    if (api.metrics === undefined) throw new Error('metrics are off');
    const server = await listenMetrics(api.metrics, { port: 0 });
    try {
      expect(server.host).toBe('127.0.0.1');
      expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
      const response = await fetch(`${server.url}${METRICS_PATH}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const families = parseExposition(await response.text());
      expect(families.get('sentinel_turns_total')?.type).toBe('COUNTER');
      expect(families.has('process_resident_memory_bytes')).toBe(true);

      const other = await fetch(`${server.url}/v1/agents`);
      expect(other.status).toBe(404);
      expect(await other.json()).toMatchObject({ code: 'not_found' });
      const post = await fetch(`${server.url}${METRICS_PATH}`, { method: 'POST' });
      expect(post.status).toBe(405);
      await post.arrayBuffer();
    } finally {
      await server.close();
    }
  });
});
