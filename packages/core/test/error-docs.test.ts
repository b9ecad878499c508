/**
 * docs/errors.md cannot drift from the catalogue: it must be byte for byte what
 * renderErrorCatalogueMarkdown() generates (`pnpm docs:errors` rewrites it), every code in
 * ERROR_CODES needs a catalogue entry and an anchored section, and error bodies point there.
 */
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, ERROR_CODES, errorBody, errorDocsUrl, publicErrorBody, SentinelError } from '@sentinel/api-core';
import { ERROR_DOCS_FILE, renderErrorCatalogueMarkdown } from '../src/contract/error-docs.js';

const REPO_ROOT = new URL('../../../', import.meta.url);

describe('docs/errors.md', () => {
  it('is exactly what the catalogue generates (run `pnpm docs:errors` after changing the catalogue)', async () => {
    await expect(renderErrorCatalogueMarkdown()).toMatchFileSnapshot(new URL(ERROR_DOCS_FILE, REPO_ROOT).pathname);
  });

  // The rendered text, which the test above holds the file to: so `pnpm docs:errors` (which
  // rewrites the file at the end of the run) passes on its first run after a change.
  it('has one anchored section per code, and nothing for codes that do not exist', () => {
    const text = renderErrorCatalogueMarkdown();
    const anchors = [...text.matchAll(/^## <a id="([a-z_]+)"><\/a>`([a-z_]+)`$/gm)].map((m) => {
      expect(m[2]).toBe(m[1]);
      return m[1];
    });
    expect(anchors).toEqual([...ERROR_CODES]);
  });

  it('fails for a code without a section: rendering a list that misses one leaves it out', () => {
    const missing = renderErrorCatalogueMarkdown(ERROR_CODES.filter((code) => code !== 'agent_busy'));
    expect(missing).not.toContain('<a id="agent_busy">');
    expect(missing).not.toBe(renderErrorCatalogueMarkdown());
  });

  it('has a complete entry for every code in ERROR_CODES, and no entry for anything else', () => {
    expect(Object.keys(ERROR_CATALOGUE).sort()).toEqual([...ERROR_CODES].sort());
    for (const code of ERROR_CODES) {
      const entry = ERROR_CATALOGUE[code];
      expect(entry.title.length, code).toBeGreaterThan(0);
      expect(entry.meaning.length, code).toBeGreaterThan(0);
      expect(entry.causes.length, code).toBeGreaterThan(0);
      expect(entry.remedy.length, code).toBeGreaterThan(0);
    }
  });
});

describe('the docs field of error bodies', () => {
  it('points every code at its anchor on the errors page', () => {
    for (const code of ERROR_CODES) {
      expect(errorDocsUrl(code)).toBe(`/docs/errors#${code}`);
      expect(errorBody(new SentinelError(code, 'x')).docs).toBe(`/docs/errors#${code}`);
    }
  });

  it('keeps details, and hides an internal error\'s message and details from the public body', () => {
    expect(errorBody(new SentinelError('invalid_request', 'bad', { details: { issues: [] } }))).toEqual({ error: 'bad', code: 'invalid_request', details: { issues: [] }, docs: '/docs/errors#invalid_request' });
    expect(publicErrorBody(new SentinelError('internal', 'db password leaked', { details: { secret: 1 } }))).toEqual({ error: 'internal server error', code: 'internal', docs: '/docs/errors#internal' });
  });
});
