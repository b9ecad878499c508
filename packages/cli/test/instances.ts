/**
 * The multi-instance CLI specs' common set-up: built `sentinel api` processes on their own
 * loopback ports sharing one fresh PostgreSQL database, one Redis (under a key prefix of this
 * run's own) and one token secret, so they behave as one server. Each spec used to copy the
 * start-up, the admin login and the clean-up; they differ only in the flags they add.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix } from '@sentinel/test-support/redis';
import { assertBuilt, callJson, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

export const ADMIN_PASSWORD = 'correct-horse-battery';
/** One secret for every instance: a token signed by one is accepted by the others. */
export const TOKEN_SECRET = 'one-secret-for-every-instance-0123456789';

export interface Instance {
  readonly name: string;
  readonly process: CliProcess;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** `ws://127.0.0.1:<port>` */
  readonly ws: string;
}

export interface InstanceOptions {
  /** Flags after `api --port 0 --host 127.0.0.1 --data-dir <tmp>/<name>`. */
  args?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** `--no-log-requests` unless true (a spec that reads the request log wants it). */
  logRequests?: boolean;
  /** False: an instance of its own (SQLite in its data dir, no Redis, its own token secret). */
  shared?: boolean;
}

export interface Instances {
  /** The run's temp dir: HOME of every instance, and the parent of their data dirs. */
  readonly tmp: string;
  readonly database: TestDatabase;
  /** This run's Redis key prefix. */
  readonly prefix: string;
  /** Starts `sentinel api` named `name` and resolves once it listens. */
  start(name: string, options?: InstanceOptions): Promise<Instance>;
  /** Logs in on `on` (the admin by default), expecting a 200, and resolves with the token. */
  login(on: { url: string }, username?: string, password?: string): Promise<string>;
  /** Kills every spawned CLI, drops the database, deletes the prefix's keys and the temp dir. */
  close(): Promise<void>;
}

/**
 * Checks the binary is built and Redis answers, then makes the temp dir and a fresh database.
 * `bus` adds query parameters to every shared instance's bus URL (e.g. a short turn lease).
 */
export async function createInstances(tmpPrefix: string, options: { bus?: Record<string, string> } = {}): Promise<Instances> {
  assertBuilt();
  await assertRedisRunning();
  const prefix = uniquePrefix();
  const tmp = mkdtempSync(join(tmpdir(), tmpPrefix));
  let database: TestDatabase;
  try {
    database = await createTestDatabase();
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return {
    tmp,
    database,
    prefix,
    async start(name, { args = [], env = {}, logRequests = false, shared = true } = {}) {
      const process = runCli(
        ['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, name), ...(logRequests ? [] : ['--no-log-requests']), ...args],
        cleanEnv(tmp, {
          SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD,
          ...(shared ? { SENTINEL_TOKEN_SECRET: TOKEN_SECRET, SENTINEL_STORE_URL: database.url, SENTINEL_BUS_URL: busUrl(prefix, options.bus) } : {}),
          ...env,
        }),
      );
      const url = await process.url(30_000);
      return { name, process, url, ws: url.replace(/^http/, 'ws') };
    },
    async login(on, username = 'admin', password = ADMIN_PASSWORD) {
      const response = await callJson('POST', `${on.url}/v1/auth/login`, undefined, { username, password });
      expect(response.status, JSON.stringify(response.json)).toBe(200);
      return response.json.token as string;
    },
    async close() {
      await killAll();
      await database.drop();
      await deletePrefix(prefix);
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}
