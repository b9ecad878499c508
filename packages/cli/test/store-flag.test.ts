/**
 * `sentinel api --store postgres://…` / SENTINEL_STORE_URL: the built binary on a fresh
 * PostgreSQL database (from core's test support), with real sockets.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { assertBuilt, cleanEnv, killAll, runCli, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'correct-horse-battery';
/** The server trusts local connections, so any password works: it is here to prove it never leaks. */
const URL_PASSWORD = 'not-to-be-logged-7d1f';

let db: TestDatabase;
let tmp: string;

beforeAll(async () => {
  assertBuilt();
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-cli-store-'));
});

afterEach(async () => {
  await killAll();
  rmSync(tmp, { recursive: true, force: true });
});

/** The test database's URL with a password in it. */
function urlWithPassword(): string {
  const url = new URL(db.url);
  url.password = URL_PASSWORD;
  return url.toString();
}

function startApi(args: string[], env: Record<string, string>, name: string): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, name), ...args], cleanEnv(tmp, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD, ...env }));
}

async function getJson(url: string, path: string, token?: string): Promise<{ status: number; body: any }> {
  const res = await request(url + path, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: await res.body.json() };
}

async function login(url: string): Promise<string> {
  const res = await request(`${url}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
  });
  expect(res.statusCode).toBe(200);
  return ((await res.body.json()) as { token: string }).token;
}

describe('sentinel api --store', () => {
  it('serves two instances from one database (flag on one, variable on the other), ready, never logging the password', async () => {
    const secret = ['--token-auth-secret', 'store-flag-test-secret-0123'];
    const a = startApi(['--store', urlWithPassword(), ...secret], {}, 'a');
    const b = startApi(secret, { SENTINEL_STORE_URL: urlWithPassword() }, 'b');
    const [urlA, urlB] = await Promise.all([a.url(), b.url()]);

    for (const url of [urlA, urlB]) expect(await getJson(url, '/v1/ready')).toEqual({ status: 200, body: { status: 'ready', store: 'ok', bus: 'none' } });

    const tokenA = await login(urlA);
    const created = await request(`${urlA}/v1/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokenA}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'sentinel/echo:latest', name: 'shared' }),
    });
    expect(created.statusCode).toBe(201);
    const agent = (await created.body.json()) as { id: string };
    // Same secret, same database: a token from A works on B, and B lists what A created.
    const listed = await getJson(urlB, '/v1/agents', tokenA);
    expect(listed.status).toBe(200);
    expect((listed.body as { agents: { id: string }[] }).agents.map((x) => x.id)).toContain(agent.id);

    const storeLine = a.jsonLines().find((line) => line.msg === 'store on postgres');
    expect(storeLine?.url).toBe(urlWithPassword().replace(URL_PASSWORD, '***'));
    await Promise.all([a.stop(), b.stop()]);
    for (const cli of [a, b]) expect(cli.stdout() + cli.stderr()).not.toContain(URL_PASSWORD);
  });

  it('exits 1 with one line naming the database (password masked) when PostgreSQL is not there', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await new Promise((resolve) => closed.once('listening', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const cli = startApi(['--store', `postgresql://sentinel:${URL_PASSWORD}@127.0.0.1:${port}/sentinel`], {}, 'down');
    const exit = await cli.exited();
    expect(exit.code).toBe(1);
    expect(cli.stderrLines()).toEqual([`sentinel api: cannot open database postgresql://sentinel:***@127.0.0.1:${port}/sentinel: connection refused`]);
    expect(cli.stdout() + cli.stderr()).not.toContain(URL_PASSWORD);
  });

  it('refuses a URL that is not postgres://', async () => {
    const cli = startApi(['--store', 'mysql://localhost/db'], {}, 'bad');
    expect((await cli.exited()).code).toBe(1);
    expect(cli.stderrLines()).toEqual(['sentinel api: the store URL must be a postgres:// or postgresql:// URL']);
  });
});
