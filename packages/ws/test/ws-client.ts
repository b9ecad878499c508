/**
 * A real `ws` client for the protocol tests: it records every frame, lets a test wait for the
 * frame it expects, and reports how the socket ended. Refused upgrades are observed the way a
 * client sees them: the HTTP status on 'unexpected-response', never an 'open'.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';

/** A server frame as JSON (the tests look at its fields). */
export type Frame = Record<string, any>;

export interface CloseInfo {
  code: number;
  reason: string;
}

export class FrameClient {
  readonly ws: WebSocket;
  /** Every text frame received, parsed, in order. */
  readonly frames: Frame[] = [];
  /** The same frames as the server's text, byte for byte. */
  readonly texts: string[] = [];
  /** Resolves when the socket is closed. */
  readonly closed: Promise<CloseInfo>;
  private readonly listeners = new Set<() => void>();
  private ended: CloseInfo | undefined;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) throw new Error('the server sent a binary frame');
      this.texts.push(String(data));
      this.frames.push(JSON.parse(String(data)) as Frame);
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.ended = { code, reason: reason.toString() };
        this.notify();
        resolve(this.ended);
      });
    });
    // A test that ends while the socket errors must not crash the runner.
    ws.on('error', () => undefined);
  }

  /** Connects and resolves once open; rejects with the HTTP status if the upgrade is refused. */
  static connect(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<FrameClient> {
    const { protocols, ...clientOptions } = options;
    const ws = new WebSocket(url, protocols ?? [], clientOptions);
    const client = new FrameClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        reject(new Error(`upgrade refused with ${res.statusCode}`));
        ws.terminate();
      });
      ws.once('error', reject);
    });
  }

  /** Sends one JSON frame (or raw text when given a string). */
  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The first recorded frame from index `from` that matches, waiting for it if needed. */
  waitFor(predicate: (frame: Frame) => boolean, what: string, timeoutMs = 10_000, from = 0): Promise<Frame> {
    return this.until(() => this.frames.slice(from).find(predicate), what, timeoutMs);
  }

  /** Resolves once `count` frames match. */
  waitForCount(predicate: (frame: Frame) => boolean, count: number, what: string, timeoutMs = 10_000): Promise<Frame[]> {
    return this.until(() => {
      const matching = this.frames.filter(predicate);
      return matching.length >= count ? matching : undefined;
    }, what, timeoutMs);
  }

  /** Every frame about `messageId`, in order. */
  framesFor(messageId: string): Frame[] {
    return this.frames.filter((frame) => frame.message_id === messageId);
  }

  /** Resolves with the terminal frame of `messageId` (stream_end, response or error). */
  terminal(messageId: string, timeoutMs = 10_000): Promise<Frame> {
    return this.waitFor((frame) => frame.message_id === messageId && isTerminal(frame), `the terminal frame of ${messageId}`, timeoutMs);
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private until<T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const value = probe();
        if (value !== undefined) {
          done();
          resolve(value);
        } else if (this.ended) {
          done();
          reject(new Error(`socket closed (${this.ended.code} ${this.ended.reason}) before ${what}; frames: ${summary(this.frames)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; frames: ${summary(this.frames)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }
}

function summary(frames: Frame[]): string {
  return JSON.stringify(frames.slice(-8).map((f) => ({ type: f.type, event_type: f.event_type, message_id: f.message_id, code: f.code, reason: f.reason })));
}

/** stream_end, response and error are the terminal frames of a message. */
export function isTerminal(frame: Frame): boolean {
  return frame.type === 'stream_end' || frame.type === 'response' || frame.type === 'error';
}

export interface Refusal {
  status: number;
  headers: IncomingHttpHeaders;
  body: any;
  /** True if the socket ever opened (it must not). */
  opened: boolean;
}

/** Attempts an upgrade that the server must refuse; resolves with what the client saw. */
export function refusal(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<Refusal> {
  const { protocols, ...clientOptions } = options;
  const ws = new WebSocket(url, protocols ?? [], clientOptions);
  let opened = false;
  ws.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      opened = true;
      ws.terminate();
      reject(new Error(`the upgrade to ${url} was accepted`));
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text.length > 0 ? JSON.parse(text) : undefined, opened });
        ws.terminate();
      });
    });
  });
}
