/**
 * Connection guards of the standalone server, with real raw TCP sockets: a connection that never
 * sends a byte used to be held forever (Node's header timeout starts at the first byte); the
 * caps per address and overall close extra connections at accept instead of running out of
 * descriptors, and never touch connections in use.
 */
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listen, type ListenOptions, type RunningServer } from '@sentinel/api-http';
import { createFixtureApi } from './fixture-api.js';
import { closedByPeer, connect, readResponse } from './raw-http.js';

const running: RunningServer[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function start(options: ListenOptions): Promise<RunningServer> {
  const server = await listen(createFixtureApi().api, { port: 0, host: '127.0.0.1', logRequests: false, shutdownTimeoutMs: 500, ...options });
  running.push(server);
  return server;
}

async function open(server: RunningServer): Promise<net.Socket> {
  const socket = await connect(server.url);
  sockets.push(socket);
  return socket;
}

/** One keep-alive GET /v1/health on `socket`; resolves with the status. */
async function health(socket: net.Socket): Promise<number> {
  const reply = readResponse(socket, 3_000);
  socket.write('GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  return (await reply).status;
}

/** True when the peer closes `socket` within `ms` (without having sent anything). */
async function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  let received = 0;
  socket.on('data', (chunk: Buffer) => (received += chunk.length));
  const closed = await Promise.race([closedByPeer(socket).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
  expect(received).toBe(0);
  return closed;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function openConnectionsOf(server: RunningServer): Promise<number> {
  return new Promise((resolve, reject) => server.server.getConnections((err, count) => (err ? reject(err) : resolve(count))));
}

describe('idle connections', () => {
  it('closes a connection that sends nothing within the header timeout', async () => {
    const server = await start({ headersTimeout: 300, requestTimeout: 2_000 });
    const silent = await open(server);
    const started = Date.now();
    expect(await closedWithin(silent, 3_000)).toBe(true);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2_000);
    await sleep(50);
    expect(await openConnectionsOf(server)).toBe(0);
  });

  it('keeps a keep-alive connection in use past the header timeout, and a slow request in flight', async () => {
    const server = await start({ headersTimeout: 300, requestTimeout: 5_000, keepAliveTimeout: 2_000 });
    const busy = await open(server);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      statuses.push(await health(busy));
      await sleep(150);
    }
    // About a second on one connection: three header timeouts, all requests answered.
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);

    const slow = await open(server);
    const reply = readResponse(slow, 5_000);
    slow.write('GET /v1/slow?ms=900 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect((await reply).status).toBe(200);
    expect(await health(slow)).toBe(200);
    expect(busy.destroyed).toBe(false);
  });

  it('with headersTimeout 0 (Node: no header timeout) leaves silent connections alone', async () => {
    const server = await start({ headersTimeout: 0, requestTimeout: 0 });
    const silent = await open(server);
    expect(await closedWithin(silent, 600)).toBe(false);
    expect(await health(silent)).toBe(200);
  });
});

describe('connection caps', () => {
  it('over the per-address cap new connections close at once; the others keep working; freed slots are reused', async () => {
    const server = await start({ maxConnectionsPerAddress: 3 });
    const held = [await open(server), await open(server), await open(server)];
    for (const socket of held) expect(await health(socket)).toBe(200);

    const extra = await open(server);
    const started = Date.now();
    expect(await closedWithin(extra, 2_000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const socket of held) expect(await health(socket)).toBe(200);

    held[0]?.destroy();
    await sleep(100);
    const next = await open(server);
    expect(await health(next)).toBe(200);
    // Still at the cap: the next one is refused again.
    expect(await closedWithin(await open(server), 2_000)).toBe(true);
  });

  it('counts addresses separately', async () => {
    const server = await start({ maxConnectionsPerAddress: 1, host: '::' });
    const { port } = server.server.address() as AddressInfo;
    const v4 = await connect(`http://127.0.0.1:${port}`);
    sockets.push(v4);
    expect(await health(v4)).toBe(200);
    const connectV6 = () =>
      new Promise<net.Socket | undefined>((resolve) => {
        const socket = net.connect({ host: '::1', port }, () => resolve(socket));
        socket.once('error', () => resolve(undefined));
      });
    const v6 = await connectV6();
    if (v6 === undefined) return; // no IPv6 loopback on this machine: the IPv4 half still ran
    sockets.push(v6);
    expect(await health(v6)).toBe(200);
    const secondV6 = await connectV6();
    expect(secondV6).toBeDefined();
    sockets.push(secondV6 as net.Socket);
    expect(await closedWithin(secondV6 as net.Socket, 2_000)).toBe(true);
    expect(await health(v4)).toBe(200);
  });

  it('over the overall cap new connections close at once; the others keep working', async () => {
    const server = await start({ maxConnections: 2 });
    const held = [await open(server), await open(server)];
    for (const socket of held) expect(await health(socket)).toBe(200);
    expect(await closedWithin(await open(server), 2_000)).toBe(true);
    for (const socket of held) expect(await health(socket)).toBe(200);
    held[1]?.destroy();
    await sleep(100);
    expect(await health(await open(server))).toBe(200);
  });

  it('refuses caps that are not positive integers', async () => {
    await expect(start({ maxConnections: 0 })).rejects.toThrow(/maxConnections must be a positive integer/);
    await expect(start({ maxConnectionsPerAddress: 1.5 })).rejects.toThrow(/maxConnectionsPerAddress must be a positive integer/);
  });
});
