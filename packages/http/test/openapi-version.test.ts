/**
 * `GET /v1/openapi.json` and `GET /v1/version` over real sockets, on the real core: the
 * document names its servers, the streaming routes' content types and the `{error, code}`
 * responses each route can give; the version answers without a token.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { apiVersionHeader, createSentinelApi, ERROR_CODES, httpStatusForErrorCode, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';

type Operation = { responses: Record<string, { content?: Record<string, { schema: unknown }> }>; requestBody?: unknown };
type Doc = { servers: Array<{ url: string }>; paths: Record<string, Record<string, Operation>> };

let dir: string;
let api: SentinelApi;
let server: RunningServer;
let doc: Doc;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-openapi-'));
  api = await createSentinelApi({ dataDir: dir, adminPassword: 'openapi-admin-password' });
  server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const res = await request(`${server.url}/v1/openapi.json`);
  expect(res.statusCode).toBe(200);
  doc = (await res.body.json()) as Doc;
});

afterAll(async () => {
  await server?.close();
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

const ERROR_REF = '#/components/schemas/Error';
const op = (path: string, method: string): Operation => {
  const found = doc.paths[path]?.[method];
  if (!found) throw new Error(`no ${method} ${path} in the document`);
  return found;
};
const errorStatuses = (operation: Operation): string[] =>
  Object.entries(operation.responses)
    .filter(([status, r]) => Number(status) >= 400 && (r.content?.['application/json']?.schema as { $ref?: string } | undefined)?.$ref === ERROR_REF)
    .map(([status]) => status);

describe('GET /v1/openapi.json', () => {
  it('lists servers: the URL the client used first, then the relative origin', () => {
    expect(doc.servers[0]).toMatchObject({ url: server.url });
    expect(doc.servers.map((s) => s.url)).toContain('/');
  });

  it('gives the streaming routes their NDJSON and SSE content types', () => {
    expect(Object.keys(op('/v1/agents/{id}/events', 'get').responses['200']?.content ?? {})).toEqual(expect.arrayContaining(['text/event-stream', 'application/x-ndjson']));
    expect(Object.keys(op('/v1/agents/{id}/logs', 'get').responses['200']?.content ?? {})).toEqual(['application/json', 'application/x-ndjson', 'text/event-stream']);
    for (const path of ['/v1/registry/push', '/v1/registry/pull']) {
      expect(Object.keys(op(path, 'post').responses['200']?.content ?? {})).toContain('application/x-ndjson');
    }
  });

  it('documents the {error, code} responses where they can occur', () => {
    expect(errorStatuses(op('/v1/auth/login', 'post'))).toEqual(expect.arrayContaining(['400', '401', '413', '415', '429', '503']));
    expect(errorStatuses(op('/v1/users', 'post'))).toEqual(expect.arrayContaining(['400', '401', '403', '409', '413', '415', '503']));
    expect(errorStatuses(op('/v1/agents/{id}', 'get'))).toEqual(expect.arrayContaining(['401', '404', '503']));
    expect(errorStatuses(op('/v1/agents', 'post'))).toEqual(expect.arrayContaining(['409']));
    expect(errorStatuses(op('/v1/images/{ref}', 'delete'))).toEqual(expect.arrayContaining(['403', '404', '409']));
    // Liveness touches nothing: no 503; public: no 401.
    expect(errorStatuses(op('/v1/health', 'get'))).toEqual(['500']);
    // Public routes are rate-limited per client address; only the probes are not.
    expect(errorStatuses(op('/v1/version', 'get'))).toEqual(['429', '500', '503']);
    // Every documented error status is one the core's codes map to.
    const statuses = new Set(ERROR_CODES.map((code) => String(httpStatusForErrorCode(code))));
    for (const ops of Object.values(doc.paths)) for (const o of Object.values(ops)) for (const s of errorStatuses(o)) expect(statuses.has(s)).toBe(true);
    const schema = (doc as unknown as { components: { schemas: { Error: { required: string[] } } } }).components.schemas.Error;
    expect(schema.required).toEqual(['error', 'code', 'docs']);
  });

  it('has GET /v1/version as a public route', () => {
    expect(op('/v1/version', 'get')).toMatchObject({ security: [] });
  });
});

describe('GET /v1/version', () => {
  it('answers without a token: version, api_version, api_revision, commit, node, store, bus', async () => {
    const res = await request(`${server.url}/v1/version`);
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['api_revision', 'api_version', 'bus', 'commit', 'node', 'store', 'version']);
    expect(body).toMatchObject({ api_version: 'v1', api_revision: apiVersionHeader(), node: process.version, store: 'sqlite', bus: 'local' });
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(body.commit === null || /^[0-9a-f]{7,64}$/.test(String(body.commit))).toBe(true);
  });
});
