/**
 * The web console's files over real sockets on every host, from a console directory made here
 * (so this runs whether or not @sentinel/console is built): `/console/` is index.html
 * (`/console` redirects there), `/console/assets/…` the hashed files; content types, nosniff, no referrer, the
 * strict CSP naming this host's WebSocket URLs, a year of immutable caching for assets and
 * `no-cache` for the page, HEAD, 304, 404s, no way out of the directory, `console: false`, and
 * the `/` redirect on the standalone server only. That the real app works is console-browser.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { HOST_ROUTE, HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { createFixtureApi } from './fixture-api.js';
import { connect, readResponse } from './raw-http.js';

const INDEX = '<!doctype html><html><head><link rel="stylesheet" href="/console/assets/index-3fa9c2d1.css"></head><body><div id="app"></div><script type="module" src="/console/assets/index-b81e0f4a.js"></script></body></html>\n';
const JS_ASSET = 'document.getElementById("app").textContent = "console";\n';
const CSS_ASSET = 'body { margin: 0; }\n';
const ICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"></svg>\n';

let root: string;
let consoleDir: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'sentinel-console-http-'));
  consoleDir = join(root, 'dist');
  mkdirSync(join(consoleDir, 'assets'), { recursive: true });
  writeFileSync(join(consoleDir, 'index.html'), INDEX);
  writeFileSync(join(consoleDir, 'assets', 'index-b81e0f4a.js'), JS_ASSET);
  writeFileSync(join(consoleDir, 'assets', 'index-3fa9c2d1.css'), CSS_ASSET);
  writeFileSync(join(consoleDir, 'favicon.svg'), ICON);
  // A file beside the console directory: what a traversal would try to reach.
  writeFileSync(join(root, 'secret.txt'), 'not for the browser\n');
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function expectedCsp(baseUrl: string): string {
  const host = new URL(baseUrl).host;
  return `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws://${host} wss://${host}; base-uri 'none'; frame-ancestors 'none'; form-action 'self'`;
}

/** One request written by hand: the path exactly as given (no client normalises `..` away), and any Host. */
async function raw(baseUrl: string, path: string, hostHeader = new URL(baseUrl).host) {
  const socket = await connect(baseUrl);
  try {
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`);
    return await readResponse(socket);
  } finally {
    socket.destroy();
  }
}

describe.each(HOSTS)('the web console on %s', (hostName) => {
  let host: MountedApi;

  beforeAll(async () => {
    host = await mountApi(hostName, createFixtureApi().api, { logRequests: false, console: { dir: consoleDir } });
  });
  afterAll(async () => {
    await host?.close();
  });

  async function get(path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' | 'POST' = 'GET') {
    const res = await request(`${host.baseUrl}${path}`, { method, headers });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  }

  it('serves index.html at /console/ without a token: HTML, no-cache, nosniff, no referrer, the strict CSP with this host\'s ws:/wss:', async () => {
    const res = await get('/console/');
    expect(res.status).toBe(200);
    expect(res.text).toBe(INDEX);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['content-security-policy']).toBe(expectedCsp(host.baseUrl));
    expect(res.headers['etag']).toMatch(/^"[\w-]{27}"$/);
  });

  it('redirects /console to /console/ (the page names its assets relative to it), GET and HEAD alike', async () => {
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await get('/console', {}, method);
      expect(res.status).toBe(301);
      expect(new URL(String(res.headers['location']), `${host.baseUrl}/console`).href).toBe(`${host.baseUrl}/console/`);
      expect(res.text).toBe('');
    }
  });

  it('serves the hashed assets with their content types and a year of immutable caching', async () => {
    const js = await get('/console/assets/index-b81e0f4a.js');
    expect(js.status).toBe(200);
    expect(js.text).toBe(JS_ASSET);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(js.headers['x-content-type-options']).toBe('nosniff');
    expect(js.headers['content-security-policy']).toBe(expectedCsp(host.baseUrl));
    const css = await get('/console/assets/index-3fa9c2d1.css');
    expect(css.status).toBe(200);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    // Outside assets/ a name carries no hash: revalidated like the page.
    const icon = await get('/console/favicon.svg');
    expect(icon.status).toBe(200);
    expect(icon.headers['content-type']).toBe('image/svg+xml');
    expect(icon.headers['cache-control']).toBe('no-cache');
  });

  it('answers HEAD with the same headers and no body, and If-None-Match with 304', async () => {
    const head = await get('/console/', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(INDEX)));
    expect(head.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(head.headers['content-security-policy']).toBe(expectedCsp(host.baseUrl));
    const first = await get('/console/assets/index-b81e0f4a.js');
    const again = await get('/console/assets/index-b81e0f4a.js', { 'if-none-match': String(first.headers['etag']) });
    expect(again.status).toBe(304);
    expect(again.text).toBe('');
  });

  it('answers unknown files with 404 not_found and other methods with 405', async () => {
    for (const path of ['/console/assets/index-00000000.js', '/console/nope.html', '/console/assets/', '/console/assets']) {
      const res = await get(path);
      expect(res.status, path).toBe(404);
      expect(JSON.parse(res.text)).toMatchObject({ code: 'not_found' });
    }
    const post = await get('/console/', {}, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers['allow']).toBe('GET, HEAD');
  });

  it('never serves a file outside the console directory, however the path is spelled', async () => {
    for (const path of [
      '/console/../secret.txt',
      '/console/assets/../../secret.txt',
      '/console/%2e%2e/secret.txt',
      '/console/assets/..%2f..%2fsecret.txt',
      '/console/..%5csecret.txt',
      '/console//etc/passwd',
      `/console/${encodeURIComponent(join(root, 'secret.txt'))}`,
    ]) {
      const res = await raw(host.baseUrl, path);
      expect(res.body, path).not.toContain('not for the browser');
      // Express and Fastify may normalise or refuse a path before us; the api itself says 404.
      expect([400, 404], path).toContain(res.status);
    }
  });

  it('keeps a Host header that is not a host name out of the CSP', async () => {
    const res = await raw(host.baseUrl, '/console/', "evil.example; script-src 'unsafe-inline' *");
    expect(res.status).toBe(200);
    expect(res.headers['content-security-policy']).not.toContain('evil');
    expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(res.headers['content-security-policy']).toMatch(/connect-src 'self'( ws:\/\/[\w.:[\]-]+ wss:\/\/[\w.:[\]-]+)?;/);
  });

  it(hostName === 'standalone' ? 'redirects GET and HEAD / to /console/ (302)' : 'leaves / to the host (no redirect when mounted)', async () => {
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await request(`${host.baseUrl}/`, { method });
      await res.body.text();
      if (hostName === 'standalone') {
        expect(res.statusCode).toBe(302);
        expect(res.headers['location']).toBe('/console/');
      } else {
        expect(res.statusCode).not.toBe(302);
        expect(res.headers['location']).toBeUndefined();
      }
    }
    // The host's own routes are untouched by the console.
    const own = await get(HOST_ROUTE);
    expect(own.status).toBe(host.hasOwnRoutes ? 200 : 404);
  });
});

describe.each(HOSTS)('console: false on %s', (hostName) => {
  let host: MountedApi;

  beforeAll(async () => {
    host = await mountApi(hostName, createFixtureApi().api, { logRequests: false, console: false });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('/console is not the api\'s and / is not redirected', async () => {
    for (const path of ['/console', '/console/', '/console/index.html', '/console/assets/index-b81e0f4a.js']) {
      const res = await request(`${host.baseUrl}${path}`);
      const text = await res.body.text();
      expect(res.statusCode, path).toBe(404);
      expect(text).not.toContain('<div id="app">');
    }
    const root = await request(`${host.baseUrl}/`);
    await root.body.text();
    expect(root.statusCode).toBe(404);
    expect(root.headers['location']).toBeUndefined();
  });
});

describe('a console directory without index.html', () => {
  let host: MountedApi;
  let empty: string;

  beforeAll(async () => {
    empty = mkdtempSync(join(tmpdir(), 'sentinel-console-empty-'));
    host = await mountApi('standalone', createFixtureApi().api, { logRequests: false, console: { dir: empty } });
  });
  afterAll(async () => {
    await host?.close();
    if (empty) rmSync(empty, { recursive: true, force: true });
  });

  it('answers 503 unavailable naming the missing file, and serves it once it is built', async () => {
    const missing = await request(`${host.baseUrl}/console/`);
    expect(missing.statusCode).toBe(503);
    expect(await missing.body.json()).toMatchObject({ code: 'unavailable', error: expect.stringContaining('index.html') });
    writeFileSync(join(empty, 'index.html'), INDEX);
    const built = await request(`${host.baseUrl}/console/`);
    expect(built.statusCode).toBe(200);
    expect(await built.body.text()).toBe(INDEX);
  });
});
