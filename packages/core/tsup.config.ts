import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { defineConfig } from 'tsup';

/** The commit being built, for `GET /v1/version`; empty (reported as null) outside a git checkout. */
function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string };

export default defineConfig({
  // Named entries fix the dist paths the package.json exports (and the test fixtures) load:
  // src/store/postgres/index.ts → dist/postgres/index.js, whatever folder the sources sit in.
  entry: { index: 'src/index.ts', 'postgres/index': 'src/store/postgres/index.ts', 'redis/index': 'src/redis/index.ts' },
  format: ['esm'],
  target: 'node20',
  dts: true,
  sourcemap: true,
  clean: true,
  // Code splitting keeps `import('./redis/index.js')` (and postgres) a separate chunk, so ioredis
  // and pg load only when configured, and the entries share one copy of the core's modules.
  splitting: true,
  // Read by src/version.ts; from the sources (tests) it falls back to package.json and "unknown".
  define: { __SENTINEL_VERSION__: JSON.stringify(version), __SENTINEL_COMMIT__: JSON.stringify(gitCommit()) },
});
