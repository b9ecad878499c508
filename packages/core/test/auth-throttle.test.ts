import { describe, expect, it } from 'vitest';
import { LoginThrottle, isSentinelError, throttleAddressKey } from '@sentinel/api-core';

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
  it('refuses a username after 5 failures with retryAfter until the window ends', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now });
    for (let i = 0; i < 5; i++) await fail(t, 'alice', `10.0.0.${i}`);
    c.ms += 60_000;
    const r = await refusal(t.check('alice', '10.0.0.99'));
    expect(r.code).toBe('rate_limited');
    expect(r.retryAfter).toBe(14 * 60);
    expect(r.message).toBe('too many failed logins; try again in 840 s');
    // Another user from another address is unaffected; usernames match case-insensitively.
    await expect(t.check('bob', '10.0.0.99')).resolves.toBeUndefined();
    expect((await refusal(t.check('ALICE', '10.0.0.98'))).code).toBe('rate_limited');
  });

  it('refuses an address after 20 failures across usernames, IPv6 counted per /64', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now });
    for (let i = 0; i < 20; i++) await fail(t, `user${i}`, `2001:db8:0:1::${i.toString(16)}`);
    const r = await refusal(t.check('fresh-user', '2001:0db8:0000:0001:ffff::1'));
    expect(r.retryAfter).toBe(15 * 60);
    await expect(t.check('fresh-user', '2001:db8:0:2::1')).resolves.toBeUndefined();
  });

  it('a success clears the username but not the address', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, maxFailuresPerAddress: 6 });
    for (let i = 0; i < 4; i++) await fail(t, 'alice', '192.0.2.1');
    await t.check('alice', '192.0.2.1');
    await t.recordSuccess('alice', '192.0.2.1');
    for (let i = 0; i < 2; i++) await fail(t, 'alice', '192.0.2.7');
    // Had the success not cleared alice, 4 + 2 failures would exceed 5 now.
    await expect(t.check('alice', '192.0.2.7')).resolves.toBeUndefined();
    await t.recordSuccess('alice', '192.0.2.7');
    // 192.0.2.1 kept its 4 failures: two more reach its limit of 6.
    await fail(t, 'bob', '192.0.2.1');
    await fail(t, 'carol', '192.0.2.1');
    expect((await refusal(t.check('dave', '192.0.2.1'))).code).toBe('rate_limited');
  });

  it('forgets failures when the window ends', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, windowMs: 60_000 });
    for (let i = 0; i < 5; i++) await fail(t, 'alice', '192.0.2.1');
    c.ms += 59_000;
    expect((await refusal(t.check('alice', '192.0.2.1'))).retryAfter).toBe(1);
    c.ms += 1_000;
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

  it('stays within maxKeys per table and prunes expired windows', async () => {
    const c = clock();
    const t = new LoginThrottle({ now: c.now, maxKeys: 50, windowMs: 1000 });
    for (let i = 0; i < 500; i++) await fail(t, `user${i}`, `198.51.100.${i % 256}`);
    expect(t.trackedKeys).toBeLessThanOrEqual(100);
    c.ms += 1000;
    await t.check('someone', '203.0.113.1');
    expect(t.trackedKeys).toBe(2);
    await t.recordSuccess('someone', '203.0.113.1');
    expect(t.trackedKeys).toBe(0);
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
