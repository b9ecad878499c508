/**
 * The transport spec, run against every host: routing, bodies and their caps, content types,
 * auth ordering, request ids, CORS, recovery, client aborts and the request log. Real sockets,
 * real undici clients.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createFixtureApi, SMALL_BODY_CAP, USER_TOKEN, ADMIN_TOKEN, type FixtureApi, type LogLine } from './fixture-api.js';
import { HOST_ROUTE, HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { closedByPeer, connect, readResponse } from './raw-http.js';

const AUTH = { authorization: `Bearer ${USER_TOKEN}` };
const JSON_TYPE = 'application/json; charset=utf-8';

async function waitFor<T>(probe: () => T | undefined, what: string, timeoutMs = 3_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.each(HOSTS)('transport on %s', (hostName) => {
  let fixture: FixtureApi;
  let host: MountedApi;
  let base: string;

  beforeAll(async () => {
    fixture = createFixtureApi();
    host = await mountApi(hostName, fixture.api);
    base = host.baseUrl;
  });
  afterAll(async () => {
    await host.close();
  });

  describe('routing', () => {
    it('answers a static route with JSON, Content-Length and a request id', async () => {
      const res = await request(`${base}/v1/health`);
      const text = await res.body.text();
      expect(res.statusCode).toBe(200);
      expect(JSON.parse(text)).toEqual({ status: 'ok' });
      expect(res.headers['content-type']).toBe(JSON_TYPE);
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(text));
      expect(res.headers['x-request-id']).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
    });

    it('answers an unknown /v1 path with a JSON 404 naming method and path', async () => {
      const res = await request(`${base}/v1/nowhere?x=1`);
      expect(res.statusCode).toBe(404);
      expect(await res.body.json()).toEqual({ error: 'no route for GET /v1/nowhere', code: 'not_found', docs: '/docs/errors#not_found' });
      expect(res.headers['x-request-id']).toBeTruthy();
    });

    it('answers a known path with the wrong method 405 and an Allow header', async () => {
      const res = await request(`${base}/v1/health`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } });
      expect(res.statusCode).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD, OPTIONS');
      expect(await res.body.json()).toMatchObject({ code: 'method_not_allowed' });

      const onParams = await request(`${base}/v1/images/x`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      expect(onParams.statusCode).toBe(405);
      expect(onParams.headers.allow).toBe('GET, HEAD, DELETE, OPTIONS');
      await onParams.body.dump();
    });

    it('answers HEAD on a GET route with its headers and no body', async () => {
      const res = await request(`${base}/v1/health`, { method: 'HEAD' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe(JSON_TYPE);
      expect(res.headers['content-length']).toBe(String(Buffer.byteLength('{"status":"ok"}')));
      expect(await res.body.text()).toBe('');
    });

    it('splits the path before percent-decoding each parameter', async () => {
      const res = await request(`${base}/v1/images/sentinel%2Fecho%3Alatest`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual({ ref: 'sentinel/echo:latest' });

      const two = await request(`${base}/v1/agents/a%20b/logs/std%C3%A9rr`);
      expect(await two.body.json()).toEqual({ id: 'a b', stream: 'stdérr' });
    });

    it('prefers a static route over a parameter in the same place', async () => {
      const res = await request(`${base}/v1/images/search`);
      expect(await res.body.json()).toEqual({ search: true });
    });

    it('answers a malformed percent escape with 400', async () => {
      const res = await request(`${base}/v1/images/%E0%A4%A`);
      expect(res.statusCode).toBe(400);
      expect(await res.body.json()).toMatchObject({ code: 'invalid_request' });
    });

    it('passes repeated query keys as arrays', async () => {
      const res = await request(`${base}/v1/query?tag=a&tag=b&q=x%20y`);
      expect(await res.body.json()).toEqual({ query: { tag: ['a', 'b'], q: 'x y' } });
    });

    it('answers 204 without a body when the handler returns nothing', async () => {
      const res = await request(`${base}/v1/images/old`, { method: 'DELETE', headers: AUTH });
      expect(res.statusCode).toBe(204);
      expect(res.headers['content-type']).toBeUndefined();
      expect(await res.body.text()).toBe('');
    });

    it('leaves paths outside /v1 to the host when the host has routes of its own', async () => {
      const res = await request(`${base}${HOST_ROUTE}`);
      if (host.hasOwnRoutes) {
        expect(res.statusCode).toBe(200);
        expect(await res.body.json()).toEqual({ host: hostName });
        expect(res.headers['x-request-id']).toBeUndefined();
      } else {
        expect(res.statusCode).toBe(404);
        expect(await res.body.json()).toEqual({ error: `no route for GET ${HOST_ROUTE}`, code: 'not_found', docs: '/docs/errors#not_found' });
      }
    });
  });

  describe('bodies', () => {
    it('passes a JSON body and the route status through', async () => {
      const res = await request(`${base}/v1/items`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'ünï' }),
      });
      expect(res.statusCode).toBe(201);
      expect(await res.body.json()).toEqual({ created: { name: 'ünï' } });
    });

    it('accepts +json media types and rejects non-UTF-8 charsets with 415', async () => {
      const vendor = await request(`${base}/v1/echo`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'application/vnd.sentinel+json; charset=UTF-8' }, body: '{"a":1}',
      });
      expect(await vendor.body.json()).toEqual({ body: { a: 1 }, query: {} });

      const latin1 = await request(`${base}/v1/echo`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'application/json; charset=iso-8859-1' }, body: '{"a":1}',
      });
      expect(latin1.statusCode).toBe(415);
      expect(await latin1.body.json()).toMatchObject({ code: 'unsupported_media_type' });
    });

    it('answers a body without Content-Type, or with another type, 415', async () => {
      const missing = await request(`${base}/v1/echo`, { method: 'POST', headers: AUTH, body: '{"a":1}' });
      expect(missing.statusCode).toBe(415);
      expect(await missing.body.json()).toEqual({ error: 'Content-Type must be application/json', code: 'unsupported_media_type', docs: '/docs/errors#unsupported_media_type' });

      const text = await request(`${base}/v1/echo`, { method: 'POST', headers: { ...AUTH, 'content-type': 'text/plain' }, body: 'hi' });
      expect(text.statusCode).toBe(415);
      await text.body.dump();
    });

    it('passes no body for an empty one, so the core can require it', async () => {
      const res = await request(`${base}/v1/items`, { method: 'POST', headers: AUTH });
      expect(res.statusCode).toBe(400);
      expect(await res.body.json()).toEqual({ error: 'request body is required', code: 'invalid_request', docs: '/docs/errors#invalid_request' });
    });

    it('accepts YAML only on routes that list it', async () => {
      const yaml = await request(`${base}/v1/echo-yaml`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'application/x-yaml' }, body: 'name: echo\ntag: latest\n',
      });
      expect(yaml.statusCode).toBe(200);
      expect(await yaml.body.json()).toEqual({ body: { name: 'echo', tag: 'latest' } });

      const refused = await request(`${base}/v1/echo`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'application/yaml' }, body: 'name: echo\n',
      });
      expect(refused.statusCode).toBe(415);
      expect(await refused.body.json()).toMatchObject({ code: 'unsupported_media_type' });
    });

    it('answers malformed JSON with 400', async () => {
      const res = await request(`${base}/v1/echo`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: '{"a":' });
      expect(res.statusCode).toBe(400);
      expect(await res.body.json()).toMatchObject({ code: 'invalid_request' });
    });

    it('answers invalid UTF-8 with 400', async () => {
      const res = await request(`${base}/v1/echo`, {
        method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: Buffer.from([0x22, 0xc3, 0x28, 0x22]),
      });
      expect(res.statusCode).toBe(400);
      expect(await res.body.json()).toEqual({ error: 'request body is not valid UTF-8', code: 'invalid_request', docs: '/docs/errors#invalid_request' });
    });

    it('answers 413 by Content-Length before reading, closes, and keeps serving', async () => {
      const res = await request(`${base}/v1/small`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(SMALL_BODY_CAP) }),
      });
      expect(res.statusCode).toBe(413);
      expect(res.headers.connection).toBe('close');
      expect(res.headers['x-request-id']).toBeTruthy();
      expect(await res.body.json()).toEqual({ error: `request body exceeds ${SMALL_BODY_CAP} bytes`, code: 'payload_too_large', docs: '/docs/errors#payload_too_large' });

      const after = await request(`${base}/v1/health`);
      expect(after.statusCode).toBe(200);
      await after.body.dump();
    });

    it('answers 413 while a chunked body streams past the cap, without waiting for its end', async () => {
      const socket = await connect(base);
      try {
        socket.write('POST /v1/small HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
        const chunk = '"' + 'x'.repeat(38) + '"';
        socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        await new Promise((resolve) => setTimeout(resolve, 30));
        socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`); // 80 bytes > 64, and no terminating chunk
        const res = await readResponse(socket);
        expect(res.status).toBe(413);
        expect(res.headers.connection).toBe('close');
        expect(JSON.parse(res.body)).toMatchObject({ code: 'payload_too_large' });
        await closedByPeer(socket);
      } finally {
        socket.destroy();
      }
      const after = await request(`${base}/v1/small`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ok":true}' });
      expect(await after.body.json()).toEqual({ received: { ok: true } });
    });
    it('drains a body sent to a route that takes none, and the connection stays usable', async () => {
      const socket = await connect(base);
      try {
        socket.write(`DELETE /v1/images/old HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${USER_TOKEN}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello`);
        const deleted = await readResponse(socket);
        expect(deleted.status).toBe(204);
        socket.write('GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n');
        const health = await readResponse(socket);
        expect(health.status).toBe(200);
        expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
      } finally {
        socket.destroy();
      }
    });
  });

  describe('authentication', () => {
    it('answers 401 with WWW-Authenticate before a single body byte arrives', async () => {
      const socket = await connect(base);
      try {
        // Announces 1000 bytes and sends none: only an answer that does not wait for them can arrive.
        socket.write('POST /v1/echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n');
        const res = await readResponse(socket);
        expect(res.status).toBe(401);
        expect(res.headers['www-authenticate']).toBe('Bearer');
        expect(JSON.parse(res.body)).toEqual({ error: 'authentication required', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
      } finally {
        socket.destroy();
      }
    });

    it('answers a wrong token 401 and a user on an admin route 403', async () => {
      const wrong = await request(`${base}/v1/admin`, { headers: { authorization: 'Bearer nope' } });
      expect(wrong.statusCode).toBe(401);
      expect(await wrong.body.json()).toEqual({ error: 'invalid token', code: 'unauthorized', docs: '/docs/errors#unauthorized' });

      const user = await request(`${base}/v1/admin`, { headers: AUTH });
      expect(user.statusCode).toBe(403);
      expect(await user.body.json()).toMatchObject({ code: 'forbidden' });

      const admin = await request(`${base}/v1/admin`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      expect(await admin.body.json()).toEqual({ admin: true });
    });

    it('gives the handler the principal, request id, origin and client address', async () => {
      const res = await request(`${base}/v1/context`, { headers: { ...AUTH, 'x-request-id': 'ctx-check-1' } });
      const { port } = new URL(base);
      expect(await res.body.json()).toEqual({
        principal: { username: 'alice', role: 'user' },
        request_id: 'ctx-check-1',
        origin: { secure: false, host: `127.0.0.1:${port}` },
        remote: '127.0.0.1',
      });
    });
  });

  describe('request ids', () => {
    it('echoes a valid X-Request-Id and replaces an invalid one', async () => {
      const kept = await request(`${base}/v1/health`, { headers: { 'x-request-id': 'trace.42:abc-DEF_9' } });
      expect(kept.headers['x-request-id']).toBe('trace.42:abc-DEF_9');
      await kept.body.dump();

      for (const bad of ['has spaces', 'x'.repeat(129), 'semi;colon']) {
        const replaced = await request(`${base}/v1/health`, { headers: { 'x-request-id': bad } });
        expect(replaced.headers['x-request-id']).not.toBe(bad);
        expect(replaced.headers['x-request-id']).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
        await replaced.body.dump();
      }
    });

    it('sets X-Request-Id on errors and preflights too, unique per request', async () => {
      const seen = new Set<string>();
      const responses = await Promise.all([
        request(`${base}/v1/nowhere`),
        request(`${base}/v1/health`, { method: 'DELETE' }),
        request(`${base}/v1/echo`, { method: 'POST' }),
        request(`${base}/v1/boom`),
        request(`${base}/v1/health`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } }),
      ]);
      for (const res of responses) {
        const id = res.headers['x-request-id'];
        expect(typeof id).toBe('string');
        seen.add(id as string);
        await res.body.dump();
      }
      expect(seen.size).toBe(responses.length);
    });
  });

  describe('CORS', () => {
    it('adds Allow-Origin and Expose-Headers to responses for cross-origin requests', async () => {
      const res = await request(`${base}/v1/health`, { headers: { origin: 'https://app.example' } });
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-expose-headers']).toBe('X-Request-Id, Retry-After, ETag, Sentinel-Api-Version, Deprecation, Sunset, Link, RateLimit, RateLimit-Policy');
      await res.body.dump();

      const error = await request(`${base}/v1/nowhere`, { headers: { origin: 'https://app.example' } });
      expect(error.headers['access-control-allow-origin']).toBe('*');
      await error.body.dump();
    });

    it('answers a preflight 204 with the path’s real methods, without auth', async () => {
      const res = await request(`${base}/v1/images/sentinel%2Fecho`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization,content-type' },
      });
      expect(res.statusCode).toBe(204);
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-allow-methods']).toBe('GET, HEAD, DELETE, OPTIONS');
      expect(res.headers['access-control-allow-headers']).toBe('authorization,content-type');
      expect(res.headers['access-control-max-age']).toBe('600');
      expect(await res.body.text()).toBe('');
    });

    it('answers the allow-list when a preflight asks for a header outside it', async () => {
      const res = await request(`${base}/v1/echo`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-evil' },
      });
      expect(res.headers['access-control-allow-headers']).toBe('Authorization, Content-Type, X-Request-Id, If-None-Match');
      expect(res.headers['access-control-allow-methods']).toBe('POST, OPTIONS');
      await res.body.dump();
    });

    it('answers a preflight for an unknown path 404 JSON, and plain OPTIONS 204 with Allow', async () => {
      const unknown = await request(`${base}/v1/nowhere`, {
        method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
      });
      expect(unknown.statusCode).toBe(404);
      expect(await unknown.body.json()).toEqual({ error: 'no route for OPTIONS /v1/nowhere', code: 'not_found', docs: '/docs/errors#not_found' });

      const plain = await request(`${base}/v1/health`, { method: 'OPTIONS' });
      expect(plain.statusCode).toBe(204);
      expect(plain.headers.allow).toBe('GET, HEAD, OPTIONS');
      expect(plain.headers['access-control-allow-methods']).toBeUndefined();
      await plain.body.dump();
    });

    it('sends no CORS headers when cors is false', async () => {
      const bare = await mountApi(hostName, createFixtureApi().api, { cors: false });
      try {
        const res = await request(`${bare.baseUrl}/v1/health`, { headers: { origin: 'https://app.example' } });
        expect(res.headers['access-control-allow-origin']).toBeUndefined();
        await res.body.dump();
        const preflight = await request(`${bare.baseUrl}/v1/health`, {
          method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
        });
        expect(preflight.statusCode).toBe(204);
        expect(preflight.headers.allow).toBe('GET, HEAD, OPTIONS');
        expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
        expect(preflight.headers['access-control-allow-methods']).toBeUndefined();
        await preflight.body.dump();
      } finally {
        await bare.close();
      }
    });

    it('echoes only listed origins, with Vary: Origin', async () => {
      const listed = await mountApi(hostName, createFixtureApi().api, { cors: { origins: ['https://ok.example'], maxAgeSeconds: 60 } });
      try {
        const ok = await request(`${listed.baseUrl}/v1/health`, {
          method: 'OPTIONS', headers: { origin: 'https://ok.example', 'access-control-request-method': 'GET' },
        });
        expect(ok.headers['access-control-allow-origin']).toBe('https://ok.example');
        expect(ok.headers['access-control-max-age']).toBe('60');
        expect(ok.headers.vary).toBe('Origin');
        await ok.body.dump();
        const other = await request(`${listed.baseUrl}/v1/health`, { headers: { origin: 'https://evil.example' } });
        expect(other.headers['access-control-allow-origin']).toBeUndefined();
        expect(other.headers.vary).toBe('Origin');
        await other.body.dump();
      } finally {
        await listed.close();
      }
    });
  });

  describe('recovery', () => {
    it.each([
      ['a thrown Error', '/v1/boom', 'hunter2'],
      ['a rejected promise', '/v1/reject', 'reading "secret"'],
    ])('turns %s into a bare 500, logs it, and keeps serving', async (_what, path, secret) => {
      const requestId = `recovery-${path.slice(4)}-${hostName.replace(':', '')}`;
      const res = await request(`${base}${path}`, { headers: { 'x-request-id': requestId } });
      const text = await res.body.text();
      expect(res.statusCode).toBe(500);
      expect(JSON.parse(text)).toEqual({ error: 'internal server error', code: 'internal', docs: '/docs/errors#internal' });
      expect(text).not.toContain(secret);
      expect(text).not.toMatch(/\bat\s|\.ts:|stack/);

      const logged = fixture.logLines.find((l) => l.level === 'error' && l.request_id === requestId);
      expect(logged?.stack).toEqual(expect.stringContaining(secret));

      const next = await request(`${base}/v1/health`);
      expect(next.statusCode).toBe(200);
      await next.body.dump();
    });

    it('maps rate limits to 429 with a whole-second Retry-After', async () => {
      const res = await request(`${base}/v1/limited`);
      expect(res.statusCode).toBe(429);
      expect(res.headers['retry-after']).toBe('3');
      expect(await res.body.json()).toEqual({ error: 'too many requests', code: 'rate_limited', docs: '/docs/errors#rate_limited' });
    });
  });

  it('aborts ctx.signal when the client goes away mid-request', async () => {
    const requestId = `abort-${hostName.replace(':', '')}`;
    const controller = new AbortController();
    const pending = request(`${base}/v1/slow?ms=10000`, { headers: { 'x-request-id': requestId }, signal: controller.signal });
    setTimeout(() => controller.abort(), 150);
    await expect(pending).rejects.toThrow();
    const outcome = await waitFor(() => fixture.slowOutcomes.get(requestId), 'the slow handler to finish');
    expect(outcome.aborted).toBe(true);
  });

  it('logs one line per request with its fields, never the query or the Authorization value', async () => {
    const requestId = `log-${hostName.replace(':', '')}`;
    const res = await request(`${base}/v1/echo?api_key=q-secret-77`, {
      method: 'POST', headers: { ...AUTH, 'x-request-id': requestId, 'content-type': 'application/json' }, body: '{}',
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();

    const line = await waitFor(() => fixture.logLines.find((l) => l.msg === 'request' && l.request_id === requestId), 'the request line');
    expect(line).toMatchObject({ level: 'info', msg: 'request', request_id: requestId, method: 'POST', path: '/v1/echo', status: 200, remote: '127.0.0.1' });
    expect(typeof line.duration_ms).toBe('number');
    expect(String(line.duration_ms)).toMatch(/^\d+(\.\d{1,3})?$/);
    // Let any stray second line arrive before counting.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const lines: LogLine[] = fixture.logLines.filter((l) => l.request_id === requestId);
    expect(lines).toHaveLength(1);
    const everything = JSON.stringify(fixture.logLines);
    expect(everything).not.toContain(USER_TOKEN);
    expect(everything).not.toContain('q-secret-77');
  });

  it('logs nothing per request when logRequests is false', async () => {
    const quiet = createFixtureApi();
    const mounted = await mountApi(hostName, quiet.api, { logRequests: false });
    try {
      const res = await request(`${mounted.baseUrl}/v1/health`);
      await res.body.dump();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(quiet.logLines.filter((l) => l.msg === 'request')).toHaveLength(0);
    } finally {
      await mounted.close();
    }
  });
});
