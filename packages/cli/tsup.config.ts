import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ["src/index.ts", "src/bin.ts"],
  format: ['esm'],
  target: 'node20',
  dts: true,
  sourcemap: true,
  clean: true,
  splitting: false,
  // The workspace packages are bundled into dist (their third-party dependencies are the CLI's
  // own dependencies), so a packed @sentinel/cli installs and runs outside this monorepo.
  noExternal: [/^@sentinel\//],
});
