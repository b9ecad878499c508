// Lint, and the package boundaries of docs/ARCHITECTURE.md#packages-and-their-arrows as lint errors: core imports no
// transport, http and ws never import each other, nobody reaches into another package's src or tests
// (shared test helpers live in packages/test-support, which no package's src may import).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const deepImports = { group: ['@sentinel/*/src/*', '@sentinel/*/dist/*', '../../*/src/*'], message: 'Import another package through its public entry.' };
const otherTests = { group: ['../../*/test/*', '../../../*/test/*'], message: "Share test helpers through @sentinel/test-support, not another package's test directory." };
const testSupport = { group: ['@sentinel/test-support', '@sentinel/test-support/*'], message: 'test support is for tests; src never imports it.' };

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', queueMicrotask: 'readonly', URL: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      'no-restricted-imports': ['error', { patterns: [deepImports, otherTests] }],
    },
  },
  {
    files: ['packages/core/src/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['node:http', 'node:https', 'http', 'https', 'ws', 'express', 'fastify', '@sentinel/api-http', '@sentinel/api-ws', '@sentinel/cli'].map((name) => ({ name, message: 'core is transport-free (docs/ARCHITECTURE.md#packages-and-their-arrows).' })),
        patterns: [deepImports, otherTests, testSupport],
      }],
    },
  },
  {
    files: ['packages/http/src/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['ws', '@sentinel/api-ws', '@sentinel/cli'].map((name) => ({ name, message: 'http never imports the ws transport or the cli (docs/ARCHITECTURE.md#packages-and-their-arrows).' })),
        patterns: [deepImports, otherTests, testSupport],
      }],
    },
  },
  {
    files: ['packages/cli/src/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [deepImports, otherTests, testSupport] }] },
  },
  {
    // The SDK runs in browsers: no node: module, no other package at run time (types only), and
    // `ws` only in the Node entry.
    files: ['packages/client/src/**'],
    ignores: ['packages/client/src/node.ts'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': ['error', {
        paths: ['ws'].map((name) => ({ name, message: 'ws is for the Node entry (src/node.ts) only.' })),
        patterns: [
          { group: ['node:*'], message: 'the SDK runs in browsers: no node: modules.' },
          { group: ['@sentinel/*'], allowTypeImports: true, message: 'the SDK depends on no other package at run time: import types only.' },
          deepImports, otherTests, testSupport,
        ],
      }],
    },
  },
  {
    files: ['packages/ws/src/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['@sentinel/api-http', '@sentinel/cli'].map((name) => ({ name, message: 'ws never imports the http transport or the cli (docs/ARCHITECTURE.md#packages-and-their-arrows).' })),
        patterns: [deepImports, otherTests, testSupport],
      }],
    },
  },
);
