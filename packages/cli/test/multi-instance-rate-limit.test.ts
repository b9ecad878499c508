/**
 * Rate limits and `--trust-proxy` through the real binary. Two `sentinel api` processes on one
 * PostgreSQL database and one Redis (under a key prefix of this run's own) share their buckets:
 * requests spread over both are counted once. A third process, alone, with `--trust-proxy`,
 * proves the lock-out scenario of issue 13 item 5 through X-Forwarded-For: a storm of wrong
 * passwords from one address does not stop the real user logging in from another one; a fourth,
 * without the flag, shows the header is ignored.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, createInstances, type Instances } from './instances.js';
import { callJson as call } from './spawn-cli.js';

async function get(url: string, token: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  const res = await request(url, { headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  return { status: res.statusCode, headers: res.headers };
}

async function login(url: string, password: string, forwardedFor?: string): Promise<{ status: number; retryAfter: string | undefined; body: any }> {
  const res = await request(`${url}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) },
    body: JSON.stringify({ username: 'admin', password }),
  });
  const body = (await res.body.json()) as unknown;
  return { status: res.statusCode, retryAfter: res.headers['retry-after'] as string | undefined, body };
}

describe('rate limits across sentinel api processes', () => {
  let instances: Instances;
  let a: string;
  let b: string;
  let proxied: string;
  let direct: string;

  beforeAll(async () => {
    instances = await createInstances('sentinel-rate-multi-');
    const shared = async (name: string) => (await instances.start(name, { args: ['--rate-limit-read', '6'] })).url;
    const alone = async (name: string, args: string[], env: Record<string, string> = {}) => (await instances.start(name, { args, env, shared: false })).url;
    [a, b, proxied, direct] = await Promise.all([
      shared('a'),
      shared('b'),
      // The flag for one, the variable for the other: both spellings are exercised.
      alone('proxied', ['--trust-proxy']),
      alone('direct', ['--rate-limit-auth', '0'], { SENTINEL_TRUST_PROXY: 'false' }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await instances?.close();
  });

  it('counts reads on A and B against one bucket in Redis: the seventh is refused on either', async () => {
    const session = await call('POST', `${a}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD });
    expect(session.status).toBe(200);
    const token = session.json.token as string;
    const seen: string[] = [];
    for (let n = 0; n < 6; n++) {
      const r = await get(`${n % 2 === 0 ? a : b}/v1/agents`, token);
      expect(r.status).toBe(200);
      seen.push(String(r.headers.ratelimit));
      expect(r.headers['ratelimit-policy']).toBe('"read";q=6;w=60');
    }
    expect(seen.map((field) => /;r=(\d+);/.exec(field)?.[1])).toEqual(['5', '4', '3', '2', '1', '0']);
    const refusedOnB = await get(`${b}/v1/agents`, token);
    expect(refusedOnB.status).toBe(429);
    expect(Number(refusedOnB.headers['retry-after'])).toBeGreaterThan(0);
    expect((await get(`${a}/v1/agents`, token)).status).toBe(429);
    // Probes never count.
    expect((await call('GET', `${a}/v1/ready`, undefined)).status).toBe(200);
  });

  it('with --trust-proxy, a wrong-password storm from one X-Forwarded-For address does not stop the real user at another', async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof login>> | undefined;
    for (let n = 0; n < 30; n++) {
      last = await login(proxied, `wrong-${n}`, `192.0.2.${n % 200}, 198.51.100.66`);
      statuses.push(last.status);
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.at(-1)).toBe(429);
    expect(last?.body).toMatchObject({ code: 'rate_limited' });
    expect(Number(last?.retryAfter)).toBeGreaterThan(0);
    // The storm's (right-most) address is refused even with the right password…
    expect((await login(proxied, ADMIN_PASSWORD, '198.51.100.66')).status).toBe(429);
    // …while the real user, behind the same proxy from another address, gets in at once.
    const started = Date.now();
    expect((await login(proxied, ADMIN_PASSWORD, '203.0.113.77')).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('without --trust-proxy the header is ignored: forged addresses all count as the socket address', async () => {
    const statuses: number[] = [];
    for (let n = 0; n < 30; n++) statuses.push((await login(direct, `wrong-${n}`, `203.0.113.${n}`)).status);
    expect(statuses.at(-1)).toBe(429);
    // Claiming a fresh address changes nothing: it is the same client.
    expect((await login(direct, ADMIN_PASSWORD, '203.0.113.250')).status).toBe(429);
  });
});
