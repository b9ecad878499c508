import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createBatchedLineWriter, createJsonLogger } from '@sentinel/api-core';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('createBatchedLineWriter', () => {
  it('joins the lines of one turn of the event loop into one write, in order', async () => {
    const writes: string[] = [];
    const lines = createBatchedLineWriter((text) => writes.push(text), { flushOnExit: false });
    lines.write('a\n');
    lines.write('b\n');
    lines.write('c\n');
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes).toEqual(['a\nb\nc\n']);
    lines.write('d\n');
    await nextTurn();
    expect(writes).toEqual(['a\nb\nc\n', 'd\n']);
    lines.close();
  });

  it('writes at once past the buffer bound, on flush(), and after close()', async () => {
    const writes: string[] = [];
    const lines = createBatchedLineWriter((text) => writes.push(text), { maxBufferedChars: 10, flushOnExit: false });
    lines.write('12345\n');
    lines.write('67890\n');
    expect(writes).toEqual(['12345\n67890\n']);
    lines.write('x\n');
    lines.flush();
    expect(writes.at(-1)).toBe('x\n');
    lines.write('y\n');
    lines.close();
    expect(writes.at(-1)).toBe('y\n');
    lines.write('z\n');
    expect(writes.at(-1)).toBe('z\n');
    await nextTurn();
    expect(writes).toEqual(['12345\n67890\n', 'x\n', 'y\n', 'z\n']);
  });

  it('writes pending lines when the process exits before the next turn', () => {
    // A child process runs the BUILT core (plain node cannot load the TypeScript sources).
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(existsSync(dist), `${dist} is missing: run \`pnpm build\` first`).toBe(true);
    // The child logs through the JSON logger and exits in the same turn: nothing may be lost.
    const script = `
      import { createBatchedLineWriter, createJsonLogger } from ${JSON.stringify(dist)};
      const lines = createBatchedLineWriter((text) => process.stdout.write(text));
      const logger = createJsonLogger({ write: lines.write });
      logger.info('first', { n: 1 });
      logger.info('second', { n: 2 });
      process.exit(0);
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['first', 'second']);
  });
});

describe('createJsonLogger', () => {
  it('redacts secret keys in any letter case and keeps the field order', () => {
    const out: string[] = [];
    const logger = createJsonLogger({ write: (line) => out.push(line), base: { service: 'x' } });
    logger.info('hello', { Authorization: 'Bearer abc', api_key: 'k', apiKey: 'k2', 'API-KEY': 'k3', user: 'bob' });
    const line = JSON.parse(out[0] ?? '{}') as Record<string, unknown>;
    expect(Object.keys(line)).toEqual(['time', 'level', 'msg', 'service', 'Authorization', 'api_key', 'apiKey', 'API-KEY', 'user']);
    expect(line).toMatchObject({ level: 'info', msg: 'hello', Authorization: '[redacted]', api_key: '[redacted]', apiKey: '[redacted]', 'API-KEY': '[redacted]', user: 'bob' });
  });
});
