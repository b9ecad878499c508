/**
 * For the live-side specs: a real api on port 0 behind a loopback TCP proxy the spec can cut
 * (every open connection destroyed, as a network drop does) or hold (new connections dropped at
 * once, as a server that is unreachable for a while).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import type { SentinelClient } from '@sentinel/api-client';

export const ADMIN_PASSWORD = 'admin-password-123';

export interface CuttableProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Destroys every connection open now (the client sees a dropped socket, 1006). */
  cut(): void;
  /** While true, new connections are destroyed at once. */
  hold: boolean;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** A TCP proxy from a loopback port to `target` (`http://host:port`). */
export async function startProxy(target: string): Promise<CuttableProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let accepted = 0;
  const state = { hold: false };
  const server: Server = createServer((client) => {
    accepted += 1;
    if (state.hold) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `http://127.0.0.1:${address.port}`,
    cut: () => {
      for (const socket of [...sockets]) socket.destroy();
      sockets.clear();
    },
    get hold() {
      return state.hold;
    },
    set hold(value: boolean) {
      state.hold = value;
    },
    get accepted() {
      return accepted;
    },
    close: async () => {
      for (const socket of [...sockets]) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface LiveEnv {
  api: SentinelApi;
  server: RunningServer;
  ws: WebSocketHandle;
  proxy: CuttableProxy;
  close(): Promise<void>;
}

/** An api with the echo provider streaming a chunk every `chunkDelayMs`, and a proxy in front of it. */
export async function startLiveEnv(chunkDelayMs = 5): Promise<LiveEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-client-live-'));
  const api = await createSentinelApi({
    dataDir: dir,
    adminPassword: ADMIN_PASSWORD,
    tokenSecret: 'client-live-secret-0123456789abcdef',
    runtime: { echoChunkDelayMs: chunkDelayMs },
    rateLimits: { chat: 0 },
  });
  const server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const ws = attachWebSocket(server.server, api);
  const proxy = await startProxy(server.url);
  return {
    api,
    server,
    ws,
    proxy,
    close: async () => {
      await proxy.close();
      await ws.close();
      await server.close();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;

/** Creates an agent from the starter image over REST and returns its id. */
export async function createAgent(client: SentinelClient): Promise<string> {
  const created = await client.transport.request<{ id: string }>('POST', '/v1/agents', { body: { image: 'sentinel/echo:latest', name: `live-${process.pid}-${++counter}` } });
  return created.id;
}

/** A message long enough to stream for a while (the echo provider sends 1-3 words per chunk). */
export function longMessage(words = 300): string {
  return Array.from({ length: words }, (_, i) => `word${i}`).join(' ');
}

/** Polls `probe` until it holds. */
export async function eventually(probe: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
