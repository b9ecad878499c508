/**
 * Headless Chromium for the browser tests (Debian's /usr/bin/chromium, driven by
 * playwright-core), and a recording of what each page does: every URL it requests, every page
 * error and console error. The tests judge the recording: a request that leaves the test
 * server's origin, a CSP violation or a crash in the page fails them.
 */
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** What one page did: every URL it requested, every page error and console error. */
export interface Recording {
  requests: string[];
  problems: string[];
  /** Requests started and not yet finished or failed. */
  inFlight: number;
  /** Date.now() of the last request event. */
  lastActivity: number;
}

/**
 * A persistent Chromium context in `profileDir`, headless and quiet (no background networking,
 * no component updates: only the page's own requests happen). Throws with the install hint when
 * Chromium is missing rather than letting the tests skip.
 */
export async function launchChromium(profileDir: string, viewport = { width: 1280, height: 900 }): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's Chromium (apt-get install chromium; .ci/run installs it)`);
  }
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A new page in `context` whose requests, page errors and console errors go into the returned recording. */
export async function recordedPage(context: BrowserContext): Promise<{ page: Page; recording: Recording }> {
  const recording: Recording = { requests: [], problems: [], inFlight: 0, lastActivity: Date.now() };
  const page = await context.newPage();
  page.on('request', (request) => {
    recording.requests.push(request.url());
    recording.inFlight++;
    recording.lastActivity = Date.now();
  });
  const done = () => {
    recording.inFlight--;
    recording.lastActivity = Date.now();
  };
  page.on('requestfinished', done);
  page.on('requestfailed', done);
  // WebSockets are not 'request' events: record their URLs too, so they are judged as well.
  page.on('websocket', (socket) => {
    recording.requests.push(socket.url());
    recording.lastActivity = Date.now();
  });
  page.on('pageerror', (err) => recording.problems.push(`pageerror: ${err.message}`));
  page.on('console', (message) => {
    // With the URL: "Failed to load resource" says which status but not which resource.
    if (message.type() === 'error') recording.problems.push(`console.error: ${message.text()} [${message.location().url}]`);
  });
  return { page, recording };
}

/**
 * The recorded URLs that are not on `origin` (ws:// or wss:// to its host is fine; data: and
 * blob: URLs stay in the page).
 */
export function foreignRequests(urls: readonly string[], origin: string): string[] {
  const own = new URL(origin);
  return urls.filter((url) => {
    const parsed = new URL(url);
    if (parsed.protocol === 'data:' || parsed.protocol === 'blob:') return false;
    if (parsed.protocol === 'ws:' || parsed.protocol === 'wss:') return parsed.host !== own.host;
    return parsed.origin !== own.origin;
  });
}

/**
 * Waits until the page has had no request in flight for `quietMs` (late loads: fonts, lazy
 * chunks, workers), at most `timeoutMs`. Playwright's 'networkidle' proved unreliable after
 * in-page navigation, hence our own count.
 */
export async function settle(recording: Recording, quietMs = 1_000, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (recording.inFlight === 0 && Date.now() - recording.lastActivity >= quietMs) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the page kept loading for ${timeoutMs} ms: ${recording.inFlight} request(s) in flight`);
}

export type { BrowserContext, Page } from 'playwright-core';
