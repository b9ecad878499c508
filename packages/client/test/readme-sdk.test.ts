/**
 * The README's SDK example works as printed: the `<!-- file: examples/sdk.ts -->` block of the
 * "SDK" section is that file byte for byte, the file type-checks against the SDK's types, and
 * it runs (log in, create an agent, chat, follow its logs, delete it) against a real server on
 * port 0. Chat is wp/sdk-live's `client.chat`; this spec needs both halves of the SDK.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createClient } from '@sentinel/api-client';
import { ADMIN_PASSWORD, startServer, type TestServer } from './server.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLE = `${ROOT}examples/sdk.ts`;

/** The fenced block right after `<!-- file: examples/sdk.ts -->` inside the README's "## SDK" section. */
function readmeBlock(): string {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const start = readme.indexOf('\n## SDK\n');
  expect(start, 'the README has an "## SDK" section').toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const match = /<!-- file: examples\/sdk\.ts -->\n```ts\n([\s\S]*?\n)```\n/.exec(section);
  expect(match, 'the SDK section shows examples/sdk.ts').not.toBeNull();
  return match?.[1] ?? '';
}

describe('the README SDK example', () => {
  it('is examples/sdk.ts, byte for byte', () => {
    expect(readmeBlock()).toBe(readFileSync(EXAMPLE, 'utf8'));
  });

  it('type-checks against the SDK (strict, as a user would compile it)', () => {
    const program = ts.createProgram([EXAMPLE], {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      customConditions: ['sentinel-source'],
      lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
      types: ['node'],
      strict: true,
      noUncheckedIndexedAccess: true,
      skipLibCheck: true,
      noEmit: true,
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file && d.start !== undefined ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : '';
      return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
    });
    expect(problems).toEqual([]);
  });

  describe('run against a real server', () => {
    let node: TestServer;

    beforeAll(async () => {
      node = await startServer();
    });

    afterAll(async () => {
      await node?.close();
      vi.restoreAllMocks();
    });

    it('logs in, creates an agent, chats, follows its logs and deletes the agent', async () => {
      let out = '';
      const errors: string[] = [];
      vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void (out += `${args.join(' ')}\n`));
      vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void errors.push(args.join(' ')));
      const write = process.stdout.write.bind(process.stdout);
      vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: unknown[]) => {
        if (typeof chunk === 'string' && !chunk.includes('\u001b')) out += chunk;
        return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof process.stdout.write);
      process.env.API = node.url;
      process.env.PASSWORD = ADMIN_PASSWORD;
      let exitCode: typeof process.exitCode;
      try {
        await import(EXAMPLE);
      } finally {
        delete process.env.API;
        delete process.env.PASSWORD;
        // The example sets it on failure; this worker's own exit code is vitest's.
        exitCode = process.exitCode;
        process.exitCode = undefined;
      }
      expect(errors).toEqual([]);
      expect(exitCode ?? 0).toBe(0);
      const id = /^agent \S+ \(([0-9a-f]+)\) is running$/m.exec(out)?.[1];
      expect(id, out).toBeDefined();
      expect(out).toMatch(/hello/);
      expect(out).toMatch(/\n\[[a-z_]+\]\n/);
      expect(out).toMatch(/ info +agent started\n/);
      // The agent is gone: the example cleaned up after itself.
      const admin = createClient({ baseUrl: node.url });
      await admin.login('admin', ADMIN_PASSWORD);
      expect((await admin.agents.list()).map((agent) => agent.id)).not.toContain(id);
    });
  });
});
