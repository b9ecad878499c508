import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { TOKEN_SECRET_FILE, resolveTokenSecret } from '../src/auth/secret.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-secret-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const sign = (key: KeyObject) => jwt.sign({ sub: 'a' }, key, { algorithm: 'HS256', noTimestamp: true });

describe('resolveTokenSecret', () => {
  it('creates a 0600 secret file once (no temp files left) and reuses it', async () => {
    const dataDir = join(dir, 'nested', 'data');
    const first = await resolveTokenSecret({ dataDir });
    const file = join(dataDir, TOKEN_SECRET_FILE);
    expect(first.type).toBe('secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8').trim();
    expect(text).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(readdirSync(dataDir)).toEqual([TOKEN_SECRET_FILE]);

    const second = await resolveTokenSecret({ dataDir });
    expect(readFileSync(file, 'utf8').trim()).toBe(text);
    expect(first.equals(second)).toBe(true);
    // The file's text is the key: passing it as the secret signs identically.
    expect(sign(await resolveTokenSecret({ dataDir: dir, secret: text }))).toBe(sign(first));
  });

  it('agrees on one secret when several starts race on a fresh directory', async () => {
    const keys = await Promise.all(Array.from({ length: 5 }, () => resolveTokenSecret({ dataDir: dir })));
    const onDisk = await resolveTokenSecret({ dataDir: dir });
    for (const key of keys) expect(key.equals(onDisk)).toBe(true);
    expect(readdirSync(dir)).toEqual([TOKEN_SECRET_FILE]);
  });

  it('tightens a secret file with a wider mode to 0600', async () => {
    const file = join(dir, TOKEN_SECRET_FILE);
    writeFileSync(file, 'an-existing-secret-of-enough-length\n');
    chmodSync(file, 0o644);
    const key = await resolveTokenSecret({ dataDir: dir });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(key.export().toString('utf8')).toBe('an-existing-secret-of-enough-length');
  });

  it('uses a given secret of at least 16 characters and refuses a shorter one', async () => {
    const key = await resolveTokenSecret({ dataDir: dir, secret: '0123456789abcdef' });
    expect(key.export().toString('utf8')).toBe('0123456789abcdef');
    expect(readdirSync(dir)).toEqual([]);
    const err = await resolveTokenSecret({ dataDir: dir, secret: '0123456789abcde' }).catch((e: unknown) => e);
    expect(isSentinelError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'invalid_request', message: 'token secret must be at least 16 characters' });
  });

  it('reports an unusable data directory or a truncated secret file as unavailable', async () => {
    const notADir = join(dir, 'file');
    writeFileSync(notADir, 'x');
    const err = await resolveTokenSecret({ dataDir: notADir }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unavailable' });
    expect((err as Error).message.startsWith(`cannot use data directory ${notADir}: `)).toBe(true);

    writeFileSync(join(dir, TOKEN_SECRET_FILE), 'short\n', { mode: 0o600 });
    const truncated = await resolveTokenSecret({ dataDir: dir }).catch((e: unknown) => e);
    expect(truncated).toMatchObject({ code: 'unavailable' });
  });
});
