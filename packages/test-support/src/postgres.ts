/**
 * Fresh PostgreSQL databases for tests. Each caller (a test file, a multi-instance suite) gets a
 * database of its own, `sentinel_test_<pid>_<random>`, created from the server's maintenance
 * database and dropped afterwards, so parallel test files and parallel people never share
 * tables. The server is the one `.ci/run` makes sure is answering: 127.0.0.1:5432, or
 * SENTINEL_TEST_PG_URL. When it is not answering the tests fail with a message saying so;
 * they never skip.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Where the test databases are created: a URL to a maintenance database of the server. */
export const DEFAULT_TEST_PG_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** How long to wait for the server before declaring it down. */
const CONNECT_TIMEOUT_MS = 3000;

export interface TestDatabase {
  /** `sentinel_test_<pid>_<random>`. */
  readonly name: string;
  /** A URL to this database (same server and credentials as the admin URL). */
  readonly url: string;
  /** Drops the database, closing whatever connections are still open on it. Idempotent. */
  drop(): Promise<void>;
}

/** The admin URL the test databases are created through: SENTINEL_TEST_PG_URL, else {@link DEFAULT_TEST_PG_URL}. */
export function testPostgresUrl(): string {
  return process.env.SENTINEL_TEST_PG_URL || DEFAULT_TEST_PG_URL;
}

function hostOf(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}`;
  } catch {
    return 'the configured server';
  }
}

/** Runs `work` on one admin connection; a server that does not answer fails with the "start it" message. */
async function withAdminClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const adminUrl = testPostgresUrl();
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // A connection that dies between statements must fail the call, not crash the test process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    const reason = err instanceof Error && err.message !== '' ? err.message : String((err as { code?: unknown }).code ?? err);
    throw new Error(`PostgreSQL is not running on ${hostOf(adminUrl)}: start it (see .ci/run) or set SENTINEL_TEST_PG_URL (${reason})`, { cause: err });
  }
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates an empty database for one test file or suite; drop it in afterAll. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `sentinel_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await withAdminClient((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(testPostgresUrl());
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    name,
    url: url.toString(),
    drop: () =>
      (dropped ??= withAdminClient(async (client) => {
        // FORCE (PostgreSQL 13+): pools a failed test left open must not keep the database alive.
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      })),
  };
}

/** Runs `text` on a fresh connection to `databaseUrl` (for tests that inspect or break things); resolves with the rows. */
export async function queryDatabase<R extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}
