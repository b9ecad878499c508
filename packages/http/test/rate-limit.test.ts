/**
 * REST rate limits through real HTTP on every host (standalone, node:http, Express, Fastify)
 * against the real core on a real SQLite file: the RateLimit-Policy / RateLimit fields parse as
 * draft-ietf-httpapi-ratelimit-headers-11 says (Structured Field Lists of Strings with Integer
 * parameters), the request past the burst is a 429 `rate_limited` with Retry-After, errors of a
 * limited route carry the fields too, probes are never limited, users have separate buckets, and
 * anonymous callers are counted per client address (X-Forwarded-For only under trustProxy).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const ADMIN_PASSWORD = 'admin-password-123';
const READ_BURST = 5;
const AUTH_BURST = 3;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

type SfParams = Record<string, string | number | boolean>;

/**
 * A strict parser for the subset of RFC 8941 Lists the draft uses: members are sf-strings with
 * parameters whose values are sf-integers, sf-strings or byte sequences. Throws on anything else,
 * so a header that only looks right fails the test.
 */
function parseSfList(field: string): Array<{ value: string; params: SfParams }> {
  const members: Array<{ value: string; params: SfParams }> = [];
  let i = 0;
  const ws = () => {
    while (field[i] === ' ' || field[i] === '\t') i++;
  };
  const string = (): string => {
    if (field[i] !== '"') throw new Error(`expected an sf-string at ${i} in ${field}`);
    i++;
    let out = '';
    while (field[i] !== '"') {
      if (i >= field.length) throw new Error(`unterminated sf-string in ${field}`);
      if (field[i] === '\\') i++;
      out += field[i++];
    }
    i++;
    return out;
  };
  const key = (): string => {
    const match = /^[a-z*][a-z0-9_\-.*]*/.exec(field.slice(i));
    if (!match) throw new Error(`expected a key at ${i} in ${field}`);
    i += match[0].length;
    return match[0];
  };
  const bare = (): string | number => {
    if (field[i] === '"') return string();
    const match = /^-?\d{1,15}/.exec(field.slice(i));
    if (!match || field[i + match[0].length] === '.') throw new Error(`expected an sf-integer at ${i} in ${field}`);
    i += match[0].length;
    return Number(match[0]);
  };
  ws();
  while (i < field.length) {
    const value = string();
    const params: SfParams = {};
    while (field[i] === ';') {
      i++;
      ws();
      const name = key();
      if (field[i] === '=') {
        i++;
        params[name] = bare();
      } else params[name] = true;
    }
    members.push({ value, params });
    ws();
    if (i >= field.length) break;
    if (field[i] !== ',') throw new Error(`expected "," at ${i} in ${field}`);
    i++;
    ws();
  }
  return members;
}

function one(headers: Reply['headers'], name: string): string {
  const value = headers[name];
  expect(typeof value, `${name} header`).toBe('string');
  return value as string;
}

