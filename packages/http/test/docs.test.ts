/**
 * The docs site over real sockets on every host: `/docs`, `/docs/asyncapi`, `/docs/errors` and
 * their assets, without a token; content types, nosniff, a CSP of 'self', long caching for the
 * hashed assets, HEAD, 304, no external URL anywhere in what is served, and `docs: false`.
 * That the pages render in a browser is docs-browser.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ERROR_CATALOGUE, ERROR_CODES, errorDocsUrl } from '@sentinel/api-core';
import { HOST_ROUTE, HOSTS, mountApi, type MountedApi } from '@sentinel/test-support/hosts';
import { createFixtureApi } from './fixture-api.js';
import { escapeHtml, inlineMarkdown } from '../src/docs.js';

/** Every URL a page or asset names that is not on this origin: http(s), protocol-relative, ws(s). */
function externalUrls(text: string): string[] {
  // The SVG/MathML/XLink namespace names are identifiers in markup, never fetched.
  const namespaces = /^http:\/\/www\.w3\.org\//;
  return [...text.matchAll(/(?:https?:|wss?:)\/\/[^\s"'`)<>]+/g)].map((m) => m[0]).filter((url) => !namespaces.test(url));
}

describe.each(HOSTS)('the docs site on %s', (hostName) => {
  let host: MountedApi;

  beforeAll(async () => {
    host = await mountApi(hostName, createFixtureApi().api, { logRequests: false });
  });
  afterAll(async () => {
    await host?.close();
  });

  async function get(path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' | 'POST' = 'GET') {
    const res = await request(`${host.baseUrl}${path}`, { method, headers });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, text };
  }

  /** The asset URLs a page names in src= and href=. */
  const assetsOf = (html: string) => [...html.matchAll(/(?:src|href)="(\/docs\/assets\/[^"]+)"/g)].map((m) => m[1] as string);

  it('serves /docs without a token: HTML with nosniff, a self-only CSP and no inline script', async () => {
    const res = await get('/docs');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(csp).not.toMatch(/https?:/);
    expect(res.headers['cache-control']).toBe('no-cache');
    // Every <script> has a src: the configuration rides in a data attribute.
    expect([...res.text.matchAll(/<script(?![^>]*\bsrc=)[^>]*>/g)]).toEqual([]);
    expect(res.text).toContain('data-configuration=');
    expect(res.text).toContain('&quot;withDefaultFonts&quot;:false');
    expect(externalUrls(res.text)).toEqual([]);
  });

  it('serves every asset a page names with its content type, nosniff and a year of immutable caching', async () => {
    const pages = await Promise.all(['/docs', '/docs/asyncapi', '/docs/errors'].map((path) => get(path)));
    const assets = [...new Set(pages.flatMap((page) => assetsOf(page.text)))];
    expect(assets.some((a) => /\/docs\/assets\/scalar-api-reference-[0-9a-f]{12}\.js$/.test(a))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);
    for (const asset of assets) {
      const res = await get(asset);
      expect(res.status, asset).toBe(200);
      expect(res.headers['content-type'], asset).toBe(asset.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
    }
  });

  it('names no external URL the renderer would load: no font CDN, no proxy in our assets', async () => {
    const docs = await get('/docs');
    const [, init] = assetsOf(docs.text).filter((a) => a.endsWith('.js'));
    const initScript = await get(init as string);
    expect(externalUrls(initScript.text)).toEqual([]);
    const asyncapi = await get('/docs/asyncapi');
    for (const asset of assetsOf(asyncapi.text)) expect(externalUrls((await get(asset)).text), asset).toEqual([]);
  });

  it('renders /docs/errors from the catalogue: one anchored section per code, escaped, `code` spans as <code>', async () => {
    const res = await get('/docs/errors');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(res.text).not.toContain('<script');
    for (const code of ERROR_CODES) {
      expect(res.text, code).toContain(`<section class="error" id="${code}">`);
      expect(res.text).toContain(escapeHtml(ERROR_CATALOGUE[code].title));
      expect(res.text).toContain(inlineMarkdown(ERROR_CATALOGUE[code].remedy));
    }
    expect(res.text).toContain('<code>WWW-Authenticate: Bearer</code>');
    // What error bodies' `docs` fields point at is exactly this page and anchor.
    const [path, anchor] = errorDocsUrl('not_found').split('#');
    expect(path).toBe('/docs/errors');
    expect(res.text).toContain(`id="${anchor as string}"`);
    expect(res.text).not.toContain('`');
  });

  it('answers HEAD with the headers and no body, and If-None-Match with 304', async () => {
    const full = await get('/docs/errors');
    const head = await get('/docs/errors', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(full.text)));
    const again = await get('/docs/errors', { 'if-none-match': String(full.headers.etag) });
    expect(again.status).toBe(304);
    expect(again.text).toBe('');
  });

  it('refuses other methods with 405 and Allow, and unknown docs paths with 404, in the error shape', async () => {
    const post = await get('/docs', {}, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(JSON.parse(post.text)).toMatchObject({ code: 'method_not_allowed' });
    const missing = await get('/docs/assets/nothing-000000000000.js');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.text)).toMatchObject({ code: 'not_found' });
  });

  it('with docs: false, /docs is not the api\'s: the host keeps its own routes, the api 404s', async () => {
    const off = await mountApi(hostName, createFixtureApi().api, { logRequests: false, docs: false });
    try {
      const res = await request(`${off.baseUrl}/docs`);
      await res.body.text();
      expect(res.statusCode).toBe(404);
      const own = await request(`${off.baseUrl}${HOST_ROUTE}`);
      await own.body.text();
      expect(own.statusCode).toBe(off.hasOwnRoutes ? 200 : 404);
    } finally {
      await off.close();
    }
  });
});
