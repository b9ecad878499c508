/**
 * Reading an upgrade request: which of our endpoints it targets, and the bearer token it
 * carries. Pure functions over the request line and headers, so they are cheap to test and
 * never touch the socket.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { endpointQuery, matchEndpoint, type WebSocketEndpointName } from '@sentinel/api-core';

/** The subprotocol a browser offers next to its token, and the one the server selects. */
export const SENTINEL_SUBPROTOCOL = 'sentinel.v1';
/** Prefix of the subprotocol that carries a token: `bearer.<jwt>`. Never selected, never echoed. */
export const BEARER_SUBPROTOCOL_PREFIX = 'bearer.';

/** One of our WebSocket endpoints, parsed from the request target. */
export interface EndpointTarget {
  kind: WebSocketEndpointName;
  agentId: string;
  /** `?since=<seq>` (events only); undefined when absent. */
  since: number | undefined;
  /** `?ticket=` (a one-time ticket from `POST /v1/ws-tickets`); undefined when absent. Never logged. */
  ticket?: string;
}

/**
 * The endpoint `url` (the request target, e.g. `/v1/agents/a1/events?since=4`) names, matched
 * against the core's endpoint table, or undefined when the path is not one of ours (a host's
 * own WebSocket route, say). Throws SentinelError `invalid_request` for our path with a bad
 * escape or a bad `since`.
 */
export function readUpgradeTarget(url: string): EndpointTarget | undefined {
  const queryStart = url.indexOf('?');
  const match = matchEndpoint(queryStart === -1 ? url : url.slice(0, queryStart));
  if (match === undefined) return undefined;
  const { endpoint, params } = match;
  const search = queryStart === -1 ? undefined : new URLSearchParams(url.slice(queryStart + 1));
  const query = search === undefined ? {} : endpointQuery(endpoint, search);
  const ticket = search?.get('ticket') ?? undefined;
  // Every endpoint in the table is under `/v1/agents/:id/`, so `id` is always there.
  return { kind: endpoint.name, agentId: params.id as string, since: query.since, ...(ticket === undefined ? {} : { ticket }) };
}

/** The offered subprotocols, trimmed, in order (empty when the header is absent). */
function offeredSubprotocols(headers: IncomingHttpHeaders): string[] {
  const header = headers['sec-websocket-protocol'];
  if (header === undefined) return [];
  return header
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

/**
 * The `Authorization` header value to authenticate with: the header itself, or else a
 * `Bearer` built from a `bearer.<jwt>` subprotocol (browsers cannot set headers on a
 * WebSocket; docs/ARCHITECTURE.md#auth-and-tenancy). Undefined when the request carries neither.
 */
export function authorizationOf(headers: IncomingHttpHeaders): string | undefined {
  if (headers.authorization !== undefined) return headers.authorization;
  for (const protocol of offeredSubprotocols(headers)) {
    if (protocol.startsWith(BEARER_SUBPROTOCOL_PREFIX) && protocol.length > BEARER_SUBPROTOCOL_PREFIX.length) {
      return `Bearer ${protocol.slice(BEARER_SUBPROTOCOL_PREFIX.length)}`;
    }
  }
  return undefined;
}

/**
 * ws's `handleProtocols`: select `sentinel.v1` when offered. Anything else, the token above
 * all, is never echoed back in the response headers.
 */
export function selectSubprotocol(protocols: Set<string>): string | false {
  return protocols.has(SENTINEL_SUBPROTOCOL) ? SENTINEL_SUBPROTOCOL : false;
}
