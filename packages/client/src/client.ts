/**
 * `createClient`: one object per server and credential. Its namespaces (agents, images,
 * registry, keys, tickets, runs, chat, events) are thin layers over the Transport; request and response types
 * come from the server's own schemas (see types.ts).
 */
import { Transport, type ClientOptions } from './transport.js';
import { signalOf, type CallOptions } from './call.js';
import type { Me } from './models.js';
import { AgentsApi } from './agents.js';
import { ImagesApi } from './images.js';
import { RegistryApi } from './registry.js';
import { KeysApi } from './keys.js';
import { TicketsApi } from './tickets.js';
import { RunsApi } from './runs.js';
import { ChatSession, type ChatOptions } from './chat.js';
import { agentEvents, type EventFrame, type EventsOptions } from './events.js';

export interface LoginResult {
  token: string;
  username: string;
  expires: string;
}

export class SentinelClient {
  /** How this client reaches its server (URLs, credential, requests). */
  readonly transport: Transport;
  /** Agents: list, get, create, delete, start, stop, logs, followLogs. */
  readonly agents = new AgentsApi(this);
  /** Local images: list, get, build, delete. */
  readonly images = new ImagesApi(this);
  /** The registry: search, push, pull (progress streams). */
  readonly registry = new RegistryApi(this);
  /** API keys: create, list, revoke. */
  readonly keys = new KeysApi(this);
  /** One-time WebSocket tickets. */
  readonly tickets = new TicketsApi(this);
  /** Runs (an agent's turns as resources): create, get, list, wait, cancel, approve, stream. */
  readonly runs = new RunsApi(this);

  constructor(options: ClientOptions) {
    this.transport = new Transport(options);
  }

  /** A chat session with an agent (id, short id or name) that reconnects when its socket drops (see chat.ts). */
  chat(agentId: string, options: ChatOptions = {}): ChatSession {
    return new ChatSession(this.transport, agentId, options);
  }

  /** The agent's events, resumed by seq across dropped connections and server restarts (see events.ts). */
  events(agentId: string, options: EventsOptions = {}): AsyncGenerator<EventFrame, void, undefined> {
    return agentEvents(this.transport, agentId, options);
  }

  /** Logs in with a username and password and keeps the token for every later call. */
  async login(username: string, password: string, options: { signal?: AbortSignal } = {}): Promise<LoginResult> {
    const result = await this.transport.request<LoginResult>('POST', '/v1/auth/login', { body: { username, password }, ...(options.signal ? { signal: options.signal } : {}) });
    this.transport.setToken(result.token);
    return result;
  }

  /** Who the credential in use belongs to (GET /v1/auth/me). */
  me(options: CallOptions = {}): Promise<Me> {
    return this.transport.request<Me>('GET', '/v1/auth/me', signalOf(options));
  }

  /** Revokes the current login token on the server and forgets it here. */
  async logout(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.transport.request<void>('POST', '/v1/auth/logout', options.signal ? { signal: options.signal } : {});
    this.transport.setToken(undefined);
  }
}

/** A client for one server. */
export function createClient(options: ClientOptions): SentinelClient {
  return new SentinelClient(options);
}
