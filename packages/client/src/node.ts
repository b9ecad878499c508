/**
 * @sentinel/api-client for Node: the browser entry's client, with the `ws` package as its
 * WebSocket when the runtime has no global one (Node 20) and the caller passed none.
 */
import { WebSocket as NodeWebSocket } from 'ws';
import { SentinelClient } from './client.js';
import type { ClientOptions, WebSocketConstructor } from './transport.js';

export * from './index.js';

/** A client for one server; in Node, WebSockets default to the global one, else `ws`. */
export function createClient(options: ClientOptions): SentinelClient {
  const fallback = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? (NodeWebSocket as unknown as WebSocketConstructor);
  return new SentinelClient({ ...options, WebSocket: options.WebSocket ?? fallback });
}
