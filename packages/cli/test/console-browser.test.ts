/**
 * The web console in a real headless Chromium (Debian's /usr/bin/chromium, playwright-core)
 * against a real server on port 0: the core, the HTTP transport serving `/console/` and the
 * WebSocket transport on the same port, as `sentinel api` composes them, with the echo provider
 * slowed to 60 ms a chunk so a turn streams visibly and can be stopped halfway. The console is
 * built from its sources for the run (its `build.mjs`), so this tests what the sources make.
 *
 * Every test records every request its page makes (WebSockets included) and fails on one that
 * is not the test server's origin, and on any page error or console error (a CSP violation is a
 * console error). A gated tool's call is approved from the keyboard and another denied with a
 * reason in the chat pane. The run leaves docs/console-agents.png and docs/console-chat.png behind.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, EchoProvider, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { foreignRequests, launchChromium, recordedPage, type BrowserContext, type Page, type Recording } from '@sentinel/test-support/browser';

const run = promisify(execFile);
const CONSOLE_PACKAGE = fileURLToPath(new URL('../../console/', import.meta.url));
const AGENTS_SCREENSHOT = fileURLToPath(new URL('../../../docs/console-agents.png', import.meta.url));
const CHAT_SCREENSHOT = fileURLToPath(new URL('../../../docs/console-chat.png', import.meta.url));
const ADMIN_PASSWORD = 'console-browser-admin-password';
const CHUNK_DELAY_MS = 60;

let dir: string;
let api: SentinelApi;
let server: RunningServer;
let ws: WebSocketHandle;
let context: BrowserContext;
let recording: Recording;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-console-browser-'));
  const consoleDir = join(dir, 'console');
  await run(process.execPath, [join(CONSOLE_PACKAGE, 'build.mjs'), '--outdir', consoleDir], { cwd: CONSOLE_PACKAGE, timeout: 60_000 });
  api = await createSentinelApi({ dataDir: join(dir, 'data'), adminPassword: ADMIN_PASSWORD });
  // The starter image's provider, slow enough to watch an answer grow and to stop a turn in it.
  api.providers.register(new EchoProvider({ chunkDelayMs: CHUNK_DELAY_MS }));
  server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false, console: { dir: consoleDir } });
  ws = attachWebSocket(server.server, api);
  context = await launchChromium(join(dir, 'profile'), { width: 1280, height: 860 });
}, 90_000);

afterAll(async () => {
  await context?.close();
  const closed = server?.close();
  await api?.shutdown();
  await ws?.close();
  await closed;
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const page of context.pages()) await page.close();
});

/** A recorded page on `/` (which the standalone server redirects to the console). */
async function openConsole(): Promise<Page> {
  const opened = await recordedPage(context);
  recording = opened.recording;
  await opened.page.goto(`${server.url}/`, { waitUntil: 'load' });
  expect(opened.page.url()).toBe(`${server.url}/console/`);
  return opened.page;
}

async function logIn(page: Page): Promise<void> {
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/** Creates an agent from the form (its chat opens) and returns its list row. */
async function createAgent(page: Page, name: string) {
  await page.getByRole('button', { name: 'New agent' }).click();
  const form = page.getByRole('form', { name: 'New agent' });
  await expect(form.getByLabel('Image').inputValue()).resolves.toBe('sentinel/echo:latest');
  await form.getByLabel('Name').fill(name);
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('region', { name: `Chat with ${name}` }).waitFor();
  return page.getByRole('list', { name: 'Agents' }).getByRole('listitem').filter({ hasText: name });
}

/** The text of the last assistant message each time it changes, until `done` says so. */
async function watchAnswer(page: Page, done: (text: string) => boolean, timeoutMs = 20_000): Promise<string[]> {
  const answer = page.getByTestId('answer');
  const seen: string[] = [];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = (await answer.count()) > 0 ? ((await answer.textContent()) ?? '') : '';
    if (text !== '' && text !== seen.at(-1)) seen.push(text);
    if (done(text)) return seen;
    await new Promise((resolve) => setTimeout(resolve, 15));
  }
  throw new Error(`the answer did not finish in ${timeoutMs} ms; seen: ${JSON.stringify(seen)}`);
}

/** `expected`: console errors the test caused on purpose, each of which must have happened (once). */
function expectClean(expected: readonly RegExp[] = []): void {
  expect(recording.requests.length).toBeGreaterThan(0);
  // The WebSockets authenticate by subprotocol: no token (a JWT starts "eyJ") in any URL.
  expect(recording.requests.filter((url) => /eyJ|token=|access_token/i.test(url)), 'URLs carrying a token').toEqual([]);
  expect(foreignRequests(recording.requests, server.url), 'requests not to the test server').toEqual([]);
  for (const pattern of expected) expect(recording.problems.filter((problem) => pattern.test(problem)), String(pattern)).toHaveLength(1);
  const unexpected = recording.problems.filter((problem) => !expected.some((pattern) => pattern.test(problem)));
  expect(unexpected, 'page and console errors').toEqual([]);
}

