import { describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { LoginThrottle, throttleAddressKey } from '../src/auth/throttle.js';

function clock(start = 1_900_000_000_000) {
  const c = { ms: start, now: () => c.ms };
  return c;
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; retryAfter: number | undefined; message: string }> {
  const err = await p.then(
    () => expect.unreachable('should have been refused'),
    (e: unknown) => e,
  );
  if (!isSentinelError(err)) throw err;
  return { code: err.code, retryAfter: err.retryAfter, message: err.message };
}

/** One attempt the way AuthService makes it: check, then record the outcome. */
async function fail(t: LoginThrottle, user: string, address: string): Promise<void> {
  await t.check(user, address);
  await t.recordFailure(user, address);
}

describe('LoginThrottle', () => {
  it('gives a (username, address) pair 5 free failures, then doubling waits from the last failure, capped', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, maxDelayMs: 8000 });
    for (let i = 0; i < 5; i++) await fail(t, 'alice', '10.0.0.1');
    const r = await refusal(t.check('alice', '10.0.0.1'));
    expect(r).toEqual({ code: 'rate_limited', retryAfter: 1, message: 'too many failed logins; try again in 1 s' });
    // Usernames match case-insensitively.
    expect((await refusal(t.check('ALICE', '10.0.0.1'))).code).toBe('rate_limited');
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const wait = (await refusal(t.check('alice', '10.0.0.1'))).retryAfter ?? 0;
      waits.push(wait);
      c.ms += wait * 1000;
      await fail(t, 'alice', '10.0.0.1');
    }
    expect(waits).toEqual([1, 2, 4, 8, 8, 8]);
    // Part of the wait has passed: Retry-After says what is left.
    c.ms += 3000;
    expect((await refusal(t.check('alice', '10.0.0.1'))).retryAfter).toBe(5);
  });

  it('never refuses the same username from a clean address, however many failures it has', async () => {
    const c = clock();
    const slept: number[] = [];
    const t = new LoginThrottle({ now: c.now, sleep: async (ms) => void slept.push(ms) });
    for (let a = 0; a < 12; a++) for (let i = 0; i < 5; i++) await fail(t, 'admin', `198.51.100.${a}`);
    expect((await refusal(t.check('admin', '198.51.100.0'))).code).toBe('rate_limited');
    slept.length = 0;
    await expect(t.check('admin', '203.0.113.1')).resolves.toBeUndefined();
    // 60 failures from everywhere: only a bounded slow-down (default at most 1000 ms).
    expect(slept).toEqual([1000]);
    await t.recordSuccess('admin', '203.0.113.1');
  });

  it('slows a username down by 100 ms per failure past 10, at most 1 s, and never sleeps before that', async () => {
    const c = clock();
    const slept: number[] = [];
    const t = new LoginThrottle({ now: c.now, sleep: async (ms) => void slept.push(ms) });
    for (let i = 0; i < 14; i++) await fail(t, 'bob', `192.0.2.${i}`);
    expect(slept).toEqual([100, 200, 300, 400]);
    slept.length = 0;
    for (let i = 0; i < 10; i++) await fail(t, 'bob', `192.0.2.${100 + i}`);
    expect(slept.at(-1)).toBe(1000);
    // A success from one address does not lift it (the guesses came from elsewhere).
    await t.check('bob', '203.0.113.5');
    await t.recordSuccess('bob', '203.0.113.5');
    slept.length = 0;
    await t.check('carol', '203.0.113.5');
    expect(slept).toEqual([]);
  });

  it('makes one address wait after 20 failures across usernames, IPv6 counted per /64', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now });
    for (let i = 0; i < 20; i++) await fail(t, `user${i}`, `2001:db8:0:1::${i.toString(16)}`);
    const r = await refusal(t.check('fresh-user', '2001:0db8:0000:0001:ffff::1'));
    expect(r.retryAfter).toBe(1);
    await expect(t.check('fresh-user', '2001:db8:0:2::1')).resolves.toBeUndefined();
  });

  it('a success clears the pair but not the address', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, freeFailuresPerAddress: 6 });
    for (let i = 0; i < 4; i++) await fail(t, 'alice', '192.0.2.1');
    await t.check('alice', '192.0.2.1');
    await t.recordSuccess('alice', '192.0.2.1');
    // 192.0.2.1 kept its 4 failures: two more (for anyone) reach its budget of 6.
    await fail(t, 'bob', '192.0.2.1');
    await fail(t, 'carol', '192.0.2.1');
    expect((await refusal(t.check('dave', '192.0.2.1'))).code).toBe('rate_limited');
    // Had the success not cleared alice's pair, it would be refused here as well as the address.
    const other = new LoginThrottle({ now: c.now });
    for (let i = 0; i < 4; i++) await fail(other, 'alice', '192.0.2.1');
    await other.check('alice', '192.0.2.1');
    await other.recordSuccess('alice', '192.0.2.1');
    for (let i = 0; i < 5; i++) await fail(other, 'alice', '192.0.2.1');
    expect((await refusal(other.check('alice', '192.0.2.1'))).retryAfter).toBe(1);
  });

  it('forgets a counter forgetAfterMs after its last failure (default an hour), even mid-wait', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, forgetAfterMs: 60_000, baseDelayMs: 120_000 });
    for (let i = 0; i < 5; i++) await fail(t, 'alice', '192.0.2.1');
    c.ms += 59_999;
    expect((await refusal(t.check('alice', '192.0.2.1'))).retryAfter).toBe(61);
    c.ms += 1;
    await expect(t.check('alice', '192.0.2.1')).resolves.toBeUndefined();
  });

  it('counts concurrent attempts before they finish, and lets unrecorded ones lapse', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now });
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => t.check('alice', '192.0.2.1')));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(5);
    const refused = outcomes.find((o) => o.status === 'rejected');
    expect(refused?.status === 'rejected' && (refused.reason as { retryAfter: number }).retryAfter).toBe(1);
    // The five attempts never report back (a crash): they stop counting after a few seconds.
    c.ms += 10_000;
    await expect(t.check('alice', '192.0.2.1')).resolves.toBeUndefined();
  });

  it('stays within maxKeys per table and prunes forgotten counters', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, maxKeys: 50, forgetAfterMs: 1000 });
    for (let i = 0; i < 500; i++) await fail(t, `user${i}`, `198.51.100.${i % 256}`);
    expect(t.trackedKeys).toBeLessThanOrEqual(150);
    c.ms += 10_000;
    await t.check('someone', '203.0.113.1');
    expect(t.trackedKeys).toBe(2);
    await t.recordSuccess('someone', '203.0.113.1');
    expect(t.trackedKeys).toBe(0);
  });

  it('refuses a policy that is not made of non-negative integers', () => {
    expect(() => new LoginThrottle({ baseDelayMs: 0 })).toThrow(RangeError);
    expect(() => new LoginThrottle({ maxDelayMs: -1 })).toThrow(/maxDelayMs/);
    expect(() => new LoginThrottle({ freeFailuresPerAddress: 1.5 })).toThrow(/freeFailuresPerAddress/);
  });
});

describe('throttleAddressKey', () => {
  it('groups IPv6 by /64, unwraps IPv4-mapped addresses and passes others through', () => {
    expect(throttleAddressKey('192.0.2.1')).toBe('192.0.2.1');
    expect(throttleAddressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(throttleAddressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(throttleAddressKey('2001:0DB8:0000:0000:abcd::9%eth0')).toBe('2001:db8:0:0::/64');
    expect(throttleAddressKey('::1')).toBe('0:0:0:0::/64');
    expect(throttleAddressKey('fe80:1:2:3:4:5:6:7')).toBe('fe80:1:2:3::/64');
    expect(throttleAddressKey('not:an:address::x')).toBe('not:an:address::x');
    expect(throttleAddressKey('unknown')).toBe('unknown');
  });
});
