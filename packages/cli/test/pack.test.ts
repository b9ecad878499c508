/**
 * `pnpm pack` of @sentinel/cli makes a tarball that installs and runs outside the monorepo:
 * the workspace packages are bundled into dist, their third-party dependencies are the CLI's.
 * The test packs it, `npm install`s the tarball into an empty directory (from the npm cache
 * when it can), runs `sentinel --version` from node_modules/.bin and starts a real server from
 * it. Install scripts are skipped (no native build of better-sqlite3 in a test), so the server
 * runs on a fresh PostgreSQL database, which needs no native code.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { assertBuilt, killAll } from './spawn-cli.js';

const run = promisify(execFile);
const CLI_DIR = fileURLToPath(new URL('..', import.meta.url));
const PKG = JSON.parse(readFileSync(join(CLI_DIR, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };

let tmp: string;
let installDir: string;
let db: TestDatabase;

beforeAll(async () => {
  assertBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'sentinel-pack-'));
  installDir = join(tmp, 'app');
  db = await createTestDatabase();
}, 60_000);

afterAll(async () => {
  await killAll();
  await db?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

/** What the CLI's own code imports (the client commands' parser and progress bars), beside what it bundles. */
// The OpenTelemetry Node SDK: loaded by `sentinel api` only when an OTLP endpoint is configured.
const CLI_OWN_DEPENDENCIES: Record<string, string> = { commander: '14.0.3', 'cli-progress': '3.12.0', '@opentelemetry/sdk-node': '0.223.0' };

/**
 * Third-party dependencies of the bundled workspace packages, as their package.json files pin
 * them (the SDK's optional `ws` peer is the WebSocket the CLI uses), plus the CLI's own.
 */
function bundledDependencies(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['core', 'http', 'ws', 'client']) {
    const pkg = JSON.parse(readFileSync(join(CLI_DIR, '..', name, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; peerDependencies?: Record<string, string> };
    for (const [dep, version] of Object.entries(pkg.dependencies ?? {})) if (!dep.startsWith('@sentinel/')) out[dep] = version;
    for (const dep of Object.keys(pkg.peerDependencies ?? {})) if (out[dep] === undefined) throw new Error(`${name}'s peer ${dep} is not a dependency of a bundled package`);
  }
  return { ...out, ...CLI_OWN_DEPENDENCIES };
}

describe('the packed @sentinel/cli', () => {
  it('declares every third-party dependency of what it bundles, at the same version', () => {
    expect(PKG.dependencies).toEqual(bundledDependencies());
  });

  it('installs from its tarball alone and runs: --version, and a server from node_modules/.bin', async () => {
    await run('npx', ['-y', 'pnpm@10.34.9', 'pack', '--pack-destination', tmp], { cwd: CLI_DIR, timeout: 120_000 });
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    expect(tarball).toBe(`sentinel-cli-${PKG.version}.tgz`);
    const { stdout: listing } = await run('tar', ['-tzf', join(tmp, tarball as string)]);
    expect(listing.split('\n')).toEqual(expect.arrayContaining(['package/package.json', 'package/dist/bin.js', 'package/dist/console/index.html']));
    const { stdout: packedJson } = await run('tar', ['-xzOf', join(tmp, tarball as string), 'package/package.json']);
    const packed = JSON.parse(packedJson) as { dependencies: Record<string, string> };
    // Nothing the registry cannot resolve: no workspace: protocol, no unpublished @sentinel/* package.
    expect(Object.keys(packed.dependencies).filter((dep) => dep.startsWith('@sentinel/'))).toEqual([]);
    expect(JSON.stringify(packed.dependencies)).not.toContain('workspace:');

    mkdirSync(installDir);
    writeFileSync(join(installDir, 'package.json'), JSON.stringify({ name: 'pack-test', private: true }));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', join(tmp, tarball as string)], {
      cwd: installDir,
      timeout: 240_000,
    });

    const bin = join(installDir, 'node_modules', '.bin', 'sentinel');
    const { stdout: version } = await run(bin, ['--version'], { cwd: installDir });
    expect(version).toMatch(new RegExp(`^sentinel ${PKG.version.replace(/\./g, '\\.')} \\(commit ([0-9a-f]{12}|unknown), node v`));

    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: tmp, SENTINEL_ADMIN_PASSWORD: 'packed-admin-password' };
    const child = spawn(bin, ['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', join(tmp, 'data'), '--store', db.url], { cwd: installDir, env });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "listening on" line; stderr: ${err}`)), 30_000);
        child.stdout.on('data', () => {
          const match = /SentinelStacks API listening on (\S+)/.exec(out);
          if (match) {
            clearTimeout(timer);
            resolve(match[1] as string);
          }
        });
        child.on('close', () => reject(new Error(`exited early; stderr: ${err}`)));
      });
      const res = await request(`${url}/v1/version`);
      expect(res.statusCode).toBe(200);
      const body = (await res.body.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ version: PKG.version, api_version: 'v1', node: process.version, store: 'postgres', bus: 'local' });
      // The docs page and its renderer, resolved from the installed package by the bundled http code.
      const docs = await request(`${url}/docs`);
      expect(docs.statusCode).toBe(200);
      const html = await docs.body.text();
      const renderer = /src="(\/docs\/assets\/scalar-api-reference-[0-9a-f]{12}\.js)"/.exec(html)?.[1];
      expect(renderer).toBeDefined();
      const asset = await request(`${url}${renderer as string}`);
      expect(asset.statusCode).toBe(200);
      expect(asset.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect((await asset.body.arrayBuffer()).byteLength).toBeGreaterThan(1_000_000);
      // The web console, shipped in dist/console/ and found there by the bundled http code; / leads to it.
      expect(out).toContain(`console at ${url}/console/`);
      const root = await request(`${url}/`);
      await root.body.text();
      expect(root.statusCode).toBe(302);
      expect(root.headers['location']).toBe('/console/');
      const consolePage = await request(`${url}/console/`);
      expect(consolePage.statusCode).toBe(200);
      const consoleHtml = await consolePage.body.text();
      const script = /src="(assets\/[^"]+\.js)"/.exec(consoleHtml)?.[1];
      expect(script).toBeDefined();
      const consoleScript = await request(`${url}/console/${script as string}`);
      expect(consoleScript.statusCode).toBe(200);
      expect(consoleScript.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect(consoleScript.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      await consoleScript.body.text();
      // The client commands run from the tarball too (commander, cli-progress and the bundled SDK).
      const login = await request(`${url}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'packed-admin-password' }) });
      const { token } = (await login.body.json()) as { token: string };
      const { stdout: images } = await run(bin, ['images', '--format', 'json'], { cwd: installDir, env: { ...env, SENTINEL_HOST: url, SENTINEL_TOKEN: token } });
      expect((JSON.parse(images) as { name: string }[]).map((image) => image.name)).toContain('sentinel/echo');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 300_000);
});
