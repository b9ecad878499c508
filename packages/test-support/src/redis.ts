/**
 * Redis for tests. Unit and in-process tests share the Redis `.ci/run` makes sure is answering
 * (127.0.0.1:6379, or SENTINEL_TEST_REDIS_URL), each under a key prefix of its own so parallel
 * test files and parallel people never see each other's keys or channels. Fault tests start a
 * Redis of their own (`startOwnRedis`) on a free port, which they may kill: the shared one is
 * never stopped. When Redis is not answering the tests fail with a message saying so; they
 * never skip.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** The shared test Redis: SENTINEL_TEST_REDIS_URL, else redis://127.0.0.1:6379. */
export function testRedisUrl(): string {
  return process.env.SENTINEL_TEST_REDIS_URL || 'redis://127.0.0.1:6379';
}

/** A prefix no other test run uses: `test-<pid>-<random>:`. */
export function uniquePrefix(): string {
  return `test-${process.pid}-${randomBytes(4).toString('hex')}:`;
}

/** The shared test Redis URL with `?prefix=<prefix>` (and more query parameters when given). */
export function busUrl(prefix: string, extra: Record<string, string> = {}): string {
  const url = new URL(testRedisUrl());
  url.searchParams.set('prefix', prefix);
  for (const [name, value] of Object.entries(extra)) url.searchParams.set(name, value);
  return url.toString();
}

function plainClient(url: string): Redis {
  const parsed = new URL(url);
  const client = new Redis({
    host: parsed.hostname,
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
  });
  client.on('error', () => undefined);
  return client;
}

/** Fails with a "start it" message when the shared test Redis does not answer. */
export async function assertRedisRunning(): Promise<void> {
  const url = testRedisUrl();
  const client = plainClient(url);
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw new Error(`Redis is not running on ${new URL(url).host}: start it (see .ci/run) or set SENTINEL_TEST_REDIS_URL (${err instanceof Error ? err.message : String(err)})`);
  } finally {
    client.disconnect();
  }
}

/** Runs `work` with a plain client to the shared test Redis (to inspect keys and channels). */
export async function withRedis<T>(work: (client: Redis) => Promise<T>): Promise<T> {
  const client = plainClient(testRedisUrl());
  await client.connect();
  try {
    return await work(client);
  } finally {
    client.disconnect();
  }
}

/** Deletes every key under `prefix` (afterAll). */
export async function deletePrefix(prefix: string): Promise<void> {
  await withRedis(async (client) => {
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  });
}

/** A free TCP port on 127.0.0.1 (closed again at once; the caller binds it next). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A Redis server owned by one test: it may be killed and started again on the same port. */
export interface OwnRedis {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** Kills the server (SIGKILL) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port and waits until it answers. */
  start(): Promise<void>;
  /** Kills it and removes its directory. */
  dispose(): Promise<void>;
}

/** Starts `redis-server` on a free port with no persistence, and waits until it answers. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const waitUntilAnswering = async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const client = plainClient(url);
      try {
        await client.connect();
        await client.ping();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        client.disconnect();
      }
    }
  };

  const own: OwnRedis = {
    port,
    url,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        stdio: 'ignore',
      });
      child.once('error', () => undefined);
      await waitUntilAnswering();
    },
    async kill() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null || running.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        running.once('exit', () => resolve());
        running.kill('SIGKILL');
      });
    },
    async dispose() {
      await own.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await own.start();
  } catch (err) {
    await own.dispose();
    throw new Error(`cannot start redis-server (is it installed? see .ci/run): ${err instanceof Error ? err.message : String(err)}`);
  }
  return own;
}
