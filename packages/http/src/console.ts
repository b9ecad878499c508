/**
 * The web console under `/console`: the built single-page app of `@sentinel/console` (an
 * `index.html` and hashed assets under `assets/`), served from memory by this process. The
 * page talks to this origin only (REST and the WebSockets), so its CSP allows 'self' plus the
 * WebSocket URLs of the host the browser used, and nothing else.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { notFound, unavailable, type RequestOrigin } from '@sentinel/api-core';
import { ASSET_CACHE, assertReadMethod, contentTypeOf, PAGE_CACHE, sendStatic, staticResource, type StaticResource } from './static-files.js';

/** Where the console lives; everything under it is the console's. */
export const CONSOLE_PATH = '/console';
const ASSETS_PREFIX = `${CONSOLE_PATH}/assets/`;

/** Where the console's files come from: a directory holding `index.html` (and `assets/`). */
export interface ConsoleOptions {
  dir: string;
}

export interface ConsoleSite {
  /** The directory the files are read from. */
  readonly dir: string;
  /** True for `/console` and every path under it. */
  owns(path: string): boolean;
  /**
   * Answers a request for one of the console's paths (GET and HEAD): `/console/` is index.html,
   * `/console` a redirect to it, anything else a file of the directory or a 404. `origin` is how the
   * browser reached us: its host goes into the CSP's connect-src as ws:// and wss://. Throws a
   * SentinelError (404, 405, 503) for the listener to send in the api's error shape.
   */
  serve(res: ServerResponse, method: string, path: string, ifNoneMatch: string | undefined, origin: RequestOrigin): Promise<void>;
}

function hasIndex(dir: string): boolean {
  return existsSync(join(dir, 'index.html'));
}

/**
 * The installed console's files, or undefined when there are none. First `./console/` next to
 * this module: the CLI's bundle ships the console's dist there (the package itself is not
 * published). Then `@sentinel/console/dist` found the way Node would resolve the package from
 * here, without needing it to export anything.
 */
export function defaultConsoleDir(): string | undefined {
  const bundled = fileURLToPath(new URL('./console/', import.meta.url));
  if (hasIndex(bundled)) return bundled;
  const paths = createRequire(import.meta.url).resolve.paths('@sentinel/console') ?? [];
  for (const modules of paths) {
    const dist = join(modules, '@sentinel', 'console', 'dist');
    if (hasIndex(dist)) return dist;
  }
  return undefined;
}

/** The listener option resolved: the directory to serve, or undefined for no console. */
export function resolveConsoleDir(option: false | ConsoleOptions | undefined): string | undefined {
  if (option === false) return undefined;
  if (option === undefined) return defaultConsoleDir();
  return resolve(option.dir);
}

/** Host names and IP literals only (the origin's host is validated already; this keeps the header safe regardless). */
const SAFE_HOST = /^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/;

/**
 * The console's CSP for a request. Both WebSocket schemes of the host: behind a TLS-terminating
 * proxy that is not trusted the request looks like plain HTTP while the browser is on https.
 */
export function consoleCsp(origin: RequestOrigin): string {
  const ws = SAFE_HOST.test(origin.host) ? ` ws://${origin.host} wss://${origin.host}` : '';
  return `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'${ws}; base-uri 'none'; frame-ancestors 'none'; form-action 'self'`;
}

/** Every regular file under `dir`, as paths relative to it with `/` separators (symlinks are not followed). */
async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(join(dir, prefix), { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory()) return filesUnder(dir, relative);
      return entry.isFile() ? [relative] : [];
    }),
  );
  return nested.flat();
}

/**
 * Reads every file once into a map from URL path to resource. Only those paths are ever served:
 * a request cannot name a file outside the directory (`..`, encoded or not, is simply not a key).
 */
async function buildSite(dir: string): Promise<Map<string, StaticResource>> {
  if (!hasIndex(dir)) throw unavailable(`the web console is not built: ${join(dir, 'index.html')} is missing`);
  const site = new Map<string, StaticResource>();
  for (const file of await filesUnder(dir)) {
    const path = `${CONSOLE_PATH}/${file}`;
    // Vite puts content hashes in the names under assets/; anything else (index.html, public/ files) may change under the same name.
    const cacheControl = path.startsWith(ASSETS_PREFIX) ? ASSET_CACHE : PAGE_CACHE;
    // The CSP is per request (sendStatic gets it); the stored one is never sent.
    site.set(path, staticResource(await readFile(join(dir, file)), contentTypeOf(file), cacheControl, ''));
  }
  site.set(`${CONSOLE_PATH}/`, site.get(`${CONSOLE_PATH}/index.html`) as StaticResource);
  return site;
}

/** The console site for `dir`; its files are read on the first request, and again after a failed read. */
export function createConsoleSite(options: ConsoleOptions): ConsoleSite {
  const dir = resolve(options.dir);
  let site: Promise<Map<string, StaticResource>> | undefined;
  return {
    dir,
    owns(path) {
      return path === CONSOLE_PATH || path.startsWith(`${CONSOLE_PATH}/`);
    },
    async serve(res, method, path, ifNoneMatch, origin) {
      assertReadMethod(method, path);
      if (path === CONSOLE_PATH) {
        // The page names its assets relatively (`assets/app-….js`): from `/console` they would
        // resolve to `/assets/…`. Relative Location, so a host mounting us under a prefix keeps it.
        res.writeHead(301, { Location: 'console/', 'Content-Length': 0, 'Cache-Control': 'no-cache' });
        res.end();
        return;
      }
      site ??= buildSite(dir).catch((err: unknown) => {
        // A later request may find the files (the console built meanwhile): do not keep the failure.
        site = undefined;
        throw err;
      });
      const found = (await site).get(path);
      if (!found) throw notFound('console file', path);
      if (res.destroyed) return;
      sendStatic(res, found, { omitBody: method === 'HEAD', ifNoneMatch, csp: consoleCsp(origin) });
    },
  };
}
