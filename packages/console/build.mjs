// Builds the console into dist/: index.html plus content-hashed assets/*.js|css. The page has no
// inline script or style and no external URL, so the server can send a strict CSP (script-src
// 'self'; style-src 'self') and the page talks only to the server it came from.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
// `node build.mjs --outdir <dir>` builds elsewhere (the size test does, leaving dist/ alone).
const flag = process.argv.indexOf('--outdir');
const dist = flag === -1 ? join(root, 'dist') : resolve(process.argv[flag + 1] ?? 'dist');
await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: { app: 'src/main.tsx' },
  bundle: true,
  format: 'esm',
  splitting: false,
  minify: true,
  sourcemap: false,
  target: ['es2022'],
  platform: 'browser',
  // The SDK's browser entry from its sources (as the repo's tests do), so no client build is needed first.
  conditions: ['sentinel-source', 'browser'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: join(dist, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

let js = '';
let css = '';
for (const file of Object.keys(result.metafile.outputs)) {
  if (file.endsWith('.js')) js = basename(file);
  else if (file.endsWith('.css')) css = basename(file);
}
if (!js || !css) throw new Error(`esbuild wrote no ${js ? 'css' : 'js'} bundle`);

// A small icon of our own: without one the browser asks for /favicon.ico, a 404 in its console.
const icon = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1f5fbf"/><path d="M4 11.5c1 .8 2.2 1 3.6 1 2 0 3.4-1 3.4-2.6 0-3.3-6-2-6-4.6 0-1 .9-1.6 2.3-1.6 1 0 2 .3 2.7.8" stroke="#fff" stroke-width="1.6" fill="none"/></svg>\n';
const iconName = `icon-${createHash('sha256').update(icon).digest('hex').slice(0, 8).toUpperCase()}.svg`;
await writeFile(join(dist, 'assets', iconName), icon);

// Relative asset URLs: the page works under /console/ (or any mount path) without a base URL.
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>SentinelStacks console</title>
<link rel="icon" href="assets/${iconName}" type="image/svg+xml">
<link rel="stylesheet" href="assets/${css}">
<script type="module" src="assets/${js}"></script>
</head>
<body>
<div id="app"><noscript>The SentinelStacks console needs JavaScript.</noscript></div>
</body>
</html>
`;
await writeFile(join(dist, 'index.html'), html);
console.log(`console: ${dist}/index.html, assets/${js}, assets/${css}`);
