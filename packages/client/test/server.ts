/**
 * The client specs' server: a real SentinelStacks API (SQLite in a temp dir) listening on
 * 127.0.0.1 port 0, REST and the chat and events WebSockets on one port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createSentinelApi, type RegistrySettings, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket } from '@sentinel/api-ws';
import { isSentinelApiError, type SentinelApiError } from '@sentinel/api-client';

export const ADMIN_PASSWORD = 'admin-password-123';

export interface TestServer {
  api: SentinelApi;
  server: RunningServer;
  url: string;
  close(): Promise<void>;
}

export async function startServer(options: { registry?: RegistrySettings } = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-client-'));
  const api = await createSentinelApi({ dataDir: dir, adminPassword: ADMIN_PASSWORD, tokenSecret: 'client-spec-secret-0123456789abcdef', ...(options.registry ? { registry: options.registry } : {}) });
  const server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const ws = attachWebSocket(server.server, api);
  return {
    api,
    server,
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
