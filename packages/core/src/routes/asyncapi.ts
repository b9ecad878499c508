/**
 * The AsyncAPI 3.0 document of the WebSocket protocol, generated from the endpoint table
 * (protocol/endpoints.ts) and the frame schemas it holds: the client-frame schemas the server
 * validates with and the server-frame schemas. The document cannot drift from what the
 * transport accepts, and the WebSocket specs check every frame they receive against it.
 *
 * It describes the server: `receive` operations are the frames clients send, `send` operations
 * the frames the server sends.
 */
import type { JsonSchema, RouteDef } from '../contract/route.js';
import { WEBSOCKET_CLOSE_CODES } from '../protocol/close-codes.js';
import { WEBSOCKET_ENDPOINTS, type WebSocketEndpointDef } from '../protocol/endpoints.js';

/** An AsyncAPI server object (`host` without a scheme; `protocol` is `ws` or `wss`). */
export interface AsyncApiServer {
  host: string;
  protocol: 'ws' | 'wss';
  description?: string;
}

export interface AsyncApiOptions {
  /** Default 'SentinelStacks WebSocket API'. */
  title?: string;
  /** API version in `info.version`. Default '0.1.0'. */
  version?: string;
  /**
   * `servers` of the document, by name. Default: `local`, `ws://localhost:8080` (where
   * `sentinel api` listens by default); `GET /v1/asyncapi.json` puts the origin that asked first.
   */
  servers?: Record<string, AsyncApiServer>;
  /** The endpoints to describe. Default: {@link WEBSOCKET_ENDPOINTS}. */
  endpoints?: readonly WebSocketEndpointDef[];
}

/** An AsyncAPI document: plain JSON. */
export type AsyncApiDocument = Record<string, unknown>;

const DEFAULT_SERVERS: Record<string, AsyncApiServer> = {
  local: { host: 'localhost:8080', protocol: 'ws', description: 'A `sentinel api` server on its default address' },
};

const SECURITY_SCHEMES = {
  bearerHeader: {
    type: 'http',
    scheme: 'bearer',
    description:
      '`Authorization: Bearer <credential>` on the upgrade request: a login token (`POST /v1/auth/login`), an API key (`sk_sentinel_…`, `POST /v1/keys`) or an OpenID Connect access token when the server accepts one. The credential needs the channel\'s scope (chat: `agents:chat`, events: `agents:read`), else 403 `insufficient_scope`.',
  },
  bearerSubprotocol: {
    type: 'httpApiKey',
    in: 'header',
    name: 'Sec-WebSocket-Protocol',
    description:
      'For clients that cannot set headers (browsers): offer the subprotocols `sentinel.v1, bearer.<jwt>` (or `bearer.<api key>`). The server selects `sentinel.v1` and never echoes the token.',
  },
  ticket: {
    type: 'httpApiKey',
    in: 'query',
    name: 'ticket',
    description:
      'A one-time ticket from `POST /v1/ws-tickets` `{agent_id, channel}`: valid once, for 30 s, for that agent and channel, with the scopes of the credential that minted it. A replayed, expired or mismatched ticket is refused with 401. The socket closes with 4401 when that credential is revoked or expires.',
  },
} as const;

const SECURITY = Object.keys(SECURITY_SCHEMES).map((name) => ({ $ref: `#/components/securitySchemes/${name}` }));

