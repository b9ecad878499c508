/**
 * Connection-level guards for the standalone server: Node's `headersTimeout` only starts at a
 * request's first byte, so a TCP connection that never sends one was held forever (2 000 of
 * them held 2 000 descriptors for minutes). This closes such connections after the header
 * timeout, and caps concurrent connections per client address and overall, refusing extra ones
 * at accept (destroyed at once) rather than running out of descriptors. Upgraded (WebSocket)
 * connections are the same TCP connections and count until they close.
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** Default cap on concurrent connections, all clients together. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Default cap on concurrent connections from one client address. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;

export interface ConnectionGuardOptions {
  /** Milliseconds a new connection has to send its first byte (after the TLS handshake under TLS) before it is closed; 0: never. */
  firstByteTimeoutMs: number;
  /** Concurrent connections overall; past it new ones are closed at accept. */
  maxConnections: number;
  /** Concurrent connections from one remote address; past it new ones from that address are closed at accept. */
  maxConnectionsPerAddress: number;
}

/** Counters for operators and tests. */
export interface ConnectionGuardStats {
  /** Connections refused because their address was at its cap. */
  refusedPerAddress: number;
  /** Connections closed because they sent nothing within the first-byte timeout. */
  idleClosed: number;
}

/**
 * Installs the guards on `server` (before Node's own 'connection' listener, so a refused socket
 * is gone before the HTTP parser is set up for it). Returns live counters.
 */
export function guardConnections(server: http.Server | https.Server, options: ConnectionGuardOptions, tls: boolean): ConnectionGuardStats {
  const stats: ConnectionGuardStats = { refusedPerAddress: 0, idleClosed: 0 };
  // Node refuses past this itself, at accept, before any JavaScript sees the socket ('drop').
  server.maxConnections = options.maxConnections;
  const perAddress = new Map<string, number>();

  const armFirstByteTimer = (socket: Socket | TLSSocket, destroyTarget: Socket): void => {
    // 0 turns Node's header timeout off; it turns this one off too.
    if (!(options.firstByteTimeoutMs > 0)) return;
    const timer = setTimeout(() => {
      // Any byte means a request began: from there Node's own headersTimeout and requestTimeout apply.
      if (socket.bytesRead === 0 && !destroyTarget.destroyed) {
        stats.idleClosed++;
        destroyTarget.destroy();
      }
    }, options.firstByteTimeoutMs);
    // Never what keeps a process alive; cleared with the socket so thousands of short
    // connections do not leave thousands of pending timers.
    timer.unref();
    destroyTarget.once('close', () => clearTimeout(timer));
  };

  server.prependListener('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      // Already reset by the peer: nothing to serve.
      socket.destroy();
      return;
    }
    const open = perAddress.get(address) ?? 0;
    if (open >= options.maxConnectionsPerAddress) {
      stats.refusedPerAddress++;
      socket.destroy();
      return;
    }
    perAddress.set(address, open + 1);
    socket.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left <= 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
    // Under TLS the raw socket carries the handshake; the handshake has its own timeout
    // (handshakeTimeout) and the first request byte is counted on the TLS socket.
    if (!tls) armFirstByteTimer(socket, socket);
  });
  if (tls) {
    server.on('secureConnection', (socket: TLSSocket) => armFirstByteTimer(socket, socket));
  }
  return stats;
}
