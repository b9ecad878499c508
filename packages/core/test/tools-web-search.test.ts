import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSentinelError, type SentinelError, type WebSearchToolOptions } from '@sentinel/api-core';
import { ToolSet } from '../src/tools/tool-set.js';
import { createWebSearchTool } from '../src/tools/web-search.js';
import { closedPort, FakeProviderServer, type FakeReply } from '@sentinel/test-support/fakes/fake-server';

let searx: FakeProviderServer;

beforeEach(async () => {
  searx = await FakeProviderServer.start();
});

afterEach(async () => {
  await searx.close();
});

/** A SearXNG `format=json` answer. */
function searxAnswer(query: string, results: Record<string, unknown>[]): FakeReply {
  const body = { query, number_of_results: 0, results, answers: [], corrections: [], infoboxes: [], suggestions: [], unresponsive_engines: [] };
  return { status: 200, headers: { 'content-type': 'application/json' }, steps: [{ write: JSON.stringify(body) }] };
}

function searchWith(options: WebSearchToolOptions) {
  const tools = new ToolSet().register(createWebSearchTool(options));
  return (params: Record<string, unknown>) => tools.run('web_search', params, { signal: new AbortController().signal });
}

async function failure(promise: Promise<unknown>): Promise<SentinelError> {
  try {
    await promise;
  } catch (err) {
    if (isSentinelError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('web_search', () => {
  it('without a configured service fails clearly, never with made-up results', async () => {
    const err = await failure(searchWith({})({ query: 'anything' }));
    expect(err.message).toBe('web_search is not configured on this server (set --web-search-url)');
  });

  it('queries <url>/search?q=…&format=json and returns title, url and content, capped', async () => {
    const results: Record<string, unknown>[] = Array.from({ length: 8 }, (_, i) => ({
      url: `https://example.org/${i}`,
      title: `Result ${i}`,
      content: `Snippet   number ${i}\n${'long '.repeat(i === 0 ? 400 : 1)}`,
      engine: 'duckduckgo',
      score: 1 / (i + 1),
    }));
    results.splice(2, 0, { url: 'javascript:alert(1)', title: 'not a web page', content: '' });
    searx.reply(searxAnswer('sentinel stacks', results), searxAnswer('second', results));
    const search = searchWith({ url: `${searx.url}/`, maxResults: 3 });
    const answer = (await search({ query: 'sentinel stacks' })) as { query: string; results: { title: string; url: string; content: string }[] };
    const sent = new URL(searx.requests[0]?.path ?? '', searx.url);
    expect(sent.pathname).toBe('/search');
    expect(sent.searchParams.get('q')).toBe('sentinel stacks');
    expect(sent.searchParams.get('format')).toBe('json');
    expect(answer.query).toBe('sentinel stacks');
    expect(answer.results.map((r) => r.url)).toEqual(['https://example.org/0', 'https://example.org/1', 'https://example.org/2']);
    expect(answer.results[1]).toEqual({ title: 'Result 1', url: 'https://example.org/1', content: 'Snippet number 1 long' });
    expect(answer.results[0]?.content.length).toBeLessThanOrEqual(1000);
    const fewer = (await search({ query: 'second', max_results: 1 })) as { results: unknown[] };
    expect(fewer.results).toHaveLength(1);
  });

  it('accepts a URL that already ends in /search', async () => {
    searx.reply(searxAnswer('q', []));
    expect(await searchWith({ url: `${searx.url}/searx/search` })({ query: 'q' })).toEqual({ query: 'q', results: [] });
    expect(searx.requests[0]?.path.startsWith('/searx/search?')).toBe(true);
  });

  it('explains a 403 (the json format is off in SearXNG) and a non-JSON answer', async () => {
    searx.reply({ status: 403, headers: { 'content-type': 'text/html' }, steps: [{ write: '<html>Forbidden</html>' }] });
    expect((await failure(searchWith({ url: searx.url })({ query: 'q' }))).message).toMatch(/answered 403: enable the json format/);
    searx.reply({ status: 200, headers: { 'content-type': 'text/html' }, steps: [{ write: '<html>results</html>' }] });
    expect((await failure(searchWith({ url: searx.url })({ query: 'q' }))).message).toMatch(/did not answer JSON/);
  });

  it('reports an unreachable service', async () => {
    const port = await closedPort();
    const err = await failure(searchWith({ url: `http://127.0.0.1:${port}` })({ query: 'q' }));
    expect(err.message).toBe(`web_search: cannot reach the search service at http://127.0.0.1:${port}: ECONNREFUSED`);
  });
});
