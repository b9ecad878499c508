/**
 * WebSockets and the standalone server's connection guards: an upgraded socket is the same TCP
 * connection, so it counts against the caps until it closes, and a quiet WebSocket is never
 * taken for a connection that never sent a byte.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { attachWebSocket, type WebSocketHandle } from '@sentinel/api-ws';
import { FrameClient } from './ws-client.js';
import { ADMIN, bearer, TOKEN_SECRET } from './ws-env.js';

describe('WebSockets count against the connection caps', () => {
  let dir: string;
  let api: SentinelApi;
  let server: RunningServer;
  let handle: WebSocketHandle;
  let token: string;
  let chatUrl: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-ws-caps-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: TOKEN_SECRET, adminPassword: 'admin-password-for-tests', runtime: { echoChunkDelayMs: 0 } });
    server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false, shutdownTimeoutMs: 500, headersTimeout: 300, requestTimeout: 2_000, maxConnectionsPerAddress: 2 });
    handle = attachWebSocket(server.server, api);
    token = (await api.authService.issueToken(ADMIN.username)).token;
    const agent = await api.agents.create(ADMIN, { image: 'sentinel/echo:latest', name: 'caps' }, { secure: false, host: new URL(server.url).host });
    chatUrl = `${server.url.replace(/^http/, 'ws')}/v1/agents/${agent.id}/chat`;
  });

  afterAll(async () => {
    await handle?.close();
    await server?.close();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function chat(): Promise<FrameClient> {
    const client = await FrameClient.connect(chatUrl, bearer(token));
    await client.waitFor((f) => f.event_type === 'connection_established', 'the welcome frame');
    return client;
  }

  async function roundTrip(client: FrameClient, id: string): Promise<void> {
    client.send({ type: 'message', content: 'still here', message_id: id, stream: false });
    expect(await client.terminal(id)).toMatchObject({ type: 'response', content: 'Echo: still here' });
  }

  function refusedAtOnce(): Promise<boolean> {
    return new Promise((resolve) => {
      const { port } = new URL(server.url);
      const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, 2_000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
      socket.on('error', () => undefined);
      socket.resume();
    });
  }

  it('two open chat sockets fill a per-address cap of 2; a third connection is closed at accept; a closed socket frees its slot', async () => {
    const first = await chat();
    const second = await chat();
    expect(await refusedAtOnce()).toBe(true);
    await expect(FrameClient.connect(chatUrl, bearer(token))).rejects.toThrow();
    // The sockets that hold the slots are untouched, and quiet for longer than the header
    // timeout (300 ms) without being taken for silent connections.
    await new Promise((resolve) => setTimeout(resolve, 800));
    await roundTrip(first, 'm-first');
    await roundTrip(second, 'm-second');

    first.close();
    await first.closed;
    await new Promise((resolve) => setTimeout(resolve, 100));
    const third = await chat();
    await roundTrip(third, 'm-third');
    third.close();
    second.close();
    await Promise.all([third.closed, second.closed]);
  });
});
