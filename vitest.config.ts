import { defineConfig } from 'vitest/config';

// Tests run against the packages' sources: the `sentinel-source` export condition maps
// `@sentinel/*` imports to `src/index.ts`. CLI tests spawn the built binary instead.
export default defineConfig({
  resolve: { conditions: ['sentinel-source'] },
  ssr: { resolve: { conditions: ['sentinel-source'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    pool: 'forks',
    setupFiles: [
      // Every frame a spec's WebSocket client receives must be one the AsyncAPI document describes.
      'packages/test-support/src/frame-watch-setup.ts',
      // Every REST response the specs see is checked against the server's OpenAPI document.
      'packages/test-support/src/contract-setup.ts',
    ],
    globalSetup: ['packages/test-support/src/contract-global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
  },
});
