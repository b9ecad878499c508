/**
 * The WebSocket endpoints as data (docs/ARCHITECTURE.md#the-protocol), like the route table is
 * for REST: path, parameters, auth level, query and the frames each way. The `ws` transport
 * matches upgrade requests against this table and the agent resource builds its `endpoints`
 * URLs from it, so the two cannot disagree.
 */
import { insufficientScope, SentinelError } from '../contract/errors.js';
import type { Principal } from '../contract/models.js';
import type { AuthLevel, JsonSchema, RequestOrigin } from '../contract/route.js';
import { hasScope, type Scope } from '../contract/scopes.js';
import { CLIENT_FRAME_SCHEMAS } from './client-frames.js';
import type { ServerFrameType } from './frames.js';
import { SERVER_FRAME_SCHEMAS } from './server-frames.js';

/** The WebSocket endpoints: also the members of the API that serve them (`api.chat`, `api.events`). */
export type WebSocketEndpointName = 'chat' | 'events';

/** A `:name` segment of an endpoint's path. */
export interface EndpointPathParam {
  /** What one raw (still percent-encoded) path segment must match, without anchors. */
  pattern: string;
  /** What it names, for messages and documents ("agent id"). */
  description: string;
}

/**
 * A query parameter of an endpoint. Every one today is a non-negative integer (`since`), given
 * in decimal without leading zeros; the transport parses it with {@link endpointQuery}.
 */
export interface EndpointQueryParam {
  description: string;
}

/** One WebSocket endpoint. */
export interface WebSocketEndpointDef {
  name: WebSocketEndpointName;
  /** Path with `:name` parameters, e.g. `/v1/agents/:id/chat`. */
  path: string;
  /** One line for documents. */
  summary: string;
  /** Checked on the upgrade request, before the upgrade completes. */
  auth: AuthLevel;
  /** The scope a credential needs, checked on the upgrade request with `auth`. */
  scope: Scope;
  params: Readonly<Record<string, EndpointPathParam>>;
  query: Readonly<Record<string, EndpointQueryParam>>;
  /** The frames a client may send, by `type` (none: the endpoint is read-only). */
  clientFrames: Readonly<Record<string, JsonSchema>>;
  /** The frames the server sends, by `type`. */
  serverFrames: Readonly<Partial<Record<ServerFrameType, JsonSchema>>>;
}

const AGENT_ID: EndpointPathParam = { pattern: '[^/]+', description: 'agent id' };

function serverFrames(...types: ServerFrameType[]): Partial<Record<ServerFrameType, JsonSchema>> {
  return Object.fromEntries(types.map((type) => [type, SERVER_FRAME_SCHEMAS[type]]));
}

/** The chat endpoint; served by `api.chat` (`AgentChatService`, protocol/chat.ts). */
export const CHAT_ENDPOINT: WebSocketEndpointDef = {
  name: 'chat',
  path: '/v1/agents/:id/chat',
  summary: 'A conversation with the agent: messages in, streamed answers out',
  auth: 'user',
  scope: 'agents:chat',
  params: { id: AGENT_ID },
  query: {},
  clientFrames: CLIENT_FRAME_SCHEMAS,
  serverFrames: serverFrames('event', 'stream_start', 'stream_chunk', 'stream_end', 'response', 'tool_result', 'error', 'tool_approval_required'),
};

/** The events endpoint; served by `api.events` (`AgentEventsService`, protocol/events.ts). */
export const EVENTS_ENDPOINT: WebSocketEndpointDef = {
  name: 'events',
  path: '/v1/agents/:id/events',
  summary: "The agent's event stream: a status snapshot, then stored and live events in seq order",
  auth: 'user',
  scope: 'agents:read',
  params: { id: AGENT_ID },
  query: { since: { description: 'Replay the stored events after this seq first, then continue live' } },
  clientFrames: {},
  // `error`: the answer to anything a client sends on this read-only stream.
  serverFrames: serverFrames('event', 'error'),
};

