/**
 * src/types.ts cannot drift from the server: it must be byte for byte what the generator renders
 * from the OpenAPI document of a real route table (`pnpm gen:client-types` rewrites it).
 */
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, httpStatusForErrorCode } from '@sentinel/api-core';
import { CLIENT_TYPES_FILE, renderClientTypes } from '../scripts/client-types.js';

const REPO_ROOT = new URL('../../../', import.meta.url);

describe('the generated client types', () => {
  it('are exactly what the OpenAPI document generates (run `pnpm gen:client-types` after changing a schema)', async () => {
    await expect(await renderClientTypes()).toMatchFileSnapshot(new URL(CLIENT_TYPES_FILE, REPO_ROOT).pathname);
  });

  it('render the same text twice (the generator is deterministic) and name every path the SDK calls', async () => {
    const text = await renderClientTypes();
    expect(await renderClientTypes()).toBe(text);
    for (const path of ['/v1/agents', '/v1/agents/{id}/logs', '/v1/images', '/v1/registry/push', '/v1/registry/pull', '/v1/keys', '/v1/ws-tickets', '/v1/auth/me']) {
      expect(text).toContain(`"${path}": {`);
    }
  });

  // The rendered text, which the first test holds the file to: so `pnpm gen:client-types` (which
  // rewrites the file at the end of the run) passes on its first run after a change.
  it('carry the status of every error code as the server maps it', async () => {
    const table = /export const ERROR_STATUS[^{]*\{\n([^}]*)\};/.exec(await renderClientTypes())?.[1] ?? '';
    const entries = [...table.matchAll(/^ +([a-z_]+): (\d+),$/gm)].map((m) => [m[1], Number(m[2])]);
    expect(entries).toEqual(ERROR_CODES.map((code) => [code, httpStatusForErrorCode(code)]));
  });
});
