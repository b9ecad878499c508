/**
 * The public entry's runtime names are a decision, not a side effect: they must equal the
 * committed list in packages/http/api-surface.txt, so a new export shows up in review.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as entry from '@sentinel/api-http';

describe('@sentinel/api-http public surface', () => {
  it('exports exactly the names in api-surface.txt', () => {
    const committed = readFileSync(new URL('../api-surface.txt', import.meta.url), 'utf8').split('\n').filter((line) => line !== '');
    expect(Object.keys(entry).sort(), 'the public entry changed: update packages/http/api-surface.txt if this growth is intended').toEqual(committed.sort());
  });
});
