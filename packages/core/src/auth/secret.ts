/**
 * The HS256 token secret: given by the operator, or generated once and kept in the data
 * directory so tokens survive restarts (docs/ARCHITECTURE.md#auth-and-tenancy).
 */
import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { chmod, link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { dataDirectoryUnusable, invalidRequest } from '../contract/errors.js';

/** Shortest secret accepted, in characters. */
const MIN_SECRET_LENGTH = 16;
/** Random bytes in a generated secret (stored as 64 base64url characters). */
const GENERATED_SECRET_BYTES = 48;
/** Name of the secret file inside the data directory. */
export const TOKEN_SECRET_FILE = 'token-secret';

export interface ResolveTokenSecretOptions {
  /** Directory holding `token-secret`; created (mode 0700) when missing. No default. */
  dataDir: string;
  /** The operator's secret (at least 16 characters). Default: read or generate `<dataDir>/token-secret`. */
  secret?: string;
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** Reads the secret file, tightening its mode to 0600 when it is wider. Null when absent. */
async function readSecretFile(file: string): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isCode(err, 'ENOENT')) return null;
    throw err;
  }
  const info = await stat(file);
  if ((info.mode & 0o077) !== 0) await chmod(file, 0o600);
  const secret = text.trim();
  if (secret.length < MIN_SECRET_LENGTH) throw new Error(`${file} holds fewer than ${MIN_SECRET_LENGTH} characters`);
  return secret;
}

/**
 * Writes a fresh secret to a private temp file (flag 'wx', mode 0600, fsync), then publishes
 * it under its final name. Publication uses link(), which, unlike rename(), never replaces a
 * file another process published first; two servers starting on one data directory therefore
 * agree on one secret. Where hard links are unsupported it falls back to rename().
 * Returns the secret now on disk (ours, or the one that won the race).
 */
async function createSecretFile(dataDir: string, file: string): Promise<string> {
  const secret = randomBytes(GENERATED_SECRET_BYTES).toString('base64url');
  const temp = join(dataDir, `.${TOKEN_SECRET_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(secret + '\n', 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, file);
    await unlink(temp);
  } catch (err) {
    if (isCode(err, 'EEXIST')) {
      await unlink(temp);
      const existing = await readSecretFile(file);
      if (existing === null) throw err;
      return existing;
    }
    if (!isCode(err, 'EPERM') && !isCode(err, 'ENOTSUP') && !isCode(err, 'EOPNOTSUPP') && !isCode(err, 'ENOSYS')) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await rename(temp, file);
  }
  await syncDirectory(dataDir);
  return secret;
}

/** Makes the new directory entry durable; some platforms cannot open directories, which is harmless. */
async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // best effort
  } finally {
    await handle?.close();
  }
}

/**
 * Returns the token signing key as a KeyObject, made once (jsonwebtoken with a string secret
 * measured 40x slower). A given `secret` must have at least 16 characters (else
 * `invalid_request`); otherwise `<dataDir>/token-secret` is read, or created with 48 random
 * bytes (base64url) and mode 0600. The key is the UTF-8 text of the secret either way, so the
 * file's content can be passed as `secret` elsewhere with the same result.
 * File-system failures throw `unavailable` ('cannot use data directory <dir>: <reason>').
 */
export async function resolveTokenSecret(options: ResolveTokenSecretOptions): Promise<KeyObject> {
  if (options.secret !== undefined) {
    if (options.secret.length < MIN_SECRET_LENGTH) {
      throw invalidRequest(`token secret must be at least ${MIN_SECRET_LENGTH} characters`);
    }
    return createSecretKey(Buffer.from(options.secret, 'utf8'));
  }
  const { dataDir } = options;
  const file = join(dataDir, TOKEN_SECRET_FILE);
  let secret: string;
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    secret = (await readSecretFile(file)) ?? (await createSecretFile(dataDir, file));
  } catch (err) {
    throw dataDirectoryUnusable(dataDir, err instanceof Error ? err.message : String(err), err);
  }
  return createSecretKey(Buffer.from(secret, 'utf8'));
}
