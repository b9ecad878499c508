/**
 * `createServer` and `listen`: the standalone host, a thin layer over `toNodeListener` with
 * timeouts that protect against slow clients and a graceful close.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { SentinelApiSurface } from '@sentinel/api-core';
import { CONSOLE_PATH, resolveConsoleDir } from './console.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, guardConnections } from './connection-guard.js';
import { toNodeListener, type NodeListener, type NodeListenerOptions } from './listener.js';

export interface ServerOptions extends NodeListenerOptions {
  /** Serve HTTPS with this PEM certificate and key. Default: none (plain HTTP). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Milliseconds a client has to send the request headers (slowloris guard), counted from the
   * accept: a connection that sends nothing is answered 408 and closed. Under TLS the handshake
   * gets as long again (handshakeTimeout), then the same clock runs. Default 15 000.
   */
  headersTimeout?: number;
  /** Milliseconds a client has to send a whole request. Default 60 000. */
  requestTimeout?: number;
  /** Milliseconds an idle keep-alive connection stays open. Default 5 000. */
  keepAliveTimeout?: number;
  /**
   * Concurrent connections, all clients together (WebSockets included); past it new connections
   * are closed at accept. Default 10 000.
   */
  maxConnections?: number;
  /**
   * Concurrent connections from one client address (WebSockets included); past it new ones from
   * that address are closed at accept while its others keep working. Behind a reverse proxy every
   * client shares the proxy's address: raise it there. Default 256.
   */
  maxConnectionsPerAddress?: number;
}

export interface ListenOptions extends ServerOptions {
  /** TCP port; 0 picks any free port. Default 8080. */
  port?: number;
  /** Interface to bind. Default `'localhost'`. */
  host?: string;
  /** How long `close()` lets in-flight requests finish before cutting their connections. Default 10 000 ms. */
  shutdownTimeoutMs?: number;
}

export interface RunningServer {
  readonly server: http.Server | https.Server;
  /** Base URL from the bound address, e.g. `http://127.0.0.1:8080` (IPv6 in brackets). */
  readonly url: string;
  /** The bound port (the real one when 0 was asked). */
  readonly port: number;
  /** The bound address, e.g. `127.0.0.1` or `::1`. */
  readonly host: string;
  /** The directory the web console at `/console/` is served from; undefined when there is no console. */
  readonly consoleDir: string | undefined;
  /**
   * Graceful stop: stops accepting, ends streamed responses, closes idle keep-alive connections,
   * lets in-flight requests finish for up to `shutdownTimeoutMs`, then cuts what is left. Resolves once the server is
   * closed. Does not close the api: its owner does.
   */
  close(): Promise<void>;
}

// Few real clients send more than 30 headers; Node's default of 2000 only helps abuse.
const MAX_HEADERS_COUNT = 100;

/** Creates (does not start) an HTTP server, or HTTPS when `options.tls` is given, serving `api`. */
export function createServer(api: SentinelApiSurface, options: ServerOptions = {}): http.Server | https.Server {
  return buildServer(api, options).server;
}

/** The server and its listener (whose open streams a shutdown must end). */
function buildServer(api: SentinelApiSurface, options: ServerOptions): { server: http.Server | https.Server; listener: NodeListener; consoleDir: string | undefined } {
  // Resolved once here, so the listener and the `/` redirect agree on whether there is a console.
  const consoleDir = resolveConsoleDir(options.console);
  const listener = toNodeListener(api, { ...options, console: consoleDir === undefined ? false : { dir: consoleDir } });
  const handler = consoleDir === undefined ? listener : redirectRootToConsole(listener);
  const requestTimeout = options.requestTimeout ?? 60_000;
  // Node rejects a headers timeout longer than the request timeout.
  const headersTimeout = requestTimeout > 0 ? Math.min(options.headersTimeout ?? 15_000, requestTimeout) : (options.headersTimeout ?? 15_000);
  const maxConnections = positiveInteger(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 'maxConnections');
  const maxConnectionsPerAddress = positiveInteger(options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, 'maxConnectionsPerAddress');
  const serverOptions: http.ServerOptions = {
    requestTimeout,
    headersTimeout,
    // Node checks the two timeouts above on this period (default 30 s, far longer than the timeouts).
    connectionsCheckingInterval: Math.max(250, Math.min(2_000, headersTimeout)),
  };
  const server = options.tls
    ? // Node's header clock starts only after the handshake: without this a TCP connection that
      // never starts one is held for Node's default 120 s.
      https.createServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key, handshakeTimeout: headersTimeout }, handler)
    : http.createServer(serverOptions, handler);
  server.keepAliveTimeout = options.keepAliveTimeout ?? 5_000;
  server.maxHeadersCount = MAX_HEADERS_COUNT;
  guardConnections(server, { maxConnections, maxConnectionsPerAddress });
  return { server, listener, consoleDir };
}

/**
 * `GET /` (and HEAD) on the standalone server goes to the console: a person who types the
 * server's address into a browser lands on something. Only here: a host that mounts the
 * listener owns its own `/`.
 */
function redirectRootToConsole(listener: NodeListener): http.RequestListener {
  return (req, res) => {
    const url = req.url ?? '/';
    if ((req.method === 'GET' || req.method === 'HEAD') && (url === '/' || url.startsWith('/?'))) {
      // 302, not 301: browsers keep a 301 forever, and a later start may run with --no-console.
      res.writeHead(302, { Location: `${CONSOLE_PATH}/`, 'Content-Length': 0, 'Cache-Control': 'no-cache' });
      res.end();
      return;
    }
    listener(req, res);
  };
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return value;
}

function formatUrlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

/**
 * Keeps the set of responses in progress so a shutdown can ask each to be the last on its
 * connection, and close connections as soon as they fall idle.
 */
function trackResponses(server: http.Server | https.Server): { beginShutdown(): void } {
  let closing = false;
  const inProgress = new Set<http.ServerResponse>();
  server.prependListener('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    if (closing && !res.headersSent) res.setHeader('Connection', 'close');
    inProgress.add(res);
    res.once('close', () => {
      inProgress.delete(res);
      if (closing) server.closeIdleConnections();
    });
  });
  return {
    beginShutdown() {
      closing = true;
      for (const res of inProgress) if (!res.headersSent) res.setHeader('Connection', 'close');
    },
  };
}

/**
 * Starts a server for `api` and resolves once it listens. Rejects with the original listen
 * error (its `code`, e.g. `EADDRINUSE` or `EACCES`, kept) so a CLI can print one clear line.
 */
export async function listen(api: SentinelApiSurface, options: ListenOptions = {}): Promise<RunningServer> {
  const { server, listener, consoleDir } = buildServer(api, options);
  const tracker = trackResponses(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? 'localhost', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `${options.tls ? 'https' : 'http'}://${formatUrlHost(address.address)}:${address.port}`;
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 10_000;
  let closed: Promise<void> | undefined;

  return {
    server,
    url,
    port: address.port,
    host: address.address,
    consoleDir,
    close() {
      closed ??= new Promise<void>((resolve) => {
        tracker.beginShutdown();
        // Streams (logs follow, SSE) never end by themselves: end them so close() does not wait.
        listener.closeStreams();
        const forceTimer = setTimeout(() => server.closeAllConnections(), shutdownTimeoutMs);
        forceTimer.unref();
        server.close(() => {
          clearTimeout(forceTimer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}
