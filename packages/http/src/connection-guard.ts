/**
 * Connection-level guards for the standalone server: caps on concurrent connections per client
 * address and overall, refusing extra ones at accept (destroyed at once) rather than running
 * out of descriptors (2 000 silent connections held 2 000 of them). Upgraded (WebSocket)
 * connections are the same TCP connections and count until they close.
 *
 * Silent connections need no timer here: Node 20's connection checker starts a plain HTTP
 * connection's header clock at accept (it answers 408 and closes after `headersTimeout`), and
 * under TLS at the end of the handshake. What it leaves open is a TLS connection that never
 * starts its handshake, held for `handshakeTimeout` (120 s by default): server.ts sets that to
 * the header timeout.
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { Socket } from 'node:net';

/** Default cap on concurrent connections, all clients together. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Default cap on concurrent connections from one client address. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 256;

export interface ConnectionGuardOptions {
  /** Concurrent connections overall; past it new ones are closed at accept. */
  maxConnections: number;
  /** Concurrent connections from one remote address; past it new ones from that address are closed at accept. */
  maxConnectionsPerAddress: number;
}

/**
 * Installs the guards on `server` (before Node's own 'connection' listener, so a refused socket
 * is gone before the HTTP parser is set up for it).
 */
export function guardConnections(server: http.Server | https.Server, options: ConnectionGuardOptions): void {
  // Node refuses past this itself, at accept, before any JavaScript sees the socket ('drop').
  server.maxConnections = options.maxConnections;
  const perAddress = new Map<string, number>();

  server.prependListener('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      // Already reset by the peer: nothing to serve.
      socket.destroy();
      return;
    }
    const open = perAddress.get(address) ?? 0;
    if (open >= options.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    perAddress.set(address, open + 1);
    socket.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left <= 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
  });
}
