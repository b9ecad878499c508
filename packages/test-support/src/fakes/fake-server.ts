/**
 * A loopback HTTP server that plays a model provider for tests (docs/ARCHITECTURE.md#testing: the only fakes
 * allowed are loopback servers speaking the provider's real wire format). It records every
 * request (method, path, headers, body), answers with scripted replies in order, and observes
 * how each connection ended, so a test can prove that a cancel closed the upstream connection.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One step of a scripted reply body. */
export type ReplyStep =
  /** Write these bytes (a string is UTF-8). */
  | { write: string | Uint8Array }
  /** Wait before the next step. */
  | { delayMs: number }
  /** Write nothing more and keep the connection open until the client goes away. */
  | { stall: true }
  /** Reset the TCP connection (RST) right here. */
  | { reset: true };

export interface FakeReply {
  /** Default 200. */
  status?: number;
  headers?: Record<string, string>;
  /** The body, step by step; the response ends after the last step (unless a step stalls or resets). */
  steps: ReplyStep[];
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: any;
  /** The client's port: the same port on two requests means the connection was reused (keep-alive). */
  remotePort: number;
  /** Resolves when the exchange ended: `complete` when the reply was fully sent, `closed-early` when the client closed first. */
  ended: Promise<'complete' | 'closed-early'>;
}

export class FakeProviderServer {
  readonly requests: RecordedRequest[] = [];
  private readonly replies: (FakeReply | ((req: RecordedRequest) => FakeReply))[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private waiters: (() => void)[] = [];
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url = '';

  private constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Starts a server on 127.0.0.1, port 0. */
  static async start(): Promise<FakeProviderServer> {
    const fake = new FakeProviderServer();
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** Queues replies, answered in order; a function builds its reply from the request. */
  reply(...replies: (FakeReply | ((req: RecordedRequest) => FakeReply))[]): this {
    this.replies.push(...replies);
    return this;
  }

  /** Connections currently open (keep-alive ones included). */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** Resolves once `count` requests arrived. */
  async waitForRequests(count: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.requests.length < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} requests (got ${this.requests.length})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }
    let finished = false;
    const ended = new Promise<'complete' | 'closed-early'>((resolve) => {
      res.on('finish', () => {
        finished = true;
        resolve('complete');
      });
      res.on('close', () => resolve(finished ? 'complete' : 'closed-early'));
    });
    const recorded: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, remotePort: req.socket.remotePort ?? 0, ended };
    this.requests.push(recorded);
    for (const waiter of this.waiters.splice(0)) waiter();

    const next = this.replies.shift();
    const reply: FakeReply = next === undefined
      ? { status: 500, headers: { 'content-type': 'application/json' }, steps: [{ write: '{"error":{"message":"the fake has no scripted reply"}}' }] }
      : typeof next === 'function' ? next(recorded) : next;
    res.writeHead(reply.status ?? 200, reply.headers ?? {});
    res.flushHeaders();
    for (const step of reply.steps) {
      if (res.destroyed) return;
      if ('write' in step) {
        res.write(step.write);
      } else if ('delayMs' in step) {
        await new Promise((resolve) => setTimeout(resolve, step.delayMs));
      } else if ('stall' in step) {
        return;
      } else {
        req.socket.resetAndDestroy();
        return;
      }
    }
    res.end();
  }
}

/** Splits `text` into pieces of `size` characters: one SSE event written across several reads. */
export function splitText(text: string, size: number): ReplyStep[] {
  const steps: ReplyStep[] = [];
  for (let i = 0; i < text.length; i += size) steps.push({ write: text.slice(i, i + size) }, { delayMs: 1 });
  return steps;
}

/** A port on 127.0.0.1 nothing listens on (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
