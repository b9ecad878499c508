// Builds the console into dist/: index.html plus content-hashed assets/*.js|css. The page has no
// inline script or style and no external URL, so the server can send a strict CSP (script-src
// 'self'; style-src 'self') and the page talks only to the server it came from.
import { build } from 'esbuild';
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

// Relative asset URLs: the page works under /console/ (or any mount path) without a base URL.
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>SentinelStacks console</title>
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
