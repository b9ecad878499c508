/**
 * A route marked `deprecated` in the route table (docs/VERSIONING.md), over real sockets on
 * every host: its responses, success and error alike, carry `Deprecation` (RFC 9745), `Sunset`
 * (RFC 8594) and `Link rel="deprecation"`; the OpenAPI document served over the same table says
 * `deprecated: true`; routes that are not deprecated send none of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiVersionHeader, buildOpenApiDocument, compileRoute, createSentinelApi, type RouteDef, type SentinelApi, type SentinelApiSurface } from '@sentinel/api-core';
import { HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';

const SINCE = '2026-01-01T00:00:00Z';
const SUNSET = '2027-06-30';
const LINK = 'https://sentinel.example/docs/migrate-legacy';

// Described like every real route, so the contract checker holds these responses to them too.
const LEGACY_SCHEMA = { type: 'object', properties: { legacy: { const: true } }, required: ['legacy'], additionalProperties: false };
const OLD_SCHEMA = { type: 'object', properties: { old: { const: true } }, required: ['old'], additionalProperties: false };

const EXTRA_ROUTES: RouteDef[] = [
  {
    method: 'GET', path: '/v1/legacy', auth: 'public', summary: 'A deprecated route with dates and a link',
    deprecated: { since: SINCE, sunset: SUNSET, link: LINK },
    schemas: { response: LEGACY_SCHEMA },
    handler: () => ({ legacy: true }),
  },
  {
    method: 'POST', path: '/v1/legacy', auth: 'user', summary: 'The same path, needs a user',
    deprecated: { since: SINCE, sunset: SUNSET, link: LINK },
    schemas: { response: LEGACY_SCHEMA },
    handler: () => ({ legacy: true }),
  },
  { method: 'GET', path: '/v1/old', auth: 'public', summary: 'Deprecated without dates', deprecated: true, schemas: { response: OLD_SCHEMA }, handler: () => ({ old: true }) },
];

/** The real api's routes plus `extra`, with `GET /v1/openapi.json` built (by the core) over the whole table. */
function withRoutes(api: SentinelApi, extra: RouteDef[]): SentinelApiSurface {
  const own = api.routes.filter((route) => route.path !== '/v1/openapi.json');
  const table: RouteDef[] = [...own, ...extra];
  table.push({ method: 'GET', path: '/v1/openapi.json', auth: 'public', summary: 'OpenAPI document', schemas: { response: { type: 'object' } }, handler: () => buildOpenApiDocument(table) });
  return {
    routes: [...own, ...table.slice(own.length).map(compileRoute)],
    authenticate: (authorization) => api.authenticate(authorization),
    invoke: (route, raw, ctx) => api.invoke(route, raw, ctx),
    logger: api.logger,
    close: async () => undefined,
  };
}

describe.each(HOSTS)('deprecated routes on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let host: MountedApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-deprecation-'));
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'deprecation-admin-password' });
    host = await mountApi(hostName, withRoutes(api, EXTRA_ROUTES), { logRequests: false });
  });

  afterAll(async () => {
    await host?.close();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const expectDeprecationHeaders = (headers: Record<string, string | string[] | undefined>): void => {
    expect(headers.deprecation).toBe(`@${Date.parse(SINCE) / 1000}`);
    expect(headers.deprecation).toBe('@1767225600');
    expect(headers.sunset).toBe('Wed, 30 Jun 2027 00:00:00 GMT');
    expect(headers.link).toBe(`<${LINK}>; rel="deprecation", <${LINK}>; rel="sunset"`);
    expect(headers['sentinel-api-version']).toBe(apiVersionHeader());
  };

  it('sends Deprecation, Sunset and Link on a success', async () => {
    const res = await request(`${host.baseUrl}/v1/legacy`, { headers: { origin: 'https://app.example' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ legacy: true });
    expectDeprecationHeaders(res.headers);
    expect(String(res.headers['access-control-expose-headers']).split(', ')).toEqual(expect.arrayContaining(['Deprecation', 'Sunset', 'Link']));
  });

  it('sends them on an error of the route too', async () => {
    const res = await request(`${host.baseUrl}/v1/legacy`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.statusCode).toBe(401);
    expect(await res.body.json()).toEqual({ error: 'authentication required', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    expectDeprecationHeaders(res.headers);
  });

  it('sends an undated Deprecation as @0 (RFC 9745 has no undated form) and no Sunset or Link', async () => {
    const res = await request(`${host.baseUrl}/v1/old`);
    expect(res.statusCode).toBe(200);
    expect(res.headers.deprecation).toBe('@0');
    expect(res.headers.sunset).toBeUndefined();
    expect(res.headers.link).toBeUndefined();
    await res.body.dump();
  });

  it('sends none of them on a route that is not deprecated', async () => {
    const res = await request(`${host.baseUrl}/v1/health`);
    expect(res.statusCode).toBe(200);
    expect(res.headers.deprecation).toBeUndefined();
    expect(res.headers.sunset).toBeUndefined();
    expect(res.headers.link).toBeUndefined();
    await res.body.dump();
  });

  it('marks exactly the deprecated operations deprecated: true in the OpenAPI document', async () => {
    const res = await request(`${host.baseUrl}/v1/openapi.json`);
    expect(res.statusCode).toBe(200);
    const doc = (await res.body.json()) as { paths: Record<string, Record<string, { deprecated?: boolean }>> };
    expect(doc.paths['/v1/legacy']?.get?.deprecated).toBe(true);
    expect(doc.paths['/v1/legacy']?.post?.deprecated).toBe(true);
    expect(doc.paths['/v1/old']?.get?.deprecated).toBe(true);
    const deprecated = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => op.deprecated === true).map(([method]) => `${method} ${path}`));
    expect(deprecated.sort()).toEqual(['get /v1/legacy', 'get /v1/old', 'post /v1/legacy']);
  });
});

describe('a deprecation date that does not parse', () => {
  it('is refused when the transport builds its headers: a bug in the route table, not a silent header', async () => {
    const { toNodeListener } = await import('@sentinel/api-http');
    const dir = mkdtempSync(join(tmpdir(), 'sentinel-deprecation-bad-'));
    const api = await createSentinelApi({ dataDir: dir, adminPassword: 'deprecation-admin-password' });
    try {
      const bad: RouteDef = { method: 'GET', path: '/v1/bad', auth: 'public', summary: 'bad date', deprecated: { sunset: 'next spring' }, handler: () => ({}) };
      expect(() => toNodeListener(withRoutes(api, [bad]))).toThrow(/deprecated\.sunset "next spring" is not an ISO 8601 date/);
    } finally {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
