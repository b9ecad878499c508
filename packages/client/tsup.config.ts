import { defineConfig } from 'tsup';

// Two entries: `index` for browsers (no node: imports, global fetch and WebSocket) and `node`,
// the same client with `ws` as its WebSocket when the runtime has none (Node 20).
export default defineConfig({
  entry: ['src/index.ts', 'src/node.ts'],
  format: ['esm'],
  target: 'es2022',
  platform: 'neutral',
  external: ['ws'],
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: true,
});
