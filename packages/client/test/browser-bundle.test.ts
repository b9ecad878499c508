/**
 * The browser entry really is one: src/index.ts bundled by esbuild for `platform: 'browser'`
 * holds no `node:` import and no `require()` of a Node built-in, resolves without any Node
 * module, and stays small. The bundle is then loaded as a module and run against a real server
 * with only what a browser has (global fetch).
 */
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, startServer, type TestServer } from './server.js';

const ENTRY = fileURLToPath(new URL('../src/index.ts', import.meta.url));
/** Generous for a REST + socket SDK; the REST part alone is far below (see the report in the test output). */
const MAX_MINIFIED_BYTES = 40 * 1024;

async function bundle(minify: boolean): Promise<string> {
  const result = await build({ entryPoints: [ENTRY], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', minify, write: false, logLevel: 'silent', metafile: true });
  expect(result.errors).toEqual([]);
  const inputs = Object.keys(result.metafile.inputs);
  expect(inputs).toContain('packages/client/src/transport.ts');
  // Only the SDK's own sources went in: nothing from node_modules, no other package.
  expect(inputs.filter((input) => !input.startsWith('packages/client/src/'))).toEqual([]);
  return result.outputFiles[0]?.text ?? '';
}

describe('the browser bundle of @sentinel/api-client', () => {
  let code: string;
  let minified: string;

  beforeAll(async () => {
    [code, minified] = await Promise.all([bundle(false), bundle(true)]);
  });

  it('has no node: import and no require() of a Node built-in', () => {
    expect(code.length).toBeGreaterThan(1000);
    expect(code).not.toMatch(/\bfrom\s*["']node:/);
    expect(code).not.toMatch(/\bimport\s*\(\s*["']node:/);
    expect(code).not.toMatch(/\brequire\s*\(/);
    for (const name of builtinModules) {
      expect(code, name).not.toContain(`from "${name}"`);
      expect(code, name).not.toContain(`import("${name}")`);
    }
  });

  it('is small', () => {
    const bytes = new TextEncoder().encode(minified).length;
    console.info(`browser bundle: ${code.length} bytes, ${bytes} bytes minified`);
    expect(bytes).toBeLessThan(MAX_MINIFIED_BYTES);
  });

  describe('run as a module against a real server', () => {
    let node: TestServer;

    beforeAll(async () => {
      node = await startServer();
    });

    afterAll(async () => {
      await node?.close();
    });

    it('logs in, lists images and creates an agent with only the global fetch', async () => {
      const sdk = (await import(`data:text/javascript;base64,${Buffer.from(minified).toString('base64')}`)) as typeof import('../src/index.js');
      const client = sdk.createClient({ baseUrl: node.url });
      await client.login('admin', ADMIN_PASSWORD);
      expect((await client.images.list()).map((image) => image.name)).toContain('sentinel/echo');
      const agent = await client.agents.create({ image: 'sentinel/echo:latest' });
      expect((await client.agents.get(agent.id)).status).toBe('running');
      const missing = await client.agents.get('no-such-agent').catch((err: unknown) => err);
      expect(sdk.isSentinelApiError(missing)).toBe(true);
      expect(missing).toMatchObject({ status: 404, code: 'not_found' });
    });
  });
});
