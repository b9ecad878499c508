/**
 * @sentinel/api-ws: the WebSocket transport of the SentinelStacks API. `attachWebSocket`
 * adds the chat and events endpoints to any existing `http`/`https` server.
 */
export { attachWebSocket, type WebSocketApi, type WebSocketHandle, type WebSocketStats } from './attach.js';
export { WEBSOCKET_DEFAULTS, type WebSocketOptions } from './options.js';
export { closeCodeFor, CLOSE_CREDENTIAL_REVOKED, CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION } from './close-codes.js';
export { BEARER_SUBPROTOCOL_PREFIX, SENTINEL_SUBPROTOCOL } from './upgrade-request.js';
export { TOO_SLOW_REASON } from './send-queue.js';
