/**
 * The docs pages in a real headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core), served by the standalone server on the real core: they render the API's
 * own documents, and not one request leaves 127.0.0.1 (every request the page makes is
 * recorded; data: and blob: URLs stay in the page). Page errors and console errors fail the
 * test, so a CSP violation or a renderer crash cannot pass unnoticed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compileRoute, createSentinelApi, ERROR_CODES, type SentinelApi, type SentinelApiSurface } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { foreignRequests, launchChromium, recordedPage, settle as settleRecording, type Recording } from '@sentinel/test-support/browser';

const SCREENSHOT = fileURLToPath(new URL('../../../docs/api-reference.png', import.meta.url));

/**
 * A minimal AsyncAPI 3.0 document, served only while the core has no `GET /v1/asyncapi.json` of
 * its own (that route comes from another change): the page must render whichever it gets.
 */
const FALLBACK_ASYNCAPI = {
  asyncapi: '3.0.0',
  info: { title: 'SentinelStacks WebSocket API', version: '1.0.0' },
  channels: {
    chat: {
      address: '/v1/agents/{id}/chat',
      messages: { message: { name: 'message', title: 'Message', payload: { type: 'object', properties: { type: { const: 'message' } } } } },
    },
    events: {
      address: '/v1/agents/{id}/events',
      messages: { event: { name: 'event', title: 'Event', payload: { type: 'object' } } },
    },
  },
  operations: {
    sendMessage: { action: 'send', channel: { $ref: '#/channels/chat' }, messages: [{ $ref: '#/channels/chat/messages/message' }] },
    receiveEvent: { action: 'receive', channel: { $ref: '#/channels/events' }, messages: [{ $ref: '#/channels/events/messages/event' }] },
  },
};

function withAsyncApi(api: SentinelApi): SentinelApiSurface {
  if (api.routes.some((route) => route.method === 'GET' && route.path === '/v1/asyncapi.json')) return api;
  const route = compileRoute({ method: 'GET', path: '/v1/asyncapi.json', auth: 'public', summary: 'AsyncAPI (test stand-in)', handler: () => FALLBACK_ASYNCAPI });
  return { routes: [...api.routes, route], authenticate: (h) => api.authenticate(h), invoke: (r, raw, ctx) => api.invoke(r, raw, ctx), logger: api.logger, close: () => api.close() };
}

let dir: string;
let api: SentinelApi;
let server: RunningServer;
let context: BrowserContext;

let recording: Recording;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-docs-browser-'));
  api = await createSentinelApi({ dataDir: join(dir, 'data'), adminPassword: 'docs-browser-admin-password' });
  server = await listen(withAsyncApi(api), { port: 0, host: '127.0.0.1', logRequests: false });
  context = await launchChromium(join(dir, 'profile'));
}, 60_000);

afterAll(async () => {
  await context?.close();
  await server?.close();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function openPage(path: string): Promise<Page> {
  const opened = await recordedPage(context);
  recording = opened.recording;
  await opened.page.goto(`${server.url}${path}`, { waitUntil: 'load' });
  return opened.page;
}

/** Lets late loads (fonts, lazy chunks, workers) happen before the requests are judged. */
const settle = () => settleRecording(recording);

afterEach(async () => {
  for (const page of context.pages()) await page.close();
});

function expectClean(): void {
  expect(recording.requests.length).toBeGreaterThan(0);
  expect(foreignRequests(recording.requests, server.url), 'requests that left the test server').toEqual([]);
  expect(recording.problems, 'page and console errors').toEqual([]);
}

describe('the docs pages in headless Chromium', () => {
  it('/docs renders the OpenAPI document with Scalar: the API title and route summaries, nothing off 127.0.0.1', async () => {
    const page = await openPage('/docs');
    await page.getByRole('heading', { name: 'SentinelStacks API' }).first().waitFor({ state: 'visible', timeout: 20_000 });
    // The sidebar opens the first tag only: open "agents" as a reader would.
    await page.getByText(/^agents$/i).first().click();
    await page.getByText('List agents', { exact: false }).first().waitFor({ state: 'visible', timeout: 20_000 });
    await page.getByText('Create and start an agent from an image').first().waitFor({ state: 'attached' });
    // Let late loads (fonts, lazy chunks, workers) happen before the requests are judged.
    await settle();
    await page.screenshot({ path: SCREENSHOT });
    // The built-in client ("Test Request") must not reach out either when it opens.
    await page.getByRole('button', { name: /Test Request/ }).first().click();
    await page.getByRole('dialog').first().waitFor({ state: 'visible', timeout: 10_000 });
    await settle();
    expect(recording.requests).toContain(`${server.url}/v1/openapi.json`);
    expectClean();
  }, 60_000);

  it('/docs/asyncapi renders the AsyncAPI document: both channels and their messages', async () => {
    const page = await openPage('/docs/asyncapi');
    await page.locator('h1').first().waitFor({ state: 'visible' });
    const h1 = await page.locator('h1').first().textContent();
    expect(h1).not.toMatch(/^AsyncAPI$/);
    const channels = await page.locator('section.channel h3').allTextContents();
    expect(channels).toEqual(expect.arrayContaining([expect.stringMatching(/^\/v1\/agents\/\{\w+\}\/chat$/), expect.stringMatching(/^\/v1\/agents\/\{\w+\}\/events$/)]));
    expect(await page.locator('section.channel .message').count()).toBeGreaterThanOrEqual(2);
    await settle();
    expect(recording.requests).toContain(`${server.url}/v1/asyncapi.json`);
    expectClean();
  }, 60_000);

  it('/docs/errors has an anchor per error code, and #<code> scrolls to its section', async () => {
    const page = await openPage('/docs/errors#not_found');
    const anchors = await page.locator('section.error[id]').evaluateAll((sections) => sections.map((section) => section.id));
    expect(anchors).toEqual([...ERROR_CODES]);
    const target = page.locator('#not_found');
    await expect(target.locator('h2').textContent()).resolves.toContain('Not found');
    expect(await target.isVisible()).toBe(true);
    expect(await page.locator(':target').getAttribute('id')).toBe('not_found');
    expect(await page.locator('#unauthorized code').allTextContents()).toContain('WWW-Authenticate: Bearer');
    expectClean();
  }, 60_000);
});
