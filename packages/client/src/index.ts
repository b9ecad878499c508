/**
 * @sentinel/api-client, the browser entry: no node: imports, the global fetch and WebSocket.
 * Node 20 (which has no global WebSocket) gets the same client from the package's Node entry,
 * with `ws` as its WebSocket.
 */
export { createClient, SentinelClient, type LoginResult } from './client.js';
export { isSentinelApiError, SentinelApiError, type ClientErrorCode, type SentinelApiErrorInit } from './errors.js';
export { SUBPROTOCOL, Transport, type ClientOptions, type QueryValue, type RequestOptions, type WebSocketConstructor, type WebSocketLike } from './transport.js';
export { ChatSession, frameError, type ChatOptions, type ChatSendOptions, type ChatTurn, type ServerFrame, type ToolRequestOptions } from './chat.js';
export { agentEvents, type EventFrame, type EventsOptions } from './events.js';
export { backoffDelay, type ReconnectOptions, type SocketAuth } from './socket.js';
