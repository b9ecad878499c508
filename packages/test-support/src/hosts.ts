/**
 * Mounts a SentinelApiSurface in every host the library promises to work in, so one spec runs
 * against all of them (docs/ARCHITECTURE.md#testing): the standalone server, a bare node:http server, Express 5
 * and Fastify 5. Each host keeps one route of its own to prove the api coexists with it.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { SentinelApiSurface } from '@sentinel/api-core';
import { listen, toNodeListener, type NodeListenerOptions } from '@sentinel/api-http';

export type HostName = 'standalone' | 'node:http' | 'express' | 'fastify';

/** Every host, for `describe.each(HOSTS)`. */
export const HOSTS: readonly HostName[] = ['standalone', 'node:http', 'express', 'fastify'];

/** The host's own route, answered by the host itself where it has routes of its own. */
export const HOST_ROUTE = '/host-route';

export interface MountedApi {
  name: HostName;
  /** e.g. `http://127.0.0.1:41234`, no trailing slash. */
  baseUrl: string;
  /** True when the host answers {@link HOST_ROUTE} itself (Express, Fastify). */
  hasOwnRoutes: boolean;
  /** The host's HTTP server, e.g. to attach the WebSocket transport to it. */
  server: http.Server;
  close(): Promise<void>;
}

function listenOnFreePort(server: http.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function mountOnNodeHttp(api: SentinelApiSurface, options: NodeListenerOptions | undefined): Promise<MountedApi> {
  const server = http.createServer(toNodeListener(api, options));
  return { name: 'node:http', baseUrl: await listenOnFreePort(server), hasOwnRoutes: false, server, close: () => closeServer(server) };
}

async function mountOnExpress(api: SentinelApiSurface, options: NodeListenerOptions | undefined): Promise<MountedApi> {
  const app = express();
  // The listener first: for /host-route it must call next() and let Express continue.
  app.use(toNodeListener(api, options));
  app.get(HOST_ROUTE, (_req, res) => {
    res.json({ host: 'express' });
  });
  const server = http.createServer(app);
  return { name: 'express', baseUrl: await listenOnFreePort(server), hasOwnRoutes: true, server, close: () => closeServer(server) };
}

async function mountOnFastify(api: SentinelApiSurface, options: NodeListenerOptions | undefined): Promise<MountedApi> {
  const listener = toNodeListener(api, options);
  const handOver = (request: FastifyRequest, reply: FastifyReply) => {
    // From here on the listener owns the raw request and response; Fastify must not reply.
    reply.hijack();
    listener(request.raw, reply.raw);
  };
  const app = Fastify({
    logger: false,
    routerOptions: { maxParamLength: 2048 },
    // A malformed escape in a /v1 path is the api's to answer (400 in its own shape).
    frameworkErrors: (_error, request, reply) => {
      if (request.raw.url?.startsWith('/v1/')) return handOver(request, reply);
      reply.hijack();
      reply.raw.writeHead(400, { 'Content-Type': 'text/plain' });
      reply.raw.end('bad request');
    },
  });
  app.get(HOST_ROUTE, async () => ({ host: 'fastify' }));
  await app.register(async (scope) => {
    // Leave every body unread: the listener streams it with its own cap and content types.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    scope.all('/v1', handOver);
    scope.all('/v1/*', handOver);
    // The api's docs pages (on unless `docs: false`; then the listener answers them 404).
    scope.all('/docs', handOver);
    scope.all('/docs/*', handOver);
    // The web console, mounted the same way (on unless `console: false`).
    scope.all('/console', handOver);
    scope.all('/console/*', handOver);
    // Prometheus metrics (on unless `metrics: false` or the api has none).
    scope.all('/metrics', handOver);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    name: 'fastify',
    baseUrl: `http://127.0.0.1:${port}`,
    hasOwnRoutes: true,
    server: app.server,
    close: async () => {
      app.server.closeAllConnections();
      await app.close();
    },
  };
}

/** Mounts `api` in `host` on 127.0.0.1 and a free port. */
export async function mountApi(host: HostName, api: SentinelApiSurface, options?: NodeListenerOptions): Promise<MountedApi> {
  switch (host) {
    case 'standalone': {
      const running = await listen(api, { ...options, port: 0, host: '127.0.0.1', shutdownTimeoutMs: 1_000 });
      // Without `tls` the standalone server is a plain http.Server.
      return { name: 'standalone', baseUrl: running.url, hasOwnRoutes: false, server: running.server as http.Server, close: () => running.close() };
    }
    case 'node:http':
      return mountOnNodeHttp(api, options);
    case 'express':
      return mountOnExpress(api, options);
    case 'fastify':
      return mountOnFastify(api, options);
  }
}
