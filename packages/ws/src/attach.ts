/**
 * `attachWebSocket`: the WebSocket transport added to an existing `http`/`https` server. It
 * never binds a port and never owns the server: one `'upgrade'` listener, a `noServer`
 * WebSocketServer, authentication on the upgrade request before any socket exists, and
 * foreign upgrade paths left to the host (ws README, "Multiple servers sharing a single
 * HTTP/S server" and "Client authentication").
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type ServerOptions } from 'ws';
import {
  API_VERSION_HEADER,
  apiVersionHeader,
  CHAT_ENDPOINT,
  endHttpServerSpan,
  EVENTS_ENDPOINT,
  httpStatusForErrorCode,
  runInContext,
  SentinelError,
  startHttpServerSpan,
  toPublicError,
  type ServerSpan,
  type ChatService,
  type CredentialSurface,
  type EventsService,
  type Principal,
  type SentinelApiSurface,
} from '@sentinel/api-core';
import { CLOSE_GOING_AWAY } from './close-codes.js';
import { watchCredentials } from './credential-watch.js';
import { serveConnection, type Connection, type ConnectionOptions, type ConnectionTarget } from './connection.js';
import { resolveWebSocketOptions, type WebSocketOptions } from './options.js';
import { refuseUpgrade } from './refuse-upgrade.js';
import type { SendQueueCounters } from './send-queue.js';
import { authorizationOf, readUpgradeTarget, selectSubprotocol, type EndpointTarget } from './upgrade-request.js';

/**
 * What the transport needs from the core: `SentinelApi` from `createSentinelApi` satisfies it.
 * Declared structurally so an embedding app can wrap or stand in for any part.
 */
export type WebSocketApi = Pick<SentinelApiSurface, 'authenticate' | 'logger'> &
  Partial<Pick<SentinelApiSurface, 'metrics'>> &
  Partial<Pick<CredentialSurface, 'authenticateTicket' | 'recheckCredential' | 'credentialRevocations'>> & {
    readonly chat: ChatService;
    readonly events: EventsService;
  };

/** Counters for operators and tests; a snapshot, cheap to read. */
export interface WebSocketStats {
  /** Open sockets. */
  clients: number;
  /** Bytes waiting in all send queues right now. */
  queuedBytes: number;
  /** The largest single send queue seen, in bytes (never above `sendQueueMaxBytes`). */
  peakQueuedBytes: number;
  /** Sockets closed with 1008 because their consumer was too slow. */
  slowConsumerCloses: number;
  /** Sockets terminated because they did not answer a ping. */
  heartbeatTerminations: number;
  /** `stream_chunk` frames merged into the chunk waiting before them because the socket was backed up. */
  coalescedChunks: number;
}

/** The attached transport. */
export interface WebSocketHandle {
  /** Open sockets. */
  readonly clients: number;
  /** See {@link WebSocketStats}. */
  readonly stats: WebSocketStats;
  /**
   * Detaches: refuses upgrades still being authorized (503), closes every socket with 1001
   * `server shutting down` (after the frames already queued), stops the ping timer, removes
   * the upgrade listener and closes the WebSocketServer. Resolves once every socket is
   * closed (a peer that never answers is destroyed after `closeTimeoutMs`). Idempotent.
   */
  close(): Promise<void>;
}

const SHUTDOWN_REASON = 'server shutting down';

/**
 * Serves `/v1/agents/:id/chat` and `/v1/agents/:id/events` (`?since=<seq>`) on `server`'s
 * upgrades. Authentication (an `Authorization: Bearer` header, or the subprotocol offer
 * `sentinel.v1, bearer.<jwt>`) and the agent check happen before the upgrade completes;
 * a refusal is a plain HTTP response (401/404/400/503, `{error, code}`) and no socket is
 * opened. Other paths are left to the host's own `'upgrade'` listeners, or answered 404 when
 * this is the only one. Options: see {@link WebSocketOptions} (all have defaults).
 * The WebSocketServer is also closed when `server` emits `'close'`.
 */
