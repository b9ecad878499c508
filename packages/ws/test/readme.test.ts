/**
 * The README's WebSocket tables are checked against the code, so the documented defaults and
 * close codes cannot drift from what the transport does.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { closeCodeFor, TOO_SLOW_REASON, WEBSOCKET_DEFAULTS } from '@sentinel/api-ws';

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const rows = readme.split('\n').filter((line) => line.startsWith('| `'));
const cells = (row: string): string[] => row.split('|').map((cell) => cell.trim());

describe('README WebSocket reference', () => {
  it('documents every attachWebSocket option with its real default', () => {
    for (const [option, value] of Object.entries(WEBSOCKET_DEFAULTS)) {
      const row = rows.find((line) => line.startsWith(`| \`${option}\` |`));
      expect(row, `README row for ${option}`).toBeDefined();
      expect((cells(row as string)[2] as string).split(' ')[0]).toBe(`\`${String(value)}\``);
    }
    expect(rows.some((line) => line.startsWith('| `logger` |'))).toBe(true);
  });

  it('lists the close code of every way the server ends a stream', () => {
    const expected = { agent_deleted: 'agent deleted', shutdown: 'server shutting down', too_slow: TOO_SLOW_REASON } as const;
    for (const [reason, text] of Object.entries(expected)) {
      const code = closeCodeFor(reason as keyof typeof expected);
      const row = rows.find((line) => line.startsWith(`| \`${code}\` |`));
      expect(row, `README row for close code ${code}`).toBeDefined();
      expect(cells(row as string)[2]).toBe(`\`${text}\``);
    }
  });
});
