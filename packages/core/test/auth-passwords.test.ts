import { describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, hashPassword, verifyPassword } from '../src/auth/passwords.js';

describe('hashPassword / verifyPassword', () => {
  it('encodes scrypt parameters, salt and hash, and verifies only the right password', async () => {
    const encoded = await hashPassword('correct horse battery');
    expect(encoded).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{86}$/);
    expect(await verifyPassword('correct horse battery', encoded)).toBe(true);
    expect(await verifyPassword('correct horse batterY', encoded)).toBe(false);
    expect(await verifyPassword('', encoded)).toBe(false);
  });

  it('salts every hash and matches composed and decomposed accents alike', async () => {
    const a = await hashPassword('caf\u00e9-password');
    const b = await hashPassword('caf\u00e9-password');
    expect(a).not.toBe(b);
    expect(await verifyPassword('cafe\u0301-password', a)).toBe(true);
  });

  it('reads parameters from the encoding, so raised parameters still verify', async () => {
    const { scrypt, randomBytes } = await import('node:crypto');
    const salt = randomBytes(16);
    const key = await new Promise<Buffer>((resolve, reject) =>
      scrypt('raised-params', salt, 32, { N: 1024, r: 4, p: 2 }, (err, k) => (err ? reject(err) : resolve(k))),
    );
    const encoded = `scrypt$1024$4$2$${salt.toString('base64url')}$${key.toString('base64url')}`;
    expect(await verifyPassword('raised-params', encoded)).toBe(true);
    expect(await verifyPassword('other', encoded)).toBe(false);
  });

  it('treats malformed or hostile encodings as a mismatch', async () => {
    const good = await hashPassword('password-1');
    const [, , , , salt, hash] = good.split('$');
    for (const bad of [
      '',
      'plain',
      `bcrypt$16384$8$1$${salt}$${hash}`,
      `scrypt$16384$8$1$${salt}`,
      `scrypt$1000$8$1$${salt}$${hash}`, // N not a power of two
      `scrypt$${2 ** 24}$8$1$${salt}$${hash}`, // N beyond the bound
      `scrypt$16384$0$1$${salt}$${hash}`,
      `scrypt$16384$8$1$${salt}$${hash}=`,
      `scrypt$16384$8$1$$${hash}`,
      `scrypt$16384$8$1$${salt}$AAAA`, // too short a key
    ]) {
      expect(await verifyPassword('password-1', bad)).toBe(false);
    }
  });

  it('caps the password length', async () => {
    expect(PASSWORD_MIN_LENGTH).toBe(8);
    expect(PASSWORD_MAX_LENGTH).toBe(1024);
    const encoded = await hashPassword('x'.repeat(PASSWORD_MAX_LENGTH));
    expect(await verifyPassword('x'.repeat(PASSWORD_MAX_LENGTH), encoded)).toBe(true);
    expect(await verifyPassword('x'.repeat(PASSWORD_MAX_LENGTH + 1), encoded)).toBe(false);
    const err = await hashPassword('x'.repeat(PASSWORD_MAX_LENGTH + 1)).catch((e: unknown) => e);
    expect(isSentinelError(err) && err.code).toBe('invalid_request');
  });
});