describe('the web console in headless Chromium', () => {
  it('logs in (a wrong password shown as an alert), creates an agent, streams an answer, shows events and logs, logs out', async () => {
    const page = await openConsole();
    // A refused login is words and a code, not a blank page.
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toMatch(/^\S.* \(unauthorized\)$/);
    await logIn(page);

    const row = await createAgent(page, 'helper');
    await expect(row.getByTestId('status').textContent()).resolves.toMatch(/^(created|running)$/);
    // Live status from the events stream: the agent runs once it started.
    await row.getByTestId('status').filter({ hasText: 'running' }).waitFor({ timeout: 15_000 });

    const message = 'please repeat these words back to me one small piece at a time so the stream is visible';
    const expected = `Echo: ${message}`;
    await page.getByLabel('Message').fill(message);
    await page.getByRole('button', { name: 'Send' }).click();
    const seen = await watchAnswer(page, (text) => text === expected);
    // At least two partial answers before the whole one, each the start of the next.
    expect(seen.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < seen.length; i++) expect((seen[i] as string).startsWith(seen[i - 1] as string)).toBe(true);
    expect(seen.at(-1)).toBe(expected);

    const events = page.getByTestId('events');
    await events.getByText('message_received').first().waitFor();
    await events.getByText('message_processed').first().waitFor();
    // Following logs: the turn's lines arrive without a reload, at the chosen level.
    const logs = page.getByTestId('logs');
    await logs.locator('li').first().waitFor({ timeout: 15_000 });
    await expect(page.getByLabel('Level').inputValue()).resolves.toBe('debug');
    await page.getByLabel('Level').selectOption('info');
    await logs.locator('li').first().waitFor({ timeout: 15_000 });
    expect(await logs.locator('li.log-debug').count()).toBe(0);

    // A tool call and its result, rendered as such.
    await page.getByLabel('Message').fill('/tool calculator {"expression":"6*7"}');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByTestId('tool-call').first().waitFor();
    await expect(page.getByTestId('tool-result').first().textContent()).resolves.toContain('42');
    await watchAnswer(page, (text) => /^Tool calculator returned: .*42/.test(text));
    await page.getByRole('button', { name: 'Send' }).and(page.locator(':enabled')).waitFor();

    await page.screenshot({ path: CHAT_SCREENSHOT });
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    expect(await page.getByRole('button', { name: 'Log out' }).count()).toBe(0);
    expect(recording.requests.some((url) => url.startsWith(`ws://${new URL(server.url).host}/v1/agents/`))).toBe(true);
    // The refused login is the one failed request (Chromium logs every 4xx resource as an error).
    expectClean([/^console\.error: Failed to load resource: the server responded with a status of 401 \(Unauthorized\) \[http:\/\/127\.0\.0\.1:\d+\/v1\/auth\/login\]$/]);
  }, 90_000);

  it('"Stop" cancels a slow turn halfway: the answer stops short and the turn is marked cancelled', async () => {
    const page = await openConsole();
    await logIn(page);
    await createAgent(page, 'slowpoke');
    // The agent list (with the first test's agent too), for the README, before the long turn fills the page.
    await page.getByRole('list', { name: 'Agents' }).getByRole('listitem').filter({ hasText: 'slowpoke' }).getByText('running').waitFor({ timeout: 15_000 });
    await page.screenshot({ path: AGENTS_SCREENSHOT });
    const words = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');
    const full = `Echo: ${words}`;
    await page.getByLabel('Message').fill(words);
    await page.getByRole('button', { name: 'Send' }).click();
    await watchAnswer(page, (text) => text.length > 20);
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await page.getByRole('region', { name: 'Chat with slowpoke' }).getByText('(cancelled)').first().waitFor({ timeout: 10_000 });
    const stopped = (await page.getByTestId('answer').textContent()) ?? '';
    expect(full.startsWith(stopped)).toBe(true);
    expect(stopped.length).toBeLessThan(full.length);
    // Nothing more arrives for it: the text stays as it was.
    await new Promise((resolve) => setTimeout(resolve, CHUNK_DELAY_MS * 5));
    await expect(page.getByTestId('answer').textContent()).resolves.toBe(stopped);
    await expect(page.getByRole('button', { name: 'Send' }).isEnabled()).resolves.toBe(true);
    expectClean();
  }, 90_000);

  it('a gated tool call shows Approve / Deny in the chat: one approved with the keyboard, one denied with a reason; the answer goes on', async () => {
    // The image: calculator gated on a person's approval (built over REST, the console's Images view is tested above).
    const login = await fetch(`${server.url}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) });
    const { token } = (await login.json()) as { token: string };
    const built = await fetch(`${server.url}/v1/images`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: 'demo/gated', tag: 'v1', model: { provider: 'echo', name: 'echo' }, tools: [{ name: 'calculator', approval: 'required' }] }),
    });
    expect(built.status).toBe(201);

    const page = await openConsole();
    await logIn(page);
    await page.getByRole('button', { name: 'New agent' }).click();
    const form = page.getByRole('form', { name: 'New agent' });
    await form.getByLabel('Image').fill('demo/gated:v1');
    await form.getByLabel('Name').fill('gatekeeper');
    await form.getByRole('button', { name: 'Create' }).click();
    const chat = page.getByRole('region', { name: 'Chat with gatekeeper' });
    await chat.waitFor();
    await page.getByRole('list', { name: 'Agents' }).getByRole('listitem').filter({ hasText: 'gatekeeper' }).getByText('running').waitFor({ timeout: 15_000 });

    // Approved from the keyboard: the Approve button has the focus when the request appears.
    await page.getByLabel('Message').fill('/tool calculator {"expression":"6*7"}');
    await page.keyboard.press('Enter');
    const first = chat.getByRole('group', { name: /Approval required: calculator\(\{"expression":"6\*7"\}\)/ });
    await first.waitFor();
    const approveButton = first.getByRole('button', { name: 'Approve calculator' });
    await expect(approveButton.evaluate((el) => el === document.activeElement)).resolves.toBe(true);
    expect(await first.getByRole('button', { name: 'Deny calculator' }).count()).toBe(1);
    await page.keyboard.press('Enter');
    await first.getByRole('status').filter({ hasText: 'Approved' }).waitFor();
    await expect(page.getByTestId('tool-result').last().textContent()).resolves.toContain('42');
    await watchAnswer(page, (text) => /^Tool calculator returned: .*42/.test(text));
    await page.getByRole('button', { name: 'Send' }).and(page.locator(':enabled')).waitFor();

    // Denied with a reason: the model is told, the answer says so.
    await page.getByLabel('Message').fill('/tool calculator {"expression":"2+2"}');
    await page.getByRole('button', { name: 'Send' }).click();
    const second = chat.getByRole('group', { name: /Approval required: calculator\(\{"expression":"2\+2"\}\)/ });
    await second.waitFor();
    await second.getByLabel('Reason for denying calculator').fill('no maths in the browser');
    await second.getByRole('button', { name: 'Deny calculator' }).click();
    await second.getByRole('status').filter({ hasText: 'Denied' }).waitFor();
    const refused = await watchAnswer(page, (text) => /no maths in the browser/.test(text));
    expect(refused.at(-1)).not.toMatch(/"result":4\}/);
    await page.getByRole('button', { name: 'Send' }).and(page.locator(':enabled')).waitFor();
    // Both decisions are on the server's runs.
    const agents = (await (await fetch(`${server.url}/v1/agents`, { headers: { authorization: `Bearer ${token}` } })).json()) as { agents: { id: string; name: string }[] };
    const agent = agents.agents.find((a) => a.name === 'gatekeeper') as { id: string };
    const runs = (await (await fetch(`${server.url}/v1/agents/${agent.id}/runs`, { headers: { authorization: `Bearer ${token}` } })).json()) as { runs: { status: string }[] };
    expect(runs.runs.map((run) => run.status)).toEqual(['completed', 'completed']);
    expectClean();
  }, 90_000);

  it('images: builds one from a Sentinelfile, inspects it, pushes it with a progress bar, deletes it', async () => {
    const page = await openConsole();
    await logIn(page);
    await page.getByRole('link', { name: 'Images' }).click();
    await page.getByLabel('Sentinelfile').fill('name: console-built\ndescription: Built in the browser test\nmodel:\n  provider: echo\n  name: echo\ninstructions: Echo what you are told.\n');
    await page.getByRole('button', { name: 'Build' }).click();
    const images = page.getByRole('list', { name: 'Images' });
    const row = images.getByRole('listitem').filter({ hasText: 'console-built:latest' });
    await row.waitFor({ timeout: 5_000 }).catch(async (err: unknown) => {
      throw new Error(`no built image; alert: ${String(await page.getByRole('alert').textContent().catch(() => 'none'))}`, { cause: err });
    });
    await row.getByRole('button', { name: 'Inspect' }).click();
    await expect(page.getByTestId('definition').textContent()).resolves.toContain('Built in the browser test');

    // The embedded registry is quick: the bar may come and go between two polls, so a
    // MutationObserver notes that a <progress> was in the page at all.
    await page.evaluate(() => {
      const seen = window as unknown as { progressSeen?: boolean };
      seen.progressSeen = false;
      new MutationObserver(() => {
        if (document.querySelector('progress')) seen.progressSeen = true;
      }).observe(document.body, { childList: true, subtree: true });
    });
    await row.getByRole('button', { name: 'Push' }).click();
    await page.getByRole('status').filter({ hasText: /Pushed console-built:latest/ }).waitFor({ timeout: 20_000 });
    expect(await page.evaluate(() => (window as unknown as { progressSeen?: boolean }).progressSeen)).toBe(true);

    await row.getByRole('button', { name: 'Delete' }).click();
    await images.getByRole('listitem').filter({ hasText: 'console-built:latest' }).waitFor({ state: 'detached' });
    expect(await images.getByRole('listitem').filter({ hasText: 'sentinel/echo:latest' }).count()).toBe(1);
    expectClean();
  }, 90_000);
});
