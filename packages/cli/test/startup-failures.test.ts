/**
 * Start-up failures end fast and signals always end the process: the built binary as a child
 * process. `--data-dir /proc/…` used to spin at 100 % CPU in Node's recursive mkdir, and a
 * SIGTERM during a hanging start-up printed "shutting down" but did not exit.
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { cleanEnv, runCli, useCliScratch } from './spawn-cli.js';

const scratch = useCliScratch('sentinel-startup-');
const { servers, sockets } = scratch;

/** A TCP server that accepts connections and never says a word: a database that hangs. */
async function silentServer(): Promise<number> {
  const server = createServer((socket) => sockets.push(socket));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as { port: number }).port;
}

describe('sentinel api start-up failures', () => {
  it.each(['/proc/sentinel-x', '/proc/sentinel-x/deeper', '/sys/sentinel-x'])('--data-dir %s: one line, exit 1, at once', async (dataDir) => {
    const started = Date.now();
    const cli = runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir], cleanEnv(scratch.dir));
    const exit = await cli.exited(5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(exit.code).toBe(1);
    expect(cli.stderrLines()).toEqual([expect.stringMatching(new RegExp(`^sentinel api: cannot use data directory ${dataDir}: `))]);
    expect(cli.stderr()).not.toMatch(/\n\s+at /);
  });

  it('SIGTERM during a start-up that hangs (a database that never answers) exits within the grace period', async () => {
    const port = await silentServer();
    const cli = runCli(
      ['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(scratch.dir, 'data'), '--store', `postgres://sentinel@127.0.0.1:${port}/db`],
      cleanEnv(scratch.dir),
    );
    // The connection is open and hanging once the silent server has a socket.
    const deadline = Date.now() + 10_000;
    while (sockets.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(sockets.length).toBeGreaterThan(0);
    const signalled = Date.now();
    cli.child.kill('SIGTERM');
    const exit = await cli.exited(10_000);
    // The database's own connect timeout is 5 s; the process must not wait for it.
    expect(Date.now() - signalled).toBeLessThan(4_500);
    expect(exit.code).toBe(1);
    expect(cli.stderrLines()).toEqual(['sentinel api: shutting down (SIGTERM)', 'sentinel api: start-up did not finish within 3 s of SIGTERM, exiting']);
  });

  it('SIGTERM while serving exits 0, and the start-up line names the version', async () => {
    const cli = runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(scratch.dir, 'data')], cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: 'a-long-admin-password' }));
    const url = await cli.url();
    expect(cli.stdout()).toMatch(/^SentinelStacks API listening on http:\/\/127\.0\.0\.1:\d+ \(version \d+\.\d+\.\d+, commit ([0-9a-f]{12}|unknown)\), docs at http:\/\/127\.0\.0\.1:\d+\/docs(, console at http:\/\/127\.0\.0\.1:\d+\/console\/)?$/m);
    const res = await request(`${url}/v1/version`);
    expect(res.statusCode).toBe(200);
    const body = (await res.body.json()) as Record<string, unknown>;
    expect(body).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+/), api_version: 'v1', api_revision: expect.stringMatching(/^1\.\d+$/), commit: expect.anything(), node: process.version, store: 'sqlite', bus: 'local' });
    expect(body.commit === null || /^[0-9a-f]{40}$/.test(String(body.commit))).toBe(true);
    const exit = await cli.stop('SIGTERM');
    expect(exit.code).toBe(0);
  });
});
