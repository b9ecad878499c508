/**
 * One real api (SQLite in a temp dir, the echo provider) mounted on one host from the HTTP
 * suite's harness, with the WebSocket transport attached to that host's own server.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createSentinelApi,
  parseAgentDefinition,
  type AgentResource,
  type Principal,
  type ProviderOptions,
  type RuntimeOptions,
  type SentinelApi,
  type SentinelApiOptions,
} from '@sentinel/api-core';
import { attachWebSocket, type WebSocketHandle, type WebSocketOptions } from '@sentinel/api-ws';
import { mountApi, type HostName, type MountedApi } from '@sentinel/test-support/hosts';

export const TOKEN_SECRET = 'ws-test-secret-0123456789abcdef';
export const ADMIN: Principal = { username: 'admin', role: 'admin' };
export const BOB: Principal = { username: 'bob', role: 'user' };

/** An image that lists only current_time: calculator requests must be refused. */
export const NO_CALCULATOR_IMAGE = 'test/no-calculator:v1';

export interface WsEnv {
  api: SentinelApi;
  host: MountedApi;
  handle: WebSocketHandle;
  /** e.g. `ws://127.0.0.1:41234` */
  wsBase: string;
  adminToken: string;
  bobToken: string;
  /** Creates an agent owned by `owner` (default admin) from `image` (default the starter image). */
  createAgent(options?: { owner?: Principal; image?: string }): Promise<AgentResource>;
  /** `ws://…/v1/agents/<id>/<kind>` */
  url(agentId: string, kind: 'chat' | 'events', query?: string): string;
  /** Detaches the transport, closes the host and the api, removes the temp dir. */
  close(): Promise<void>;
}

export interface WsEnvOptions {
  runtime?: RuntimeOptions;
  ws?: WebSocketOptions;
  eventRetention?: number;
  /** Model providers (e.g. a loopback fake's base URL). Default: the api's defaults. */
  providers?: ProviderOptions;
  /**
   * The api's rate limits. Default: chat frames unlimited (these specs send bursts of hundreds
   * of frames to test queueing; the limits are proven in rate-limit.test.ts), the rest default.
   */
  rateLimits?: SentinelApiOptions['rateLimits'];
  /** Token lifetime in seconds. Default: the api's (24 h). */
  tokenTtlSeconds?: number;
  /** One-time ticket lifetime in ms. Default: the api's (30 s). */
  wsTicketTtlMs?: number;
  /** A PostgreSQL URL for the Store. Default: SQLite in the temp dir. */
  storeUrl?: string;
  /** The runs' knobs (e.g. a short approval timeout). Default: the api's. */
  runs?: SentinelApiOptions['runs'];
}

let agentCounter = 0;

export async function startWsEnv(hostName: HostName, options: WsEnvOptions = {}): Promise<WsEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-ws-'));
  const api = await createSentinelApi({
    dataDir: dir,
    tokenSecret: TOKEN_SECRET,
    adminPassword: 'admin-password-for-tests',
    runtime: { echoChunkDelayMs: 2, ...options.runtime },
    ...(options.eventRetention === undefined ? {} : { eventRetention: options.eventRetention }),
    ...(options.providers === undefined ? {} : { providers: options.providers }),
    rateLimits: options.rateLimits ?? { chat: 0 },
    ...(options.tokenTtlSeconds === undefined ? {} : { tokenTtlSeconds: options.tokenTtlSeconds }),
    ...(options.wsTicketTtlMs === undefined ? {} : { wsTicketTtlMs: options.wsTicketTtlMs }),
    ...(options.storeUrl === undefined ? {} : { storeUrl: options.storeUrl }),
    ...(options.runs === undefined ? {} : { runs: options.runs }),
  });
  await api.users.create({ username: BOB.username, password: 'bob-password-for-tests', role: 'user' });
  await api.images.build(parseAgentDefinition({ name: 'test/no-calculator', tag: 'v1', model: { provider: 'echo', name: 'echo' }, tools: ['current_time'] }));
  const host = await mountApi(hostName, api, { logRequests: false });
  const handle = attachWebSocket(host.server, api, options.ws);
  const wsBase = host.baseUrl.replace(/^http/, 'ws');
  const origin = { secure: false, host: new URL(host.baseUrl).host };
  return {
    api,
    host,
    handle,
    wsBase,
    adminToken: (await api.authService.issueToken(ADMIN.username)).token,
    bobToken: (await api.authService.issueToken(BOB.username)).token,
    createAgent: ({ owner = ADMIN, image = 'sentinel/echo:latest' } = {}) =>
      api.agents.create(owner, { image, name: `agent-${process.pid}-${++agentCounter}` }, origin),
    url: (agentId, kind, query) => `${wsBase}/v1/agents/${encodeURIComponent(agentId)}/${kind}${query ? `?${query}` : ''}`,
    close: async () => {
      await handle.close();
      await host.close();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A JWT signed like the server's (HS256, iss `sentinelstacks`) but already expired. */
export function expiredToken(principal: Principal): string {
  const now = Math.floor(Date.now() / 1000);
  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const header = encode({ alg: 'HS256', typ: 'JWT' });
  const payload = encode({ sub: principal.username, role: principal.role, iss: 'sentinelstacks', iat: now - 7200, exp: now - 3600, jti: randomBytes(6).toString('base64url') });
  const signature = createHmac('sha256', TOKEN_SECRET).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** `Authorization` header options for a ws client. */
export function bearer(token: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** A message long enough to stream for a while (the echo provider sends 1-3 words per chunk). */
export function longMessage(words = 200): string {
  return Array.from({ length: words }, (_, i) => `word${i}`).join(' ');
}

/** Polls `probe` until it holds. */
export async function eventually(probe: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
