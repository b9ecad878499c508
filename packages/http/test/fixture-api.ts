/**
 * A small SentinelApiSurface for transport tests, built from the core's real `compileRoute`
 * and `invokeRoute`. Only `authenticate` is a stand-in (one fixed token per role): real
 * authentication is the core's job and tested there.
 */
import {
  compileRoute,
  createJsonLogger,
  invokeRoute,
  SentinelError,
  type BodyFormat,
  type Logger,
  type Principal,
  type RouteDef,
  type SentinelApiSurface,
} from '@sentinel/api-core';

export const USER_TOKEN = 'user-token-5f2c9a';
export const ADMIN_TOKEN = 'admin-token-81be07';
export const SMALL_BODY_CAP = 64;

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** What the slow route saw, by request id: whether its signal ended up aborted. */
export type SlowOutcomes = Map<string, { aborted: boolean }>;

export interface FixtureApi {
  api: SentinelApiSurface;
  /** Every line written to the api's logger, parsed. */
  logLines: LogLine[];
  slowOutcomes: SlowOutcomes;
}

function decode(format: BodyFormat, text: string): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text);
    } catch {
      throw new SentinelError('invalid_request', 'request body is not valid JSON');
    }
  }
  // A YAML subset (flat `key: value` lines) is enough to prove the transport chose 'yaml'.
  const result: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) result[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return result;
}

function waitOrAbort(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

export function createFixtureApi(): FixtureApi {
  const logLines: LogLine[] = [];
  const logger: Logger = createJsonLogger({ level: 'debug', write: (line) => logLines.push(JSON.parse(line) as LogLine) });
  const slowOutcomes: SlowOutcomes = new Map();

  const routes: RouteDef[] = [
    { method: 'GET', path: '/v1/health', auth: 'public', summary: 'health', handler: () => ({ status: 'ok' }) },
    {
      method: 'POST', path: '/v1/echo', auth: 'user', summary: 'echo body and query',
      handler: (input) => ({ body: input.body, query: input.query }),
    },
    {
      method: 'POST', path: '/v1/echo-yaml', auth: 'user', summary: 'echo JSON or YAML', bodyFormats: ['json', 'yaml'],
      handler: (input) => ({ body: input.body }),
    },
    {
      method: 'POST', path: '/v1/small', auth: 'public', summary: 'tiny body cap', maxBodyBytes: SMALL_BODY_CAP,
      handler: (input) => ({ received: input.body }),
    },
    {
      method: 'POST', path: '/v1/items', auth: 'user', summary: 'needs a body', status: 201,
      schemas: { body: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false } },
      handler: (input) => ({ created: input.body }),
    },
    { method: 'GET', path: '/v1/query', auth: 'public', summary: 'echo query', handler: (input) => ({ query: input.query }) },
    { method: 'GET', path: '/v1/images/:ref', auth: 'public', summary: 'image', handler: (input) => ({ ref: input.params.ref }) },
    { method: 'DELETE', path: '/v1/images/:ref', auth: 'user', summary: 'remove image', handler: () => undefined },
    { method: 'GET', path: '/v1/images/search', auth: 'public', summary: 'static beats :ref', handler: () => ({ search: true }) },
    {
      method: 'GET', path: '/v1/agents/:id/logs/:stream', auth: 'public', summary: 'two params',
      handler: (input) => ({ id: input.params.id, stream: input.params.stream }),
    },
    { method: 'GET', path: '/v1/admin', auth: 'admin', summary: 'admins only', handler: () => ({ admin: true }) },
    {
      method: 'GET', path: '/v1/context', auth: 'user', summary: 'what the handler sees',
      handler: (_input, ctx) => ({ principal: ctx.principal, request_id: ctx.requestId, origin: ctx.origin, remote: ctx.remoteAddress }),
    },
    {
      method: 'GET', path: '/v1/boom', auth: 'public', summary: 'throws',
      handler: () => {
        throw new Error('database password hunter2 leaked at /srv/secret.db');
      },
    },
    {
      method: 'GET', path: '/v1/reject', auth: 'public', summary: 'rejects',
      handler: () => Promise.reject(new TypeError('cannot read properties of undefined (reading "secret")')),
    },
    {
      method: 'GET', path: '/v1/slow', auth: 'public', summary: 'waits ?ms= or until aborted',
      handler: async (input, ctx) => {
        await waitOrAbort(Number(input.query.ms ?? 5_000), ctx.signal);
        slowOutcomes.set(ctx.requestId, { aborted: ctx.signal.aborted });
        return { waited: true };
      },
    },
    {
      method: 'GET', path: '/v1/limited', auth: 'public', summary: 'rate limited',
      handler: () => {
        throw new SentinelError('rate_limited', 'too many requests', { retryAfter: 2.5 });
      },
    },
  ];
  const compiled = routes.map(compileRoute);

  const api: SentinelApiSurface = {
    routes: compiled,
    async authenticate(authorization): Promise<Principal> {
      if (authorization === `Bearer ${USER_TOKEN}`) return { username: 'alice', role: 'user' };
      if (authorization === `Bearer ${ADMIN_TOKEN}`) return { username: 'root', role: 'admin' };
      throw new SentinelError('unauthorized', authorization ? 'invalid token' : 'authentication required');
    },
    invoke: (route, raw, ctx) => invokeRoute(route, raw, ctx, decode),
    logger,
    async close() {},
  };
  return { api, logLines, slowOutcomes };
}
