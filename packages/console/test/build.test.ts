/**
 * The built console as the server will serve it: `node build.mjs` (the package's build) writes
 * index.html and content-hashed assets; the page must pass a strict CSP (no inline script, no
 * inline style or event-handler attribute), request nothing from another origin, and stay under
 * the first-load budget of 150 KB of JavaScript gzipped.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUDGET = 150 * 1024;

let out = '';
let html = '';
let assets: string[] = [];

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'sentinel-console-'));
  await run(process.execPath, [join(pkg, 'build.mjs'), '--outdir', out], { cwd: pkg });
  html = await readFile(join(out, 'index.html'), 'utf8');
  assets = await readdir(join(out, 'assets'));
}, 60_000);

afterAll(async () => {
  if (out) await rm(out, { recursive: true, force: true });
});

/** The src/href values of the page's tags. */
function references(page: string): string[] {
  return [...page.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1] ?? '');
}

describe('the console build', () => {
  it('writes index.html and content-hashed JS and CSS that the page references relatively', () => {
    const js = assets.filter((f) => f.endsWith('.js'));
    const css = assets.filter((f) => f.endsWith('.css'));
    const icon = assets.filter((f) => f.endsWith('.svg'));
    expect(js).toHaveLength(1);
    expect(css).toHaveLength(1);
    expect(icon).toHaveLength(1);
    for (const file of [...js, ...css]) expect(file).toMatch(/^app-[A-Z0-9]{8}\.(js|css)$/);
    expect(icon[0]).toMatch(/^icon-[A-F0-9]{8}\.svg$/);
    expect(assets).toHaveLength(3);
    expect(references(html).sort()).toEqual([`assets/${css[0]}`, `assets/${icon[0]}`, `assets/${js[0]}`].sort());
  });

  it('has no inline script, inline style or event-handler attribute (a strict CSP allows the page)', () => {
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/\ssrc="assets\//);
      expect(body?.trim()).toBe('');
    }
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
  });

  it('names no external URL: the page, its CSS and its JS reach only the server they came from', async () => {
    for (const ref of references(html)) expect(ref).not.toMatch(/^(?:[a-z]+:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//i);
    const css = await readFile(join(out, 'assets', assets.find((f) => f.endsWith('.css')) ?? ''), 'utf8');
    expect(css).not.toMatch(/@import|url\(|https?:\/\//i);
    const js = await readFile(join(out, 'assets', assets.find((f) => f.endsWith('.js')) ?? ''), 'utf8');
    // Preact names the XML namespaces (SVG, MathML, XHTML) as strings; they are identifiers, never fetched.
    const namespaces = new Set(['http://www.w3.org/2000/svg', 'http://www.w3.org/1998/Math/MathML', 'http://www.w3.org/1999/xhtml']);
    const urls = [...js.matchAll(/(?:https?|wss?):\/\/[^"'`\s)]*/gi)].map((m) => m[0]);
    expect(urls.filter((u) => !namespaces.has(u))).toEqual([]);
  });

  it('loads under 150 KB of JavaScript gzipped', async () => {
    let gzipped = 0;
    for (const file of assets.filter((f) => f.endsWith('.js'))) gzipped += gzipSync(await readFile(join(out, 'assets', file))).length;
    console.log(`console first-load JavaScript: ${gzipped} bytes gzipped (budget ${BUDGET})`);
    expect(gzipped).toBeGreaterThan(1000);
    expect(gzipped).toBeLessThan(BUDGET);
  });
});
