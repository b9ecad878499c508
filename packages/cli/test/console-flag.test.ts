/**
 * `sentinel api` serves the web console it ships (dist/console, copied there by the build) at
 * `/console/` and sends `/` there; `--no-console` (or SENTINEL_CONSOLE=false) turns both off
 * while the API and its docs stay. The spawned built binary, so the bundled lookup is what runs.
 */
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const scratch = useCliScratch('sentinel-cli-console-');

function startApi(args: string[], env: Record<string, string> = {}): CliProcess {
  return runCli(['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(scratch.dir, 'data'), ...args], cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: 'console-flag-password', ...env }));
}

async function fetchStatus(url: string): Promise<{ status: number; location: string | undefined; type: string | undefined; text: string }> {
  const res = await request(url);
  const text = await res.body.text();
  const location = res.headers['location'];
  const type = res.headers['content-type'];
  return { status: res.statusCode, location: typeof location === 'string' ? location : undefined, type: typeof type === 'string' ? type : undefined, text };
}

describe('sentinel api and the web console', () => {
  it('serves the console by default, names it on the start-up line and redirects / to it', async () => {
    const cli = startApi([]);
    const url = await cli.url();
    expect(cli.stdout()).toContain(`, console at ${url}/console/\n`);
    const root = await fetchStatus(`${url}/`);
    expect(root.status).toBe(302);
    expect(root.location).toBe('/console/');
    const page = await fetchStatus(`${url}/console/`);
    expect(page.status).toBe(200);
    expect(page.type).toBe('text/html; charset=utf-8');
    expect(page.text).toMatch(/<script type="module" src="assets\/[\w-]+\.js"><\/script>/);
  });

  it.each([
    ['--no-console', ['--no-console'], {}],
    ['SENTINEL_CONSOLE=false', [], { SENTINEL_CONSOLE: 'false' }],
  ])('%s: no /console, no redirect of /, no console on the start-up line; the API and /docs stay', async (_label, args, env) => {
    const cli = startApi(args, env);
    const url = await cli.url();
    expect(cli.stdout()).not.toContain('console at');
    for (const path of ['/console', '/console/', '/']) {
      const res = await fetchStatus(`${url}${path}`);
      expect(res.status, path).toBe(404);
      expect(res.location, path).toBeUndefined();
    }
    expect((await fetchStatus(`${url}/v1/health`)).status).toBe(200);
    expect((await fetchStatus(`${url}/docs/errors`)).status).toBe(200);
  });
});
