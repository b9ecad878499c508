/**
 * The OpenAPI contract checker (packages/test-support/src/contract.ts) that every REST spec runs
 * under: it accepts what a real server answers and names each way a response can leave the
 * document (undeclared status, undeclared content type, a body or a stream item off its
 * schema, an unknown /v1 path not answered with the documented 404). Responses here come from
 * a real server over real sockets; the drifted ones are those same responses, altered.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { compileContract, type CompiledContract, type ObservedResponse } from '@sentinel/test-support/contract';

let dir: string;
let api: SentinelApi;
let server: RunningServer;
let contract: CompiledContract;
let token: string;
// Outside the checking dispatcher: these responses are fed to the checker by hand.
const plain = new Agent();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-contract-'));
  api = await createSentinelApi({ dataDir: dir, adminPassword: 'contract-admin-password' });
  server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const doc = await request(`${server.url}/v1/openapi.json`, { dispatcher: plain });
  contract = compileContract((await doc.body.json()) as Parameters<typeof compileContract>[0]);
  const login = await request(`${server.url}/v1/auth/login`, {
    dispatcher: plain,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'contract-admin-password' }),
  });
  token = ((await login.body.json()) as { token: string }).token;
});

afterAll(async () => {
  await plain.close();
  await server?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function observe(method: string, path: string, headers: Record<string, string> = {}): Promise<ObservedResponse> {
  const res = await request(`${server.url}${path}`, { dispatcher: plain, method: method as 'GET', headers: { authorization: `Bearer ${token}`, ...headers } });
  const body = Buffer.from(await res.body.arrayBuffer());
  const contentType = res.headers['content-type'];
  return { method, url: new URL(path, server.url), status: res.statusCode, contentType: typeof contentType === 'string' ? contentType : undefined, body, complete: true };
}

describe('the OpenAPI contract checker', () => {
  it('accepts real answers: a list, an error, a 304, an unknown path, a wrong method', async () => {
    const list = await observe('GET', '/v1/agents');
    expect(list.status).toBe(200);
    expect(contract.check(list)).toEqual([]);
    const missing = await observe('GET', '/v1/agents/nobody-here');
    expect(missing.status).toBe(404);
    expect(contract.check(missing)).toEqual([]);
    const etag = (await request(`${server.url}/v1/agents`, { dispatcher: plain, headers: { authorization: `Bearer ${token}` } })).headers.etag as string;
    const notModified = await observe('GET', '/v1/agents', { 'if-none-match': etag });
    expect(notModified.status).toBe(304);
    expect(contract.check(notModified)).toEqual([]);
    const unknown = await observe('GET', '/v1/no-such-thing');
    expect(unknown.status).toBe(404);
    expect(contract.check(unknown)).toEqual([]);
    const wrongMethod = await observe('PATCH', '/v1/agents');
    expect(wrongMethod.status).toBe(405);
    expect(contract.check(wrongMethod)).toEqual([]);
  });

  it('names a body that left its schema, a status and a content type the document does not declare', async () => {
    const health = await observe('GET', '/v1/health');
    expect(contract.check(health)).toEqual([]);
    const extraField = { ...health, body: Buffer.from(JSON.stringify({ status: 'ok', uptime: 3 })) };
    expect(contract.check(extraField).join()).toMatch(/must NOT have additional properties/);
    expect(contract.check({ ...health, status: 202 }).join()).toMatch(/status 202 is not declared/);
    expect(contract.check({ ...health, contentType: 'text/plain' }).join()).toMatch(/content type text\/plain is not declared/);
    const missing = await observe('GET', '/v1/agents/nobody-here');
    const wrongCode = { ...missing, body: Buffer.from(JSON.stringify({ error: 'x', code: 'conflict' })) };
    expect(contract.check(wrongCode).join()).toMatch(/must be equal to one of the allowed values/);
    const unknown = await observe('GET', '/v1/no-such-thing');
    expect(contract.check({ ...unknown, status: 200 }).join()).toMatch(/expected the NoRoute 404, got 200/);
  });

  it('checks each complete NDJSON line of a stream against its item schema', async () => {
    const agents = await request(`${server.url}/v1/agents`, {
      dispatcher: plain,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'sentinel/echo', name: 'contract' }),
    });
    expect(agents.statusCode).toBe(201);
    const { id } = (await agents.body.json()) as { id: string };
    const logs = await observe('GET', `/v1/agents/${id}/logs`);
    expect(contract.check(logs)).toEqual([]);
    const url = new URL(`/v1/agents/${id}/events`, server.url);
    const good = JSON.stringify({ type: 'event', event_type: 'agent_status', timestamp: '2026-01-02T03:04:05.000Z', agent_id: id });
    const stream = (text: string): ObservedResponse => ({ method: 'GET', url, status: 200, contentType: 'application/x-ndjson', body: Buffer.from(text), complete: false });
    expect(contract.check(stream(`${good}\n`))).toEqual([]);
    // An incomplete last line is not judged; a complete bad one is.
    expect(contract.check(stream(`${good}\n{"type":"ev`))).toEqual([]);
    expect(contract.check(stream(`${good}\n{"type":"event"}\n`)).join()).toMatch(/NDJSON line 2: .*required property 'event_type'/);
  });
});