export function attachWebSocket(server: HttpServer | HttpsServer, api: WebSocketApi, options: WebSocketOptions = {}): WebSocketHandle {
  const settings = resolveWebSocketOptions(options, api.logger);
  const logger = settings.logger;
  // `closeTimeout` exists in ws 8.23 (how long a closing socket waits for the peer) but not
  // yet in @types/ws.
  const serverOptions: ServerOptions & { closeTimeout: number } = {
    noServer: true,
    // Our own Set below carries per-socket state (heartbeat, queue); ws's copy would be a second one.
    clientTracking: false,
    maxPayload: settings.maxPayload,
    perMessageDeflate: settings.perMessageDeflate,
    handleProtocols: selectSubprotocol,
    closeTimeout: settings.closeTimeoutMs,
  };
  const wss = new WebSocketServer(serverOptions);
  // A WebSocketServer in noServer mode has no listening socket to fail; its 'error' can only
  // come from a bug, and must not become an uncaught exception.
  wss.on('error', (err) => logger.error('websocket server error', { error: err.message }));
  // The 101 carries the API version like every HTTP response (docs/VERSIONING.md).
  const versionLine = `${API_VERSION_HEADER}: ${apiVersionHeader()}`;
  wss.on('headers', (headers) => headers.push(versionLine));

  const connections = new Set<Connection>();
  const counters: SendQueueCounters & { heartbeatTerminations: number } = {
    peakQueuedBytes: 0,
    slowConsumerCloses: 0,
    heartbeatTerminations: 0,
    coalescedChunks: 0,
  };
  let closing: Promise<void> | undefined;
  // One object for every connection: per-socket copies of settings (or closures) add up to
  // real memory with thousands of idle sockets.
  const connectionOptions: ConnectionOptions = {
    highWaterMarkBytes: settings.highWaterMarkBytes,
    maxQueuedBytes: settings.sendQueueMaxBytes,
    counters,
    logger,
    // Resolved once per channel here, so a frame costs one counter increment.
    ...(api.metrics === undefined ? {} : { metrics: { chat: api.metrics.webSocketChannel('chat'), events: api.metrics.webSocketChannel('events') } }),
    onClosed: (closed) => {
      connections.delete(closed);
      credentials.remove(closed);
    },
  };
  const credentials = watchCredentials(api, { recheckIntervalMs: settings.credentialRecheckIntervalMs, logger });

  const heartbeat = setInterval(() => {
    for (const connection of connections) {
      if (!connection.alive) {
        counters.heartbeatTerminations++;
        logger.info('websocket peer missed a ping, terminating');
        connection.ws.terminate();
        continue;
      }
      connection.alive = false;
      connection.ws.ping();
    }
  }, settings.pingIntervalMs);
  // The heartbeat must never be what keeps a process alive.
  heartbeat.unref();

  const prepare = async (principal: Principal, endpoint: EndpointTarget): Promise<ConnectionTarget> => {
    if (endpoint.kind === 'chat') return { kind: 'chat', prepared: await api.chat.prepare(principal, endpoint.agentId) };
    const subscribeOptions = endpoint.since === undefined ? {} : { since: endpoint.since };
    return { kind: 'events', prepared: await api.events.prepare(principal, endpoint.agentId, subscribeOptions) };
  };

  // A ticket (`?ticket=`, for browsers) wins over a header; the core consumes it (once) and decides.
  const authenticateUpgrade = (req: IncomingMessage, endpoint: EndpointTarget): Promise<Principal> => {
    if (endpoint.ticket === undefined) return api.authenticate(authorizationOf(req.headers));
    if (api.authenticateTicket === undefined) return Promise.reject(new SentinelError('unauthorized', 'tickets are not accepted here'));
    return api.authenticateTicket(endpoint.ticket, endpoint.kind, endpoint.agentId);
  };

  const accept = async (req: IncomingMessage, socket: Duplex, head: Buffer, endpoint: EndpointTarget, traced: ServerSpan): Promise<void> => {
    // Until ws owns the socket nothing else listens for its errors (node:http removed its own).
    const onSocketError = (): void => {
      socket.destroy();
    };
    socket.on('error', onSocketError);
    try {
      if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
        throw new SentinelError('invalid_request', 'only WebSocket upgrades are served here');
      }
      const principal = await authenticateUpgrade(req, endpoint);
      // Re-entered: after the await above the upgrade's span is not the active one (no async tracking).
      const target = await runInContext(traced.context, () => prepare(principal, endpoint));
      if (closing) throw new SentinelError('unavailable', SHUTDOWN_REASON);
      if (socket.destroyed) {
        endHttpServerSpan(traced.span, 499, true);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        socket.off('error', onSocketError);
        // The socket's messages (and the turns they start) are children of the upgrade's span.
        const connection = serveConnection(ws, socket, target, principal.username, connectionOptions, traced.context);
        endHttpServerSpan(traced.span, 101);
        if (ws.readyState === ws.OPEN) {
          connections.add(connection);
          credentials.add(connection, principal);
        }
      });
    } catch (err) {
      const publicError = toPublicError(err);
      endHttpServerSpan(traced.span, httpStatusForErrorCode(publicError.code));
      if (publicError.code === 'internal') {
        logger.error('websocket upgrade failed', { stream: endpoint.kind, error: err instanceof Error ? err.message : String(err) });
      } else {
        logger.debug('websocket upgrade refused', { stream: endpoint.kind, code: publicError.code });
      }
      refuseUpgrade(socket, publicError);
    }
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    let endpoint: EndpointTarget | undefined;
    try {
      endpoint = readUpgradeTarget(req.url ?? '/');
    } catch (err) {
      socket.on('error', () => socket.destroy());
      refuseUpgrade(socket, toPublicError(err));
      return;
    }
    if (endpoint === undefined) {
      // Someone else's path: another listener (the host's own WebSocket routes) answers it.
      // Alone, we are the only one who can tell the client there is nothing here.
      if (server.listenerCount('upgrade') > 1) return;
      socket.on('error', () => socket.destroy());
      refuseUpgrade(socket, new SentinelError('not_found', 'no WebSocket endpoint at this path'));
      return;
    }
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    const route = endpoint.kind === 'chat' ? CHAT_ENDPOINT.path : EVENTS_ENDPOINT.path;
    const scheme = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
    // A child of the client's traceparent; authentication and the agent lookup run inside it.
    const traced = startHttpServerSpan(req.method ?? 'GET', path, req.headers, scheme, route);
    void runInContext(traced.context, () => accept(req, socket, head, endpoint, traced));
  };

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      server.off('upgrade', onUpgrade);
      server.off('close', onServerClose);
      clearInterval(heartbeat);
      credentials.close();
      await Promise.all([...connections].map((connection) => connection.closeSocket(CLOSE_GOING_AWAY, SHUTDOWN_REASON)));
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    })());

  const onServerClose = (): void => {
    void close();
  };

  server.on('upgrade', onUpgrade);
  server.on('close', onServerClose);

  return {
    get clients() {
      return connections.size;
    },
    get stats() {
      let queuedBytes = 0;
      for (const connection of connections) queuedBytes += connection.pendingBytes;
      return {
        clients: connections.size,
        queuedBytes,
        peakQueuedBytes: counters.peakQueuedBytes,
        slowConsumerCloses: counters.slowConsumerCloses,
        heartbeatTerminations: counters.heartbeatTerminations,
        coalescedChunks: counters.coalescedChunks,
      };
    },
    close,
  };
}
