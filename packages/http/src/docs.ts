/**
 * The docs site under `/docs`: the interactive API reference (Scalar, rendering
 * `GET /v1/openapi.json`), the WebSocket reference (rendering `GET /v1/asyncapi.json`) and the
 * error catalogue page. Everything is served from this process, the renderer from its installed
 * npm package: a docs page that reaches a CDN breaks offline and leaks who reads it, so the pages
 * name no external URL and their CSP allows only 'self'.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import {
  ERROR_CATALOGUE,
  ERROR_CODES,
  ERROR_DOCS_PATH,
  httpStatusForErrorCode,
  notFound,
  unavailable,
} from '@sentinel/api-core';
import { ASYNCAPI_JS, DOCS_CSS, SCALAR_INIT_JS } from './docs-assets.js';
import {
  ASSET_CACHE,
  assertReadMethod,
  CSS,
  HTML,
  JS,
  PAGE_CACHE,
  sendStatic,
  shortHash,
  staticResource as resource,
  type StaticResource as Resource,
} from './static-files.js';

/** Where the docs live; everything under it is the docs site's. */
export const DOCS_PATH = '/docs';
const ASSETS_PATH = `${DOCS_PATH}/assets/`;
const ASYNCAPI_PAGE_PATH = `${DOCS_PATH}/asyncapi`;
const OPENAPI_URL = '/v1/openapi.json';
const ASYNCAPI_URL = '/v1/asyncapi.json';

/**
 * Scalar injects `<style>` elements and style attributes at run time, hence 'unsafe-inline'
 * for styles only; scripts are files from 'self'. Its "try it" client calls this origin
 * (connect-src 'self'); no proxy is configured, so nothing goes elsewhere.
 */
const RENDERER_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";
/** Our own pages need less: our stylesheet, our script, fetches to this origin. */
const PLAIN_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/**
 * Scalar's options. No default fonts (they come from Scalar's font CDN), no telemetry, no AI
 * agent (it talks to Scalar's servers), no developer toolbar; no `proxyUrl`, so "try it"
 * requests go straight to this server.
 */
const SCALAR_CONFIGURATION = {
  url: OPENAPI_URL,
  withDefaultFonts: false,
  telemetry: false,
  agent: { disabled: true },
  showDeveloperTools: 'never',
  documentDownloadType: 'json',
};

export interface DocsSite {
  /** True for `/docs` and every path under it. */
  owns(path: string): boolean;
  /**
   * Answers a request for one of the site's paths. GET and HEAD only; `ifNoneMatch` is the
   * request's header (a 304 when it matches). Throws a SentinelError (404, 405, 503) for the
   * listener to send in the api's error shape.
   */
  serve(res: ServerResponse, method: string, path: string, ifNoneMatch: string | undefined): Promise<void>;
}

/** Escapes text for HTML content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** The catalogue's inline Markdown, rendered as far as it uses it: `code` spans, the rest as text. */
export function inlineMarkdown(text: string): string {
  return escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>');
}