describe.each(HOSTS)('rate limits on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let aliceToken: string;
  let bobToken: string;

  async function call(method: string, path: string, options: { token?: string | null; body?: unknown; from?: string; origin?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.from) headers['x-forwarded-for'] = options.from;
    if (options.origin) headers.origin = options.origin;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : text };
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-rate-http-'));
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'rate-http-secret-0123456789abcdef',
      adminPassword: ADMIN_PASSWORD,
      rateLimits: { read: READ_BURST, write: 600, auth: AUTH_BURST },
    });
    await api.users.create({ username: 'alice', password: 'alice-password-1', role: 'user' });
    await api.users.create({ username: 'bob', password: 'bob-password-1', role: 'user' });
    aliceToken = (await api.authService.issueToken('alice')).token;
    bobToken = (await api.authService.issueToken('bob')).token;
    // trustProxy: anonymous callers are told apart by X-Forwarded-For here.
    const mounted = await mountApi(hostName, api, { logRequests: false, trustProxy: true });
    base = mounted.baseUrl;
    close = mounted.close;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`sends RateLimit-Policy and RateLimit on every response of a limited route; the request past the burst of ${READ_BURST} is 429 with Retry-After`, async () => {
    const remaining: number[] = [];
    for (let n = 0; n < READ_BURST; n++) {
      const ok = await call('GET', '/v1/agents', { token: aliceToken });
      expect(ok.status).toBe(200);
      const [policy, ...morePolicies] = parseSfList(one(ok.headers, 'ratelimit-policy'));
      expect(morePolicies).toEqual([]);
      // A full bucket of 5 refilling at 5 a minute: "5 requests per 60 seconds".
      expect(policy).toEqual({ value: 'read', params: { q: READ_BURST, w: 60 } });
      const [limit, ...moreLimits] = parseSfList(one(ok.headers, 'ratelimit'));
      expect(moreLimits).toEqual([]);
      expect(limit?.value).toBe('read');
      expect(Object.keys(limit?.params ?? {}).sort()).toEqual(['r', 't']);
      remaining.push(limit?.params.r as number);
      expect(limit?.params.t).toBeGreaterThan(0);
      expect(limit?.params.t).toBeLessThanOrEqual(60);
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0]);

    const refused = await call('GET', '/v1/agents', { token: aliceToken });
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 'rate_limited', error: expect.stringMatching(/^rate limit of 5 read requests a minute exceeded; try again in \d+ s$/) });
    const retryAfter = Number(one(refused.headers, 'retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(12);
    expect(parseSfList(one(refused.headers, 'ratelimit'))).toEqual([{ value: 'read', params: { r: 0, t: expect.any(Number) } }]);
    expect(parseSfList(one(refused.headers, 'ratelimit-policy'))).toEqual([{ value: 'read', params: { q: READ_BURST, w: 60 } }]);
  });

  it('keeps a bucket per user: bob reads while alice is refused; writes are a class of their own', async () => {
    expect((await call('GET', '/v1/agents', { token: aliceToken })).status).toBe(429);
    const bobs = await call('GET', '/v1/agents', { token: bobToken });
    expect(bobs.status).toBe(200);
    expect(parseSfList(one(bobs.headers, 'ratelimit'))[0]?.params.r).toBe(READ_BURST - 1);
    const created = await call('POST', '/v1/agents', { token: aliceToken, body: { image: 'sentinel/echo:latest', name: 'written-while-reads-are-refused' } });
    expect(created.status).toBe(201);
    expect(parseSfList(one(created.headers, 'ratelimit-policy'))).toEqual([{ value: 'write', params: { q: 600, w: 60 } }]);
  });

  it('puts the fields on errors of a limited route too (404), and never limits the probes', async () => {
    const missing = await call('GET', '/v1/agents/no-such-agent', { token: bobToken });
    expect(missing.status).toBe(404);
    expect(parseSfList(one(missing.headers, 'ratelimit'))[0]?.value).toBe('read');
    for (let n = 0; n < READ_BURST * 3; n++) {
      const health = await call('GET', '/v1/health');
      expect(health.status).toBe(200);
      expect(health.headers.ratelimit).toBeUndefined();
    }
    expect((await call('GET', '/v1/ready')).status).toBe(200);
  });

  it('counts anonymous callers per client address (the right-most X-Forwarded-For hop under trustProxy)', async () => {
    const statuses: number[] = [];
    // The left-most entry is the client's own claim, different every time: it must not matter.
    for (let n = 0; n <= AUTH_BURST; n++) {
      const r = await call('POST', '/v1/auth/login', { body: { username: 'alice', password: 'alice-password-1' }, from: `10.9.9.${n}, 198.51.100.10` });
      statuses.push(r.status);
      if (r.status === 200) expect(parseSfList(one(r.headers, 'ratelimit-policy'))).toEqual([{ value: 'auth', params: { q: AUTH_BURST, w: 60 } }]);
      else expect(Number(one(r.headers, 'retry-after'))).toBeGreaterThan(0);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    // Another address has a bucket of its own.
    expect((await call('POST', '/v1/auth/login', { body: { username: 'alice', password: 'alice-password-1' }, from: '198.51.100.11' })).status).toBe(200);
  });

  it('exposes the fields to cross-origin browser apps', async () => {
    const r = await call('GET', '/v1/auth/me', { token: bobToken, origin: 'https://app.example.com' });
    expect(String(r.headers['access-control-expose-headers'])).toContain('RateLimit, RateLimit-Policy');
  });
});

describe.each(HOSTS)('rate limits without trustProxy on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-rate-http-'));
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'rate-http-secret-0123456789abcdef',
      adminPassword: ADMIN_PASSWORD,
      // A unit back every 100 ms: fast enough to watch the refill within a test.
      rateLimits: { auth: 2, read: { perMinute: 600, burst: 2 } },
    });
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ignores X-Forwarded-For: every forged address shares the socket address\'s bucket', async () => {
    const statuses: number[] = [];
    for (let n = 0; n < 3; n++) {
      const res = await request(`${base}/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `203.0.113.${n}` },
        body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
      });
      await res.body.dump();
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([200, 200, 429]);
  });

  it('refills at the configured rate: refused past the burst, served again once a unit is back', async () => {
    const token = (await api.authService.issueToken('admin')).token;
    const read = async () => {
      const res = await request(`${base}/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      return { status: res.statusCode, retryAfter: res.headers['retry-after'], policy: res.headers['ratelimit-policy'] };
    };
    const first = await read();
    expect(first).toMatchObject({ status: 200, policy: '"read";q=2;w=1' });
    // Back to back, the burst runs out at once (a slow machine may see a unit come back meanwhile).
    let served = 1;
    let refused = await read();
    while (refused.status === 200 && served < 10) {
      served++;
      refused = await read();
    }
    expect(served).toBeGreaterThanOrEqual(2);
    expect(served).toBeLessThanOrEqual(4);
    expect(refused).toMatchObject({ status: 429, retryAfter: '1' });
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect((await read()).status).toBe(200);
  });
});
