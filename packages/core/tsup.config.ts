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
  // Sub-path entries land beside the main one: src/postgres/index.ts → dist/postgres/index.js.
  entry: ["src/index.ts", "src/postgres/index.ts", "src/redis/index.ts"],
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