function page(options: { title: string; current: 'openapi' | 'asyncapi' | 'errors'; css: string; body: string; scripts: readonly string[] }): string {
  const link = (href: string, label: string, key: string) =>
    `<a href="${href}"${options.current === key ? ' aria-current="page"' : ''}>${label}</a>`;
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    `<title>${escapeHtml(options.title)}</title>`,
    // No favicon request (a 404 in every browser console): an empty icon from a data: URL.
    '<link rel="icon" href="data:,">',
    `<link rel="stylesheet" href="${options.css}">`,
    '</head>',
    options.current === 'openapi' ? '<body>' : '<body class="docs-plain">',
    '<nav class="docs-nav" aria-label="API documentation">',
    link(DOCS_PATH, 'REST API (OpenAPI)', 'openapi'),
    link(ASYNCAPI_PAGE_PATH, 'WebSocket API (AsyncAPI)', 'asyncapi'),
    link(ERROR_DOCS_PATH, 'Error codes', 'errors'),
    `<a href="${OPENAPI_URL}">openapi.json</a>`,
    `<a href="${ASYNCAPI_URL}">asyncapi.json</a>`,
    '</nav>',
    options.body,
    ...options.scripts.map((src) => `<script src="${src}"></script>`),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** The catalogue page: one section per code, `id="<code>"`, so `docs` fields can point at it. */
export function renderErrorsPage(css: string): string {
  // In the order of the one code list, whatever order the catalogue's keys are in.
  const sections = ERROR_CODES.map((code) => ({ code, entry: ERROR_CATALOGUE[code] })).map(({ code, entry }) => [
    `<section class="error" id="${escapeHtml(code)}">`,
    `<h2>${escapeHtml(entry.title)} <code>${escapeHtml(code)}</code><a class="anchor" href="#${escapeHtml(code)}" aria-label="Link to ${escapeHtml(code)}">#</a></h2>`,
    `<p class="meta">HTTP status ${httpStatusForErrorCode(code)}</p>`,
    `<p>${inlineMarkdown(entry.meaning)}</p>`,
    '<h3>Typical causes</h3>',
    '<ul>',
    ...entry.causes.map((cause) => `<li>${inlineMarkdown(cause)}</li>`),
    '</ul>',
    '<h3>What to do</h3>',
    `<p>${inlineMarkdown(entry.remedy)}</p>`,
    '</section>',
  ].join('\n'));
  const body = [
    '<main>',
    '<h1>Error codes</h1>',
    '<p class="description">Every error response is <code>{"error": "&lt;message&gt;", "code": "&lt;code&gt;"}</code>; WebSocket <code>error</code> frames carry the same codes. One section per code below.</p>',
    ...sections,
    '</main>',
  ].join('\n');
  return page({ title: 'Error codes · SentinelStacks API', current: 'errors', css, body, scripts: [] });
}

/** Reads the renderer and builds every page and asset once; the hashes in the pages depend on the bytes. */
async function buildSite(): Promise<Map<string, Resource>> {
  let scalarFile: string;
  try {
    // From this module's location, so it works from the sources, the built dist and the CLI bundle alike.
    scalarFile = createRequire(import.meta.url).resolve('@scalar/api-reference/browser/standalone.js');
  } catch (err) {
    throw unavailable('the API reference renderer (@scalar/api-reference) is not installed', { cause: err });
  }
  const scalar = await readFile(scalarFile);
  const site = new Map<string, Resource>();
  const asset = (name: string, bytes: Buffer, type: string): string => {
    const dot = name.lastIndexOf('.');
    const path = `${ASSETS_PATH}${name.slice(0, dot)}-${shortHash(bytes)}${name.slice(dot)}`;
    site.set(path, resource(bytes, type, ASSET_CACHE, PLAIN_CSP));
    return path;
  };
  const scalarPath = asset('scalar-api-reference.js', scalar, JS);
  const initPath = asset('scalar-init.js', Buffer.from(SCALAR_INIT_JS), JS);
  const asyncapiPath = asset('asyncapi.js', Buffer.from(ASYNCAPI_JS), JS);
  const cssPath = asset('docs.css', Buffer.from(DOCS_CSS), CSS);

  const configuration = escapeHtml(JSON.stringify(SCALAR_CONFIGURATION));
  const openapiPage = page({
    title: 'API reference · SentinelStacks',
    current: 'openapi',
    css: cssPath,
    body: `<div id="api-reference-root" data-configuration="${configuration}"></div>`,
    scripts: [scalarPath, initPath],
  });
  const asyncapiPage = page({
    title: 'WebSocket API · SentinelStacks',
    current: 'asyncapi',
    css: cssPath,
    body: `<main id="asyncapi-root" data-document="${ASYNCAPI_URL}"><p>Loading ${ASYNCAPI_URL}…</p></main>`,
    scripts: [asyncapiPath],
  });
  const openapi = resource(Buffer.from(openapiPage), HTML, PAGE_CACHE, RENDERER_CSP);
  site.set(DOCS_PATH, openapi);
  site.set(`${DOCS_PATH}/`, openapi);
  site.set(ASYNCAPI_PAGE_PATH, resource(Buffer.from(asyncapiPage), HTML, PAGE_CACHE, PLAIN_CSP));
  site.set(ERROR_DOCS_PATH, resource(Buffer.from(renderErrorsPage(cssPath)), HTML, PAGE_CACHE, PLAIN_CSP));
  return site;
}

/** The docs site; the renderer is read on the first request, not at start-up (3.5 MB most servers never send). */
export function createDocsSite(): DocsSite {
  let site: Promise<Map<string, Resource>> | undefined;
  return {
    owns(path) {
      return path === DOCS_PATH || path.startsWith(`${DOCS_PATH}/`);
    },
    async serve(res, method, path, ifNoneMatch) {
      assertReadMethod(method, path);
      site ??= buildSite().catch((err: unknown) => {
        // A later request may find the package (e.g. installed meanwhile): do not keep the failure.
        site = undefined;
        throw err;
      });
      const found = (await site).get(path);
      if (!found) throw notFound('docs page', path);
      if (res.destroyed) return;
      sendStatic(res, found, { omitBody: method === 'HEAD', ifNoneMatch });
    },
  };
}