/** `/v1/agents/:id/chat` → `/v1/agents/{id}/chat`. */
function address(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

/** The query parameters as the ws binding's `query` schema (each a non-negative integer). */
function querySchema(endpoint: WebSocketEndpointDef): JsonSchema {
  const properties = Object.fromEntries(
    Object.entries(endpoint.query).map(([name, param]) => [name, { type: 'integer', minimum: 0, description: param.description }]),
  );
  return { type: 'object', properties, additionalProperties: true };
}

const CLOSE_CODES_TEXT = Object.values(WEBSOCKET_CLOSE_CODES)
  .map(({ code, meaning }) => `- \`${code}\`: ${meaning}`)
  .join('\n');

function channelDescription(endpoint: WebSocketEndpointDef): string {
  const frames = Object.keys(endpoint.clientFrames).length === 0 ? 'Read-only: any frame a client sends is answered with an `error` frame.' : 'Every frame is one JSON text message with a `type`.';
  return [
    `${endpoint.summary}. ${frames}`,
    'An upgrade that is refused (bad token, no such agent, connection limit, shutdown) gets a plain HTTP response with the `{error, code}` JSON body instead; no frame is ever sent.',
    'Close codes:',
    CLOSE_CODES_TEXT,
  ].join('\n\n');
}

/** Message name of a client frame type (`message` → `clientMessage`) and of a server frame type (`stream_end` → `streamEnd`). */
function messageName(direction: 'client' | 'server', type: string): string {
  const camel = type.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
  return direction === 'client' ? `client${camel[0]?.toUpperCase() ?? ''}${camel.slice(1)}` : camel;
}

function message(type: string, direction: 'client' | 'server', payload: JsonSchema): Record<string, unknown> {
  const description = typeof payload.description === 'string' ? payload.description : undefined;
  return {
    name: type,
    title: `${type} (${direction === 'client' ? 'client → server' : 'server → client'})`,
    ...(description === undefined ? {} : { summary: description }),
    contentType: 'application/json',
    payload,
  };
}

/** Builds the AsyncAPI 3.0 document of the WebSocket endpoints. */
export function buildAsyncApiDocument(options: AsyncApiOptions = {}): AsyncApiDocument {
  const endpoints = options.endpoints ?? WEBSOCKET_ENDPOINTS;
  // Each frame type is one message, shared by the channels that carry it.
  const messages: Record<string, Record<string, unknown>> = {};
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  for (const endpoint of endpoints) {
    const clientNames = Object.entries(endpoint.clientFrames).map(([type, schema]) => {
      const name = messageName('client', type);
      messages[name] ??= message(type, 'client', schema);
      return name;
    });
    const serverNames = Object.entries(endpoint.serverFrames).map(([type, schema]) => {
      const name = messageName('server', type);
      messages[name] ??= message(type, 'server', schema as JsonSchema);
      return name;
    });
    const parameters = Object.fromEntries(Object.entries(endpoint.params).map(([name, param]) => [name, { description: param.description }]));
    channels[endpoint.name] = {
      address: address(endpoint.path),
      title: endpoint.path,
      summary: endpoint.summary,
      description: channelDescription(endpoint),
      ...(Object.keys(parameters).length === 0 ? {} : { parameters }),
      messages: Object.fromEntries([...clientNames, ...serverNames].map((name) => [name, { $ref: `#/components/messages/${name}` }])),
      bindings: { ws: { method: 'GET', query: querySchema(endpoint), bindingVersion: '0.1.0' } },
      'x-sentinel-auth': endpoint.auth,
      'x-close-codes': Object.fromEntries(Object.values(WEBSOCKET_CLOSE_CODES).map(({ code, meaning }) => [String(code), meaning])),
    };
    const security = endpoint.auth === 'public' ? {} : { security: SECURITY };
    const refs = (names: string[]) => names.map((name) => ({ $ref: `#/channels/${endpoint.name}/messages/${name}` }));
    if (clientNames.length > 0) {
      operations[`${endpoint.name}Receive`] = {
        action: 'receive',
        channel: { $ref: `#/channels/${endpoint.name}` },
        summary: `Frames a client sends on ${endpoint.path}`,
        ...security,
        messages: refs(clientNames),
      };
    }
    operations[`${endpoint.name}Send`] = {
      action: 'send',
      channel: { $ref: `#/channels/${endpoint.name}` },
      summary: `Frames the server sends on ${endpoint.path}`,
      ...security,
      messages: refs(serverNames),
    };
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: options.title ?? 'SentinelStacks WebSocket API',
      version: options.version ?? '0.1.0',
      description:
        'The WebSocket side of the SentinelStacks API: chat with an agent and follow its events. The document describes the server: `receive` operations are the frames a client sends, `send` operations the frames the server sends. The REST side is `GET /v1/openapi.json`.',
    },
    defaultContentType: 'application/json',
    servers: options.servers ?? DEFAULT_SERVERS,
    channels,
    operations,
    components: { messages, securitySchemes: SECURITY_SCHEMES },
  };
}

/**
 * `GET /v1/asyncapi.json` (public). The document is built once; the origin that asked is put
 * first in `servers` (as `this`), so tools that take the first server connect here.
 */
export function asyncapiRoutes(deps: AsyncApiOptions = {}): RouteDef[] {
  let document: AsyncApiDocument | undefined;
  let lastServed: { key: string; document: AsyncApiDocument } | undefined;
  return [
    {
      method: 'GET',
      path: '/v1/asyncapi.json',
      auth: 'public',
      summary: 'The WebSocket protocol as an AsyncAPI 3.0 document',
      schemas: { response: { type: 'object' } },
      handler: (_input, ctx) => {
        document ??= buildAsyncApiDocument(deps);
        const protocol = ctx.origin.secure ? 'wss' : 'ws';
        const key = `${protocol}://${ctx.origin.host}`;
        // One document per origin would let Host headers grow memory; the last one is kept.
        if (lastServed?.key !== key) {
          const here: AsyncApiServer = { host: ctx.origin.host, protocol, description: 'This server, as the request addressed it' };
          lastServed = { key, document: { ...document, servers: { this: here, ...(document.servers as Record<string, AsyncApiServer>) } } };
        }
        return lastServed.document;
      },
    },
  ];
}
