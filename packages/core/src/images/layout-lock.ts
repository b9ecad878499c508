/**
 * A lock file that serializes writers of one OCI image layout across processes (two `sentinel
 * api` on one data directory, or an export while the server pushes). index.json is a
 * read-modify-write: without the lock, two writers read the same index and the second rename
 * drops the first one's image.
 *
 * The lock is `<dir>/.sentinel-write.lock`, created with O_EXCL and holding `{pid, host, token}`.
 * Its holder touches it every `staleMs / 3` while writing. A lock is stale when its pid is dead
 * on this host, or when it was not touched for `staleMs` (a holder on another host, a reused
 * pid, a frozen process). Breaking a stale lock is itself serialized by a short-lived O_EXCL
 * "breaker" file, and the lock is re-read under it, so two waiters can never both break it and
 * then both hold it.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rm, stat, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { unavailable } from '../contract/errors.js';

/** Name of the lock file inside the layout directory (OCI tools ignore files they do not know). */
export const LAYOUT_LOCK_FILE = '.sentinel-write.lock';

export interface LayoutLockOptions {
  /** Milliseconds after which an untouched lock is stale. Default 30 000. */
  staleMs?: number;
  /** Milliseconds to wait for the lock before giving up with `unavailable`. Default 60 000. */
  waitMs?: number;
}

interface LockContent {
  pid: number;
  host: string;
  token: string;
}

function errnoCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, it is just not ours.
    return errnoCode(err) === 'EPERM';
  }
}

/** Creates `path` exclusively with `content`; false when it exists. */
async function createExclusive(path: string, content: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o644);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
  return true;
}

/** The lock as it is on disk: content (null when unreadable or half-written) and its age; null when absent. */
async function inspect(path: string): Promise<{ content: LockContent | null; ageMs: number } | null> {
  try {
    const [info, text] = await Promise.all([stat(path), readFile(path, 'utf8')]);
    let content: LockContent | null = null;
    try {
      const parsed = JSON.parse(text) as Partial<LockContent>;
      if (typeof parsed.pid === 'number' && typeof parsed.host === 'string' && typeof parsed.token === 'string') content = parsed as LockContent;
    } catch {
      // Being written right now (or by a crashed writer): judged by its age alone.
    }
    return { content, ageMs: Date.now() - info.mtimeMs };
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}

function isStale(lock: { content: LockContent | null; ageMs: number }, staleMs: number): boolean {
  if (lock.ageMs > staleMs) return true;
  return lock.content !== null && lock.content.host === hostname() && !pidAlive(lock.content.pid);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Removes the lock if it is still the stale one we saw (same token), under the breaker file. */
async function breakStale(path: string, seen: LockContent | null, staleMs: number): Promise<void> {
  const breaker = `${path}.break`;
  if (!(await createExclusive(breaker, String(process.pid)))) {
    // Someone else is breaking it; a breaker left by a crash is removed once it is old.
    const info = await stat(breaker).catch(() => null);
    if (info !== null && Date.now() - info.mtimeMs > Math.min(staleMs, 10_000)) await rm(breaker, { force: true });
    return;
  }
  try {
    const now = await inspect(path);
    if (now !== null && isStale(now, staleMs) && (now.content?.token ?? null) === (seen?.token ?? null)) await rm(path, { force: true });
  } finally {
    await rm(breaker, { force: true });
  }
}

/**
 * Runs `work` holding the write lock of the layout at `dir` (which must exist). Throws
 * SentinelError `unavailable` when another live writer holds it for longer than `waitMs`.
 */
export async function withLayoutFileLock<T>(dir: string, work: () => Promise<T>, options: LayoutLockOptions = {}): Promise<T> {
  const staleMs = options.staleMs ?? 30_000;
  const waitMs = options.waitMs ?? 60_000;
  const path = join(dir, LAYOUT_LOCK_FILE);
  const content: LockContent = { pid: process.pid, host: hostname(), token: randomBytes(12).toString('hex') };
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; !(await createExclusive(path, JSON.stringify(content))); attempt++) {
    const lock = await inspect(path);
    if (lock !== null && isStale(lock, staleMs)) {
      await breakStale(path, lock.content, staleMs);
      continue;
    }
    if (Date.now() > deadline) {
      throw unavailable(`the image layout ${dir} is being written by another process${lock?.content ? ` (pid ${lock.content.pid})` : ''}; try again`);
    }
    // Writes take milliseconds: poll briefly, with jitter so waiters do not move in lockstep.
    await sleep(Math.min(5 + attempt * 5, 50) + Math.random() * 10);
  }
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, Math.max(1, Math.floor(staleMs / 3)));
  heartbeat.unref();
  try {
    return await work();
  } finally {
    clearInterval(heartbeat);
    // Only our own lock: had it been broken (we looked stale), it may be someone else's now.
    const lock = await inspect(path).catch(() => null);
    if (lock?.content?.token === content.token) await rm(path, { force: true });
  }
}
