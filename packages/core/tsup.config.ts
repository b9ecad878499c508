import { defineConfig } from 'tsup';

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
});