/**
 * Refuses a principal whose credential lacks the endpoint's scope (`insufficient_scope`):
 * the services call it in `prepare`, so every transport checks it before the upgrade.
 */
export function checkEndpointScope(endpoint: WebSocketEndpointDef, principal: Principal): void {
  if (!hasScope(principal, endpoint.scope)) throw insufficientScope(endpoint.scope);
}

/** Every WebSocket endpoint. */
export const WEBSOCKET_ENDPOINTS: readonly WebSocketEndpointDef[] = [CHAT_ENDPOINT, EVENTS_ENDPOINT];

/** A path that names one of the endpoints, with its decoded path parameters. */
export interface EndpointMatch {
  endpoint: WebSocketEndpointDef;
  params: Record<string, string>;
}

const PARAM_SEGMENT = /^:([A-Za-z_][A-Za-z0-9_]*)$/;

interface CompiledEndpoint {
  endpoint: WebSocketEndpointDef;
  regex: RegExp;
  /** The path's parameter names, in the order of the regex's groups. */
  names: string[];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function compile(endpoint: WebSocketEndpointDef): CompiledEndpoint {
  const names: string[] = [];
  const source = endpoint.path
    .split('/')
    .map((segment) => {
      const name = PARAM_SEGMENT.exec(segment)?.[1];
      if (name === undefined) return escapeRegExp(segment);
      const param = endpoint.params[name];
      if (param === undefined) throw new Error(`${endpoint.path}: no params entry for :${name}`);
      names.push(name);
      return `(${param.pattern})`;
    })
    .join('/');
  return { endpoint, regex: new RegExp(`^${source}$`), names };
}

const COMPILED = WEBSOCKET_ENDPOINTS.map(compile);

/**
 * The endpoint `pathname` (no query) names, with its parameters percent-decoded; undefined when
 * it is none of ours. Throws SentinelError `invalid_request` for one of ours with a bad escape.
 */
export function matchEndpoint(pathname: string): EndpointMatch | undefined {
  for (const { endpoint, regex, names } of COMPILED) {
    const match = regex.exec(pathname);
    if (!match) continue;
    const params: Record<string, string> = {};
    names.forEach((name, index) => {
      try {
        params[name] = decodeURIComponent(match[index + 1] as string);
      } catch {
        throw new SentinelError('invalid_request', `malformed ${endpoint.params[name]?.description ?? name} in the path`);
      }
    });
    return { endpoint, params };
  }
  return undefined;
}

// A non-negative integer in decimal, no leading zeros, small enough to stay a safe integer.
const NON_NEGATIVE_INTEGER = /^(0|[1-9][0-9]{0,15})$/;

/**
 * The endpoint's query parameters found in `search`, parsed; parameters the endpoint does not
 * take are ignored. Throws SentinelError `invalid_request` for a value that is not an integer >= 0.
 */
export function endpointQuery(endpoint: WebSocketEndpointDef, search: URLSearchParams): Record<string, number> {
  const values: Record<string, number> = {};
  for (const name of Object.keys(endpoint.query)) {
    const raw = search.get(name);
    if (raw === null) continue;
    const value = NON_NEGATIVE_INTEGER.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(value)) throw new SentinelError('invalid_request', `${name} must be an integer >= 0, got "${raw.slice(0, 40)}"`);
    values[name] = value;
  }
  return values;
}

/**
 * The absolute URL of `endpoint` for `params` (each percent-encoded into its segment), as the
 * client reached the server: `ws://` or, under TLS, `wss://` `origin.host`.
 */
export function endpointUrl(endpoint: WebSocketEndpointDef, params: Readonly<Record<string, string>>, origin: RequestOrigin): string {
  const path = endpoint.path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`${endpoint.path}: no value for :${name}`);
    return encodeURIComponent(value);
  });
  return `${origin.secure ? 'wss' : 'ws'}://${origin.host}${path}`;
}
