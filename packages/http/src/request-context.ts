/**
 * The RouteContext of one request. `log`, `signal` and `origin` are built on first use only:
 * most handlers touch none of them, and this runs on every request. They are own enumerable
 * getters, so a core that spreads the context (`{...ctx}`) still gets their values.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger, Principal, RequestOrigin, RouteContext } from '@sentinel/api-core';

/** A context whose `principal` the listener fills in after authentication. */
export interface RequestContext extends RouteContext {
  principal: Principal | null;
}

export interface RequestContextHandle {
  readonly context: RequestContext;
  /** Marks the client gone: aborts `context.signal` (now, or when first read). */
  clientGone(): void;
}

const VALID_HOST = /^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$/;

function firstValue(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const comma = value.indexOf(',');
  const first = (comma === -1 ? value : value.slice(0, comma)).trim();
  return first === '' ? undefined : first;
}

function validHost(value: string | undefined): string | undefined {
  return value !== undefined && VALID_HOST.test(value) ? value : undefined;
}

function localAuthority(socket: Socket): string {
  const address = socket.localAddress;
  if (!address) return 'localhost';
  const host = address.includes(':') ? `[${address}]` : address;
  return `${host}:${socket.localPort ?? 0}`;
}

/**
 * How the client reached us. The Host header is used only when it looks like a host name or
 * an IP literal: it ends up in URLs we hand out (agent endpoints), so no injection through it.
 */
export function requestOriginOf(req: IncomingMessage, trustProxy: boolean): RequestOrigin {
  const socket = req.socket as Socket & { encrypted?: boolean };
  let secure = socket.encrypted === true;
  let host: string | undefined;
  if (trustProxy) {
    const proto = firstValue(req.headers['x-forwarded-proto']);
    if (proto !== undefined) secure = proto.toLowerCase() === 'https';
    host = validHost(firstValue(req.headers['x-forwarded-host']));
  }
  host ??= validHost(req.headers.host) ?? localAuthority(socket);
  return { secure, host };
}

/** The client's address: the socket's peer, or the first X-Forwarded-For hop when the proxy is trusted. */
export function remoteAddressOf(req: IncomingMessage, trustProxy: boolean): string {
  const forwarded = trustProxy ? firstValue(req.headers['x-forwarded-for']) : undefined;
  return forwarded ?? req.socket.remoteAddress ?? '';
}

export function createRequestContext(
  req: IncomingMessage,
  requestId: string,
  logger: Logger,
  trustProxy: boolean,
): RequestContextHandle {
  let controller: AbortController | undefined;
  let gone = false;
  let log: Logger | undefined;
  let origin: RequestOrigin | undefined;
  let remoteAddress: string | undefined;

  const context: RequestContext = {
    principal: null,
    requestId,
    get signal() {
      if (!controller) {
        controller = new AbortController();
        if (gone) controller.abort();
      }
      return controller.signal;
    },
    get log() {
      return (log ??= logger.child({ request_id: requestId }));
    },
    get origin() {
      return (origin ??= requestOriginOf(req, trustProxy));
    },
    get remoteAddress() {
      return (remoteAddress ??= remoteAddressOf(req, trustProxy));
    },
  };

  return {
    context,
    clientGone() {
      gone = true;
      controller?.abort();
    },
  };
}
