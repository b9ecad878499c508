import { cp } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
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
  // The web console is files, not code: its built dist goes to dist/console/, where the bundled
  // HTTP package looks first (next to itself), so the packed CLI serves it without the private
  // @sentinel/console package. A missing build fails here rather than shipping a CLI without it.
  async onSuccess() {
    const consoleDist = join(dirname(createRequire(import.meta.url).resolve('@sentinel/console/package.json')), 'dist');
    await cp(consoleDist, 'dist/console', { recursive: true, errorOnExist: false }).catch((err: unknown) => {
      throw new Error(`cannot copy the web console (${consoleDist}) into dist/console: build @sentinel/console first`, { cause: err });
    });
  },
});
