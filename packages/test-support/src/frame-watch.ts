/**
 * No drift for WebSocket frames: every text frame a test's client socket receives on one of the
 * API's channels is checked against the AsyncAPI document's message schemas (frame-validation.ts).
 * A frame the document does not describe fails the test that received it, with the frame and
 * ajv's errors.
 *
 * The check sits in `ws`'s WebSocket class itself (its `emit` of 'message' on client sockets),
 * so it covers the shared FrameClient and every raw `ws` socket a spec opens, in-process or
 * against a spawned CLI server, without each spec opting in. Server sockets have no `url` and
 * are left alone, and so are sockets to other paths (a host's own WebSocket route, say).
 *
 * This module stays light because it is a setup file of every spec: the document and its
 * validators are loaded on the first frame only, and frames that arrive meanwhile wait for it.
 */
import { afterAll, afterEach } from 'vitest';
import { WebSocket } from 'ws';
import type { FrameValidator } from './frame-validation.js';

const violations: string[] = [];
let validator: FrameValidator | undefined;
let loading: Promise<void> | undefined;
/** Frames received before the validator was loaded. */
const pending: Array<{ url: string; text: string | undefined }> = [];

function check(url: string, text: string | undefined): void {
  if (!validator) {
    pending.push({ url, text });
    loading ??= import('./frame-validation.js').then(({ frameValidator }) => {
      validator = frameValidator();
      for (const frame of pending.splice(0)) check(frame.url, frame.text);
    });
    return;
  }
  if (validator.channelOf(url) === undefined) return;
  const problem = text === undefined ? 'a binary frame (the protocol has none)' : validator.check(url, text);
  if (problem !== undefined) violations.push(`frame on ${new URL(url).pathname}: ${text?.slice(0, 500) ?? '<binary>'}\n  ${problem}`);
}

/** A text message's data as ws hands it over, whatever the socket's `binaryType`. */
function textOf(data: Buffer | ArrayBuffer | Buffer[]): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
}

let installed = false;

/** Starts checking every client socket's messages (once per test file). */
export function watchWebSocketFrames(): void {
  if (installed) return;
  installed = true;
  type Emitter = { emit: (this: WebSocket, event: string | symbol, ...args: unknown[]) => boolean };
  const prototype = WebSocket.prototype as unknown as Emitter;
  const emit = prototype.emit;
  prototype.emit = function (event, ...args) {
    if (event === 'message' && typeof this.url === 'string') {
      const [data, isBinary] = args as [Buffer | ArrayBuffer | Buffer[], boolean];
      check(this.url, isBinary ? undefined : textOf(data));
    }
    return emit.call(this, event, ...args);
  };
}

/** The violations recorded so far (after checking any frame still waiting), and forgets them. */
export async function takeFrameViolations(): Promise<string[]> {
  await loading;
  return violations.splice(0);
}

async function failOnViolations(): Promise<void> {
  const found = await takeFrameViolations();
  if (found.length > 0) throw new Error(`the server sent ${found.length} frame(s) the AsyncAPI document does not describe:\n${found.join('\n')}`);
}

/**
 * For a vitest `setupFiles` entry: watches every client socket and fails the test (or the
 * file, for frames received in `beforeAll`/`afterAll`) that received an undescribed frame.
 */
export function installFrameValidation(): void {
  watchWebSocketFrames();
  afterEach(failOnViolations);
  afterAll(failOnViolations);
}
