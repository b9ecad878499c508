/**
 * The client specs' server: a real SentinelStacks API (SQLite in a temp dir) listening on
 * 127.0.0.1 port 0, REST and the chat and events WebSockets on one port. Every client spec
 * starts its server here (the live-side specs through live-env.ts, which puts a proxy in front),
 * so they differ only in the api options they pass.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createSentinelApi, type SentinelApi, type SentinelApiOptions } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { isSentinelApiError, type SentinelApiError } from '@sentinel/api-client';

export const ADMIN_PASSWORD = 'admin-password-123';

export interface TestServer {
  api: SentinelApi;
  server: RunningServer;
  ws: WebSocketHandle;
  url: string;
  close(): Promise<void>;
}

/** Starts the api with the admin's password and a fixed token secret; `options` adds to them (registry, runtime, rate limits). */
export async function startServer(options: Omit<SentinelApiOptions, 'dataDir'> = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-client-'));
  const api = await createSentinelApi({ dataDir: dir, adminPassword: ADMIN_PASSWORD, tokenSecret: 'client-spec-secret-0123456789abcdef', ...options });
  const server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const ws = attachWebSocket(server.server, api);
  return {
    api,
    server,
    ws,
    url: server.url,
    async close() {
      await ws.close();
      await server.close();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The SentinelApiError a promise rejects with (fails when it resolves, or rejects with anything else). */
export async function rejection(promise: Promise<unknown>): Promise<SentinelApiError> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelApiError(err), String(err)).toBe(true);
    return err as SentinelApiError;
  }
  throw new Error('expected a rejection');
}

/** Reads an async iterable to its end; the SentinelApiError it failed with, or the items. */
export async function drain<T>(iterable: AsyncIterable<T>): Promise<{ items: T[]; error?: SentinelApiError }> {
  const items: T[] = [];
  try {
    for await (const item of iterable) items.push(item);
  } catch (err) {
    expect(isSentinelApiError(err), String(err)).toBe(true);
    return { items, error: err as SentinelApiError };
  }
  return { items };
}
