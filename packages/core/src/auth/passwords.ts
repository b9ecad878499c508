/**
 * Password hashing with scrypt (node:crypto, async so the event loop never blocks on it).
 * The parameters travel inside the encoding, `scrypt$N$r$p$<salt>$<hash>`, so they can be
 * raised later without invalidating stored hashes.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { invalidRequest } from '../contract/errors.js';

/** Shortest password accepted for new or changed passwords: 8 characters. */
export const PASSWORD_MIN_LENGTH = 8;
/** Longest password accepted anywhere: 1024 characters (caps the work an attacker can make scrypt do). */
export const PASSWORD_MAX_LENGTH = 1024;

const COST = 16384;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const KEY_LENGTH = 64;
const SALT_BYTES = 16;

// Bounds for parameters read back from an encoding: a tampered or corrupt hash must not be
// able to make one verification allocate gigabytes or run for minutes.
const MAX_COST = 1 << 20;
const MAX_BLOCK_SIZE = 32;
const MAX_PARALLELISM = 16;
const MIN_KEY_LENGTH = 16;
const MAX_KEY_LENGTH = 256;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

function derive(password: string, salt: Buffer, keyLength: number, N: number, r: number, p: number): Promise<Buffer> {
  // scrypt needs about 128·N·r bytes; Node's default ceiling (32 MiB) would refuse raised parameters.
  const maxmem = 256 * N * r + 1024 * 1024;
  return new Promise((resolve, reject) => {
    // NFC so the same password typed on systems that compose accents differently still matches.
    scrypt(password.normalize('NFC'), salt, keyLength, { N, r, p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Hashes a password with scrypt (N=16384, r=8, p=1, 64-byte key, 16-byte random salt) and
 * returns `scrypt$16384$8$1$<salt b64url>$<hash b64url>`. Throws `invalid_request` for a
 * password longer than {@link PASSWORD_MAX_LENGTH}; minimum length is the caller's policy.
 */
export async function hashPassword(password: string): Promise<string> {
  if (password.length > PASSWORD_MAX_LENGTH) {
    throw invalidRequest(`password must be at most ${PASSWORD_MAX_LENGTH} characters`);
  }
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, KEY_LENGTH, COST, BLOCK_SIZE, PARALLELISM);
  return `scrypt$${COST}$${BLOCK_SIZE}$${PARALLELISM}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

function parseParam(text: string | undefined, max: number): number | null {
  if (text === undefined || !/^[1-9][0-9]{0,9}$/.test(text)) return null;
  const value = Number(text);
  return value <= max ? value : null;
}

/**
 * True when `password` matches `encoded` (compared in constant time). Reads the scrypt
 * parameters from the encoding; a malformed encoding or an over-long password gives false.
 */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  if (password.length > PASSWORD_MAX_LENGTH) return false;
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const N = parseParam(parts[1], MAX_COST);
  const r = parseParam(parts[2], MAX_BLOCK_SIZE);
  const p = parseParam(parts[3], MAX_PARALLELISM);
  const saltText = parts[4] ?? '';
  const hashText = parts[5] ?? '';
  // N must be a power of two above 1 (scrypt's own rule).
  if (N === null || r === null || p === null || N < 2 || (N & (N - 1)) !== 0) return false;
  if (!BASE64URL.test(saltText) || !BASE64URL.test(hashText)) return false;
  const salt = Buffer.from(saltText, 'base64url');
  const expected = Buffer.from(hashText, 'base64url');
  if (salt.length === 0 || expected.length < MIN_KEY_LENGTH || expected.length > MAX_KEY_LENGTH) return false;
  let actual: Buffer;
  try {
    actual = await derive(password, salt, expected.length, N, r, p);
  } catch {
    return false;
  }
  return timingSafeEqual(actual, expected);
}
