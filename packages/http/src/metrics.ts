/**
 * `GET /metrics` (Prometheus text exposition format), off the `/v1` tree like a probe, two ways:
 * on the main listener for a credential with scope `metrics:read` (an admin's token or API key),
 * and on a listener of its own ({@link listenMetrics}, `sentinel api --metrics-port`) without auth,
 * bound to loopback by default, for a Prometheus on the same host or network namespace.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SentinelError, toPublicError, type SentinelMetrics } from '@sentinel/api-core';
import { sendError } from './respond.js';

/** Where the metrics are served. */
export const METRICS_PATH = '/metrics';

const ALLOW = ['GET', 'HEAD'];

/**
 * Writes the exposition text of `metrics`. GET and HEAD only (405 otherwise); never cached
 * (each scrape is a fresh reading). Throws SentinelError `method_not_allowed`.
 */
export async function sendMetrics(res: http.ServerResponse, method: string, metrics: SentinelMetrics): Promise<void> {
  if (method !== 'GET' && method !== 'HEAD') throw new SentinelError('method_not_allowed', `method ${method} is not allowed on ${METRICS_PATH}`, { allow: ALLOW });
  const text = await metrics.text();
  if (res.destroyed) return;
  res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(method === 'HEAD' ? undefined : text);
}

export interface MetricsListenOptions {
  /** TCP port; 0 picks a free one. Required. */
  port: number;
  /** Interface to bind. Default `127.0.0.1` (loopback: the listener has no auth). */
  host?: string;
}

/** A started metrics listener. */
export interface MetricsServer {
  readonly server: http.Server;
  /** `http://host:port` of the bound address. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Stops it (idle scrape connections are closed at once). Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `metrics` at `GET /metrics` on a port of its own, without authentication: anyone who
 * can reach the port reads them, so it binds loopback unless told otherwise. Other paths are 404.
 * Rejects with the listen error (`EADDRINUSE`, ...) like `listen`.
 */
export async function listenMetrics(metrics: SentinelMetrics, options: MetricsListenOptions): Promise<MetricsServer> {
  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const url = req.url ?? '/';
    const queryStart = url.indexOf('?');
    const path = queryStart === -1 ? url : url.slice(0, queryStart);
    const method = req.method ?? 'GET';
    const answer = path === METRICS_PATH ? sendMetrics(res, method, metrics) : Promise.reject(new SentinelError('not_found', `no route for ${method} ${path}`));
    answer.catch((err: unknown) => {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      sendError(res, toPublicError(err), method === 'HEAD');
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    server,
    url: `http://${host}:${address.port}`,
    port: address.port,
    host: address.address,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}
